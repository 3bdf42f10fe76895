//! Forwarding to the real etcd, as PD's embedded etcd answers on PD's own port.
//!
//! gRPC (HTTP/2) requests for anything but `pdpb.PD` go to etcd over one multiplexed h2c
//! connection; bodies stream both ways frame by frame and trailers pass through, so Watch and
//! LeaseKeepAlive streams behave as on etcd itself. Plain HTTP that is not PD's API or the
//! stand-in's control surface (`/health`, `/version`, the `/v3/` JSON gateway...) goes to etcd
//! over HTTP/1.1.

use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderName, CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{Result, StandinError};

/// How long opening a connection to etcd may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A forwarder to one etcd client URL (`http://host:port`).
#[derive(Clone, Debug)]
pub struct EtcdProxy {
    grpc: Client<HttpConnector, Incoming>,
    http1: Client<HttpConnector, Incoming>,
    scheme: Scheme,
    authority: Authority,
    endpoint: String,
}

impl EtcdProxy {
    /// A forwarder to `endpoint`. Only `http://` is served: TLS is not supported yet.
    pub fn new(endpoint: &str) -> Result<Self> {
        let bad = |why: String| StandinError::Config(format!("--etcd {endpoint}: {why}"));
        let uri: Uri = endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP {
            return Err(bad(
                "only http:// is supported (TLS is not supported yet)".into()
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("no host:port".into()))?;
        let connector = || {
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c.set_connect_timeout(Some(CONNECT_TIMEOUT));
            c
        };
        let grpc = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .http2_adaptive_window(true)
            .build(connector());
        let http1 = Client::builder(TokioExecutor::new()).build(connector());
        Ok(Self {
            grpc,
            http1,
            scheme,
            authority,
            endpoint: endpoint.to_string(),
        })
    }

    /// Forwards one gRPC call. When etcd cannot be reached the caller gets gRPC `Unavailable`
    /// naming the endpoint, which is what a client of PD sees when PD's etcd is down.
    pub async fn forward_grpc(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let req = match self.retarget(req) {
            Ok(r) => r,
            Err(e) => return tonic::Status::internal(e).into_http(),
        };
        match self.grpc.request(req).await {
            Ok(resp) => resp.map(Body::new),
            Err(e) => {
                tracing::warn!(%path, endpoint = %self.endpoint, error = %e, "forward to etcd");
                tonic::Status::unavailable(format!(
                    "etcd at {} unreachable through the stand-in: {e}",
                    self.endpoint
                ))
                .into_http()
            }
        }
    }

    /// Forwards one plain HTTP request; `502 Bad Gateway` naming the endpoint if etcd does
    /// not answer.
    pub async fn forward_http(&self, req: Request<Incoming>) -> Response<Body> {
        let req = match self.retarget(req) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        match self.http1.request(req).await {
            Ok(resp) => resp.map(Body::new),
            Err(e) => text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "etcd at {} unreachable through the stand-in: {e}",
                    self.endpoint
                ),
            ),
        }
    }

    /// The same request aimed at etcd: its scheme and authority, the original path and query,
    /// and no hop-by-hop headers (they describe the client's connection, not etcd's).
    fn retarget(&self, req: Request<Incoming>) -> std::result::Result<Request<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| format!("cannot address etcd: {e}"))?;
        for h in [CONNECTION, TRANSFER_ENCODING, UPGRADE, HOST] {
            parts.headers.remove(h);
        }
        parts.headers.remove(HeaderName::from_static("keep-alive"));
        parts
            .headers
            .remove(HeaderName::from_static("proxy-connection"));
        Ok(Request::from_parts(parts, body))
    }
}

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(msg));
    *resp.status_mut() = status;
    resp
}
