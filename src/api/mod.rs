//! The HTTP API every capture serves on `--addr` (target-design §11, facts §7.1): TiCDC's
//! OpenAPI v1 routes, the v5 status/owner/admin routes, `/metrics` and `/config`.
//!
//! Reads come from etcd through [`crate::meta`], so any capture answers them. Actions only the
//! owner can take (pause/resume/remove, move/rebalance, resign) go to the local owner's
//! [`OwnerHandle`] when this capture is the owner, else they are forwarded once to the
//! owner's advertised address. Every failure is a JSON `{"error_msg","error_code"}`; nothing
//! a client sends can panic the process (axum catches nothing for us, so handlers never
//! unwrap client input).
//!
//! With TLS on ([`crate::security`]) the API is served over HTTPS only: a client without a
//! certificate the CA signed fails the handshake, and one whose certificate's CN is not in
//! `cert-allowed-cn` gets 403 on every route (a layer over the whole router, fallbacks
//! included). Without TLS the API has no authentication at all, like TiCDC v5's: it is for a
//! trusted network.

mod changefeeds;
mod cluster;
mod dashboard;
pub mod error;
mod forward;
mod legacy;
pub mod views;

use std::sync::Arc;

use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use rcdc_reactor::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::capture::roles::OwnerSlot;
use crate::capture::run::CaptureStatus;
use crate::meta::Meta;
use crate::owner::runtime::OwnerHandle;
use crate::security::https::{ClientPeer, TlsListener};
use crate::security::Security;
use error::ApiError;
use views::TimeZone;

/// Changes the process's log level (`POST /api/v1/log`); the binary owns the subscriber.
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How long an owner-only request or a health check waits for an election under way (a
/// resign, a crashed owner's successor) before answering that the cluster has no owner. A
/// resigning owner's successor is usually elected within milliseconds.
const ELECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the API serves from.
#[derive(Clone)]
pub struct ApiContext {
    /// Cluster metadata in etcd.
    pub meta: Meta,
    /// This capture's id and owner role.
    pub status: watch::Receiver<CaptureStatus>,
    /// The local owner's handle while this capture is the owner.
    pub owner: OwnerSlot,
    /// Timezone for rendered times (`--tz`).
    pub tz: TimeZone,
    /// The resolved server configuration, served at `GET /config`.
    pub server_config: serde_json::Value,
    /// Changes the log level.
    pub set_log_level: LogLevelSetter,
    /// The clock (creating a changefeed at "now").
    pub clock: Arc<dyn Clock>,
    /// For forwarding to the owner (HTTPS with this capture's certificate when TLS is on).
    pub http: reqwest::Client,
    /// TLS settings: the scheme of the owner's URL when forwarding.
    pub security: Security,
    /// This capture's recording switch (`/debug/recording`).
    pub recording: Arc<crate::record::RecordingControl>,
    /// Protects a new changefeed's start-ts in its upstream (the capture's data plane).
    pub start_ts_guard: Arc<dyn crate::meta::StartTsGuard>,
}

impl ApiContext {
    /// The local owner, if this capture runs one.
    fn local_owner(&self) -> Option<OwnerHandle> {
        self.owner.lock().as_ref().filter(|h| h.is_alive()).cloned()
    }
}

/// The router with every route.
pub fn router(ctx: ApiContext) -> Router {
    use changefeeds as cf;
    use cluster as cl;
    Router::new()
        // OpenAPI v1.
        .route("/api/v1/status", get(cl::status_v1))
        .route("/api/v1/health", get(cl::health))
        .route("/api/v1/log", post(cl::set_log_level))
        .route("/api/v1/captures", get(cl::captures))
        .route("/api/v1/processors", get(cl::processors))
        .route(
            "/api/v1/processors/{changefeed_id}/{capture_id}",
            get(cl::processor),
        )
        .route("/api/v1/owner/resign", post(cl::resign))
        .route("/api/v1/changefeeds", get(cf::list).post(cf::create))
        .route(
            "/api/v1/changefeeds/{changefeed_id}",
            get(cf::detail).put(cf::update).delete(cf::remove),
        )
        .route("/api/v1/changefeeds/{changefeed_id}/pause", post(cf::pause))
        .route(
            "/api/v1/changefeeds/{changefeed_id}/resume",
            post(cf::resume),
        )
        .route(
            "/api/v1/changefeeds/{changefeed_id}/tables/move_table",
            post(cf::move_table),
        )
        .route(
            "/api/v1/changefeeds/{changefeed_id}/tables/rebalance_table",
            post(cf::rebalance),
        )
        .route("/api/v1/captures/drain", put(cl::drain))
        // v5 routes.
        .route("/status", get(cl::status_v5))
        .route("/debug/info", get(cl::debug_info))
        .route(
            "/debug/recording",
            get(cl::recording_status).put(cl::set_recording),
        )
        .route("/admin/log", post(legacy::admin_log))
        .route("/capture/owner/resign", post(legacy::resign))
        .route("/capture/owner/admin", post(legacy::admin))
        .route("/capture/owner/rebalance_trigger", post(legacy::rebalance))
        .route("/capture/owner/move_table", post(legacy::move_table))
        .route("/capture/owner/changefeed/query", post(legacy::query))
        // Operations.
        .route("/metrics", get(cl::metrics))
        .route("/config", get(cl::config))
        // The web dashboard and its data (outside /api/v1, which is TiCDC's spec).
        .merge(dashboard::routes(&ctx))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ctx)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed(
    method: axum::http::Method,
    OriginalUri(uri): OriginalUri,
    State(_): State<ApiContext>,
) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "CDC:ErrAPIInvalidParam",
        message: format!("{method} is not supported on {}", uri.path()),
    }
}

/// Serves the API on `listener` until `shutdown` becomes true: over HTTPS with `tls`
/// ([`Security::server_config`]), else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let Some(tls) = tls else {
        return axum::serve(listener, router(ctx))
            .with_graceful_shutdown(stop)
            .await;
    };
    let gate = CertificateGate {
        security: ctx.security.clone(),
        address: listener.local_addr()?,
    };
    let app = router(ctx).layer(axum::middleware::from_fn_with_state(
        gate,
        allowed_clients_only,
    ));
    axum::serve(
        TlsListener::new(listener, tls)?,
        app.into_make_service_with_connect_info::<ClientPeer>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

/// What the `cert-allowed-cn` check needs.
#[derive(Clone)]
struct CertificateGate {
    security: Security,
    address: std::net::SocketAddr,
}

/// 403 unless the connection's client certificate has an allowed CN. A refusal at the HTTP
/// level rather than in the handshake, so the client reads why (a failed handshake only says
/// "bad certificate"); the TLS handshake already refused every certificate the CA did not sign.
async fn allowed_clients_only(
    State(gate): State<CertificateGate>,
    ConnectInfo(peer): ConnectInfo<ClientPeer>,
    request: Request,
    next: Next,
) -> Response {
    if gate.security.allows(&peer.common_names) {
        return next.run(request).await;
    }
    tracing::info!(client = %peer.addr, cn = ?peer.common_names, "API client refused: CN not in cert-allowed-cn");
    ApiError {
        status: axum::http::StatusCode::FORBIDDEN,
        code: "CDC:ErrCertificateNotAllowed",
        message: format!(
            "the cdc API at {} refuses the client certificate with CN {:?}: not in cert-allowed-cn",
            gate.address,
            peer.common_names.join(",")
        ),
    }
    .into_response()
}

/// The request body types, public so that `tests/fuzz.rs` can decode arbitrary bytes into them.
pub use changefeeds::{ChangefeedConfig, MoveTableReq, UpdateConfig};
pub use cluster::mask_sink_uris;
pub use cluster::{DrainRequest, LogLevelReq, RecordingReq};
pub use legacy::simple_status;
