//! One listener per member, serving everything on one port as PD does: HTTP/2 gRPC for
//! `pdpb.PD` (answered here) and for etcd's services (forwarded), and HTTP/1.1 for PD's API,
//! the control surface and etcd's plain HTTP.
//!
//! With `--ca --cert --key` every connection is TLS first ([`crate::tls`]): a client without
//! a certificate the CA signed is refused in the handshake, and the refusal is logged naming
//! the client's address.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::cluster::Cluster;
use crate::error::{Result, StandinError};
use crate::proxy::EtcdProxy;

/// How often a member that could not re-bind its address tries again.
const REBIND_RETRY: Duration = Duration::from_millis(200);
/// How long a client gets to finish its TLS handshake; a silent one must not hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One member's serving loop: its listener, what it dispatches to, and its TLS.
pub struct Member {
    index: usize,
    cluster: Arc<Cluster>,
    dispatcher: Dispatcher,
    /// `Some` when the stand-in serves TLS: every connection must complete a handshake with
    /// a client certificate the CA signed before any byte of HTTP is read.
    tls: Option<TlsAcceptor>,
}

impl Member {
    pub fn new(
        index: usize,
        cluster: Arc<Cluster>,
        dispatcher: Dispatcher,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        Self {
            index,
            cluster,
            dispatcher,
            tls,
        }
    }

    /// Serves until the process ends: accept while the member is up; when it goes down,
    /// close the listener and every connection; when it comes back, bind again.
    pub async fn run(self, listener: TcpListener) {
        let addr = self.cluster.members[self.index].addr;
        let name = self.cluster.members[self.index].name.clone();
        let mut up = self.cluster.watch_up(self.index);
        let mut listener = Some(listener);
        loop {
            let l = match listener.take() {
                Some(l) => l,
                None => match rebind(addr, &name, &mut up).await {
                    Some(l) => l,
                    None => return,
                },
            };
            tracing::info!(member = %name, %addr, tls = self.tls.is_some(), "serving");
            self.serve_until_down(l, &name, &mut up).await;
            tracing::warn!(member = %name, %addr, "member down: listener closed, connections dropped");
        }
    }

    /// Accepts connections until the member goes down; dropping the `JoinSet` then aborts
    /// every connection task (handshakes included), which closes their sockets.
    async fn serve_until_down(
        &self,
        listener: TcpListener,
        name: &str,
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
                        let (d, tls) = (self.dispatcher.clone(), self.tls.clone());
                        conns.spawn(serve_conn(stream, peer, d, tls, name.to_owned()));
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

/// Waits until the member's up flag is `want` (the guard `wait_for` returns is not `Send`, so
/// it is dropped here). `Err` when the cluster is gone.
async fn wait_up(
    up: &mut watch::Receiver<bool>,
    want: bool,
) -> Result<(), watch::error::RecvError> {
    up.wait_for(|u| *u == want).await.map(|_| ())
}

/// Serves one connection: plain, or after a TLS handshake. A refused handshake (no client
/// certificate, another CA's, an expired one, not TLS at all) is logged naming the peer.
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    dispatcher: Dispatcher,
    tls: Option<TlsAcceptor>,
    member: String,
) {
    let Some(acceptor) = tls else {
        return serve_http(TokioIo::new(stream), None, peer, dispatcher).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            // What ALPN agreed fixes the protocol: gRPC clients ask for h2, and an h2 server
            // must speak first (its SETTINGS), which the auto-detecting builder would not do
            // until the client's preface arrived.
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            serve_http(TokioIo::new(stream), alpn, peer, dispatcher).await
        }
        Ok(Err(e)) => {
            tracing::warn!(%member, %peer, error = %e, "client refused: TLS handshake failed")
        }
        Err(_) => tracing::warn!(%member, %peer, "client refused: TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `io`: the protocol ALPN agreed, or without one (plain, or a
/// TLS client that offered none) the one the client's first bytes show.
async fn serve_http<I>(io: TokioIo<I>, alpn: Option<Vec<u8>>, peer: SocketAddr, d: Dispatcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let d = d.clone();
        async move { Ok::<_, Infallible>(d.handle(req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match alpn.as_deref() {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    };
    // etcd's and PD's gRPC clients keep long streams open; answer their pings promptly.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .adaptive_window(true);
    if let Err(e) = builder.serve_connection(io, svc).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
