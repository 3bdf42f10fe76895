//! One listener per member, serving everything on one port as PD does: HTTP/2 gRPC for
//! `pdpb.PD` (answered here) and for etcd's services (forwarded), and HTTP/1.1 for PD's API,
//! the control surface and etcd's plain HTTP.
//!
//! A member taken down closes its listener and drops every open connection, so clients see
//! what a killed PD process gives them: connections reset, new ones refused. (Answering every
//! RPC `Unavailable` instead would look like a live PD that lost its leadership, a different
//! fault that "not leader" already covers.) Brought back up, it binds the same address again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::future::BoxFuture;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;

use crate::cluster::Cluster;
use crate::error::{Result, StandinError};
use crate::proxy::EtcdProxy;

/// How often a member that could not re-bind its address tries again.
const REBIND_RETRY: Duration = Duration::from_millis(200);

/// The gRPC `pdpb.PD` service of one member.
pub type PdHandler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StandinError::Bind { addr, source })
}

/// Routes one request of a member's connection.
#[derive(Clone)]
pub struct Dispatcher {
    pub pd: PdHandler,
    pub proxy: EtcdProxy,
    pub http: axum::Router,
}

impl Dispatcher {
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let grpc = req.version() == Version::HTTP_2
            && req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/grpc"));
        let path = req.uri().path();
        if grpc {
            if path.starts_with("/pdpb.PD/") {
                (self.pd)(req).await
            } else {
                self.proxy.forward_grpc(req).await
            }
        } else if crate::http::is_local_path(path) {
            let mut router = self.http;
            match router.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        } else {
            self.proxy.forward_http(req).await
        }
    }
}

/// Serves member `index` until the process ends: accept while the member is up; when it goes
/// down, close the listener and every connection; when it comes back, bind again.
pub async fn run_member(
    index: usize,
    cluster: Arc<Cluster>,
    dispatcher: Dispatcher,
    listener: TcpListener,
) {
    let addr = cluster.members[index].addr;
    let name = cluster.members[index].name.clone();
    let mut up = cluster.watch_up(index);
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match rebind(addr, &name, &mut up).await {
                Some(l) => l,
                None => return,
            },
        };
        tracing::info!(member = %name, %addr, "serving");
        serve_until_down(l, &dispatcher, &mut up).await;
        tracing::warn!(member = %name, %addr, "member down: listener closed, connections dropped");
    }
}

/// Waits for the member to be up, then binds its address (retrying while the port is busy).
/// `None` when the cluster is gone.
async fn rebind(
    addr: SocketAddr,
    name: &str,
    up: &mut watch::Receiver<bool>,
) -> Option<TcpListener> {
    loop {
        if wait_up(up, true).await.is_err() {
            return None;
        }
        match bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::error!(member = %name, error = %e, "cannot bring the member back; retrying");
                tokio::time::sleep(REBIND_RETRY).await;
            }
        }
    }
}

/// Accepts connections until the member goes down; dropping the `JoinSet` then aborts every
/// connection task, which closes their sockets.
async fn serve_until_down(
    listener: TcpListener,
    dispatcher: &Dispatcher,
    up: &mut watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Down, or the cluster is gone: either way stop serving.
            _ = wait_up(up, false) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, peer, dispatcher.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: keep the listener, back off a little.
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Waits until the member's up flag is `want` (the guard `wait_for` returns is not `Send`, so
/// it is dropped here). `Err` when the cluster is gone.
async fn wait_up(
    up: &mut watch::Receiver<bool>,
    want: bool,
) -> Result<(), watch::error::RecvError> {
    up.wait_for(|u| *u == want).await.map(|_| ())
}

async fn serve_conn(stream: tokio::net::TcpStream, peer: SocketAddr, dispatcher: Dispatcher) {
    let svc = hyper::service::service_fn(move |req| {
        let d = dispatcher.clone();
        async move { Ok::<_, Infallible>(d.handle(req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // etcd's and PD's gRPC clients keep long streams open; answer their pings promptly.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .adaptive_window(true);
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
