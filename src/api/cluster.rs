//! Cluster routes: status, health, captures, processors, owner resign, log level, metrics,
//! config and the debug dump.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcdc_state::{CaptureId, ChangefeedId};
use serde_json::{json, Value};

use super::error::ApiError;
use super::forward::{on_owner, Forwardable};
use super::views::{capture_list, processor_detail, processor_list};
use super::{ApiContext, ELECTION_GRACE};
use crate::owner::tick::OwnerRequest;

fn server_status(ctx: &ApiContext) -> Value {
    let status = ctx.status.borrow().clone();
    json!({
        "version": format!("v{}", env!("CARGO_PKG_VERSION")),
        "git_hash": option_env!("RCDC_GIT_HASH").unwrap_or("unknown"),
        "id": status.id.map(|c| c.to_string()).unwrap_or_default(),
        "pid": std::process::id(),
        "is_owner": status.is_owner,
        "liveness": 0,
        "cluster_id": "default",
    })
}

/// `GET /api/v1/status`: `model.ServerStatus`.
pub async fn status_v1(State(ctx): State<ApiContext>) -> Json<Value> {
    Json(server_status(&ctx))
}

/// `GET /status`: the v5 shape, indented with one space as TiCDC's (TiDB Operator reads it).
pub async fn status_v5(State(ctx): State<ApiContext>) -> Response {
    let mut v = server_status(&ctx);
    if let Some(m) = v.as_object_mut() {
        m.remove("liveness");
        m.remove("cluster_id");
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(&v, &mut ser).is_err() {
        return ApiError::internal("CDC:ErrInternal", "encoding the status").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// `GET /api/v1/health`: 200 when the cluster has an owner, else 500 (as TiCDC). An election
/// under way gets [`ELECTION_GRACE`] to finish first.
pub async fn health(State(ctx): State<ApiContext>) -> Result<StatusCode, ApiError> {
    match ctx.meta.owner_within(ELECTION_GRACE).await? {
        Some(_) => Ok(StatusCode::OK),
        None => Err(ApiError::internal(
            "CDC:ErrClusterIsUnhealthy",
            "the cluster has no owner",
        )),
    }
}

/// The `POST /api/v1/log` body.
#[derive(Debug, serde::Deserialize)]
pub struct LogLevelReq {
    log_level: String,
}

/// The `PUT /debug/recording` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingReq {
    enabled: bool,
    #[serde(default)]
    dir: Option<std::path::PathBuf>,
}

/// `POST /api/v1/log` with `{"log_level": "debug"}`.
pub async fn set_log_level(
    State(ctx): State<ApiContext>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: LogLevelReq = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    (ctx.set_log_level)(&req.log_level).map_err(ApiError::invalid)?;
    Ok(Json(json!({})))
}

/// `GET /debug/recording`: this capture's recording switch and the files being written.
pub async fn recording_status(State(ctx): State<ApiContext>) -> Json<Value> {
    Json(json!(ctx.recording.status()))
}

/// `PUT /debug/recording` with `{"enabled": true, "dir": "/optional/dir"}`: turns this
/// capture's recording on or off; its reactors follow at their next tick. Not forwarded:
/// each capture records its own reactors.
pub async fn set_recording(
    State(ctx): State<ApiContext>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: RecordingReq = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    ctx.recording
        .set(req.enabled, req.dir)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(json!(ctx.recording.status())))
}

/// `GET /api/v1/captures`.
pub async fn captures(State(ctx): State<ApiContext>) -> Result<Json<Vec<Value>>, ApiError> {
    let state = ctx.meta.load().await?;
    let owner = ctx.meta.owner().await?;
    Ok(Json(capture_list(&state, owner.as_ref())))
}

/// `GET /api/v1/processors`.
pub async fn processors(State(ctx): State<ApiContext>) -> Result<Json<Vec<Value>>, ApiError> {
    let state = ctx.meta.load().await?;
    Ok(Json(processor_list(&state)))
}

/// `GET /api/v1/processors/{changefeed_id}/{capture_id}`.
pub async fn processor(
    State(ctx): State<ApiContext>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((cf, capture)) = path.map_err(|e| ApiError::invalid(format!("bad path: {e}")))?;
    let (cf, capture) = (ChangefeedId::from(cf.as_str()), CaptureId::new(capture));
    let state = ctx.meta.load().await?;
    processor_detail(&state, &cf, &capture)
        .map(Json)
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "CDC:ErrProcessorNotFound",
            message: format!("no processor of changefeed {cf} on capture {capture}"),
        })
}

/// `POST /api/v1/owner/resign`: the owner steps down; another capture takes over.
pub async fn resign(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fwd = Forwardable {
        method,
        uri,
        headers,
        body,
    };
    on_owner(&ctx, fwd, |owner| async move {
        owner.resign();
        Ok(StatusCode::ACCEPTED.into_response())
    })
    .await
}

/// `model.DrainCaptureRequest`.
#[derive(serde::Deserialize)]
pub struct DrainRequest {
    capture_id: String,
}

/// `PUT /api/v1/captures/drain` (`{"capture_id"}`): the owner moves the capture's tables to
/// the other live captures. Answers 202 with `{"current_table_count"}`, the tables the
/// capture still holds; callers repeat the request until it is 0 (TiCDC's protocol, which
/// also re-asserts the drain after an owner change). An unknown capture, or one no other
/// capture could take over from, gets 400 with the reason.
pub async fn drain(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: DrainRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    let target = CaptureId::new(req.capture_id);
    ApiError::require_capture(&ctx.meta.load().await?, &target)?;
    let fwd = Forwardable {
        method,
        uri,
        headers,
        body,
    };
    let meta = ctx.meta.clone();
    on_owner(&ctx, fwd, |owner| async move {
        owner.request(OwnerRequest::Drain(target.clone())).await?;
        let state = meta.load().await?;
        let count = tables_held(&state, &target);
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "current_table_count": count })),
        )
            .into_response())
    })
    .await
}

/// The tables `capture` holds over all changefeeds (being added or removed included: it
/// still replicates them).
fn tables_held(state: &rcdc_state::GlobalState, capture: &CaptureId) -> usize {
    state
        .changefeeds()
        .values()
        .filter_map(|cf| cf.task_statuses.get(capture))
        .map(|s| s.tables.as_ref().map_or(0, |t| t.len()))
        .sum()
}

/// `GET /metrics`: Prometheus text format of the process-wide registry.
pub async fn metrics() -> Response {
    let families = prometheus::gather();
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response(),
        Err(e) => {
            ApiError::internal("CDC:ErrInternal", format!("encoding metrics: {e}")).into_response()
        }
    }
}

/// `GET /config`: the resolved server configuration.
pub async fn config(State(ctx): State<ApiContext>) -> Json<Value> {
    Json(ctx.server_config.clone())
}

/// `GET /debug/info`: this capture's role, then every key under the cluster prefix as
/// `key\n\tvalue`, sink URIs masked.
pub async fn debug_info(State(ctx): State<ApiContext>) -> Result<Response, ApiError> {
    let status = ctx.status.borrow().clone();
    let mut out = format!(
        "capture: {}\nis_owner: {}\n\n*** etcd data ***\n",
        status.id.map(|c| c.to_string()).unwrap_or_default(),
        status.is_owner
    );
    for kv in ctx.meta.raw().await? {
        out.push_str(&kv.key);
        out.push_str("\n\t");
        out.push_str(&mask_sink_uris(&String::from_utf8_lossy(&kv.value)));
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response())
}

/// Masks the password of a `"sink-uri"` inside a raw JSON value.
pub fn mask_sink_uris(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(mut m)) => {
            if let Some(Value::String(uri)) = m.get_mut("sink-uri") {
                *uri = crate::sink::mask_uri(uri);
            }
            Value::Object(m).to_string()
        }
        _ => raw.to_owned(),
    }
}
