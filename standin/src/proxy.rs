//! Forwarding to the real etcd, as PD's embedded etcd answers on PD's own port.
//!
//! gRPC (HTTP/2) requests for anything but `pdpb.PD` go to etcd over one multiplexed HTTP/2
//! connection (h2c, or h2 over TLS for an `https://` etcd); bodies stream both ways frame by
//! frame and trailers pass through, so Watch and LeaseKeepAlive streams behave as on etcd
//! itself. Plain HTTP that is not PD's API or the stand-in's control surface (`/health`,
//! `/version`, the `/v3/` JSON gateway...) goes to etcd over HTTP/1.1 (over TLS likewise).
//! Over TLS the stand-in presents its own certificate to etcd: the client's certificate ends
//! at the stand-in, as it ends at PD, whose embedded etcd is in-process.

use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderName, CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

use crate::error::{Result, StandinError};
use crate::tls::StandinTls;

/// How long opening a connection to etcd may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A forwarder to one etcd client URL (`http://host:port` or `https://host:port`).
#[derive(Clone, Debug)]
pub struct EtcdProxy {
    grpc: EtcdClient,
    http1: EtcdClient,
    scheme: Scheme,
    authority: Authority,
    endpoint: String,
}

/// A pooled HTTP client to etcd, plain or over TLS (the connector types differ).
#[derive(Clone, Debug)]
enum EtcdClient {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector<HttpConnector>, Incoming>),
}

impl EtcdClient {
    fn request(&self, req: Request<Incoming>) -> ResponseFuture {
        match self {
            Self::Plain(c) => c.request(req),
            Self::Tls(c) => c.request(req),
        }
    }
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // The TLS connector wraps this one for https:// URIs.
    c.enforce_http(false);
    c
}

impl EtcdProxy {
    /// A forwarder to `endpoint`; `tls` is how to reach it over TLS (see
    /// [`crate::tls::etcd_link`]), `None` for a plain etcd.
    pub fn new(endpoint: &str, tls: Option<&StandinTls>) -> Result<Self> {
        let bad = |why: String| StandinError::Config(format!("--etcd {endpoint}: {why}"));
        let uri: Uri = endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("no host:port".into()))?;
        let grpc_builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.http2_only(true).http2_adaptive_window(true);
            b
        };
        let (grpc, http1, scheme) = match tls {
            None => (
                EtcdClient::Plain(grpc_builder().build(connector())),
                EtcdClient::Plain(Client::builder(TokioExecutor::new()).build(connector())),
                Scheme::HTTP,
            ),
            Some(tls) => {
                // ALPN h2 for gRPC; none for HTTP/1.1 (Go's TLS lets such clients on).
                let h2 = HttpsConnectorBuilder::new()
                    .with_tls_config(tls.etcd_client_config()?)
                    .https_only()
                    .enable_http2()
                    .wrap_connector(connector());
                let h1 = HttpsConnectorBuilder::new()
                    .with_tls_config(tls.etcd_client_config()?)
                    .https_only()
                    .enable_http1()
                    .wrap_connector(connector());
                (
                    EtcdClient::Tls(grpc_builder().build(h2)),
                    EtcdClient::Tls(Client::builder(TokioExecutor::new()).build(h1)),
                    Scheme::HTTPS,
                )
            }
        };
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
                let why = self.failure(&e);
                tracing::warn!(%path, error = %why, "forward to etcd");
                tonic::Status::unavailable(why).into_http()
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
            Err(e) => text(StatusCode::BAD_GATEWAY, self.failure(&e)),
        }
    }

    /// Why etcd could not be reached, naming it: a TLS handshake failure in its terms,
    /// anything else as the client reports it.
    fn failure(&self, e: &hyper_util::client::legacy::Error) -> String {
        match rcdc_tls::tls_failure(e) {
            Some(failure) => format!(
                "etcd at {}: TLS handshake failed through the stand-in: {failure}",
                self.endpoint
            ),
            None => format!(
                "etcd at {} unreachable through the stand-in: {e}",
                self.endpoint
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
