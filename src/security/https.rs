//! Serving the status API over HTTPS: a listener for `axum::serve` that yields only
//! connections whose client presented a certificate the CA signed, and tells each request
//! which certificate that was ([`ClientPeer`], for the `cert-allowed-cn` check).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client gets to finish its handshake; a silent one must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and runs each TLS handshake in a task of its own, so that a slow
/// or silent client delays nobody; yields the connections whose handshake completed. A client
/// without a certificate the CA signed (none, another CA's, expired) fails the handshake here
/// and never reaches a route.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config` (from
    /// [`Security::server_config`](super::Security::server_config)). Must run inside a tokio
    /// runtime; the accept task ends when the listener is dropped.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        tokio::spawn(accept(listener, TlsAcceptor::from(config), tx));
        Ok(Self { incoming, local })
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, client)).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%client, error = %e, "API client refused: TLS handshake failed")
                }
                Err(_) => tracing::info!(%client, "API client refused: TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept task is gone (its listener failed for good): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The client of one HTTPS connection: its address and its certificate's subject CNs.
#[derive(Clone, Debug)]
pub struct ClientPeer {
    /// The client's socket address.
    pub addr: SocketAddr,
    /// The subject CNs of the certificate it presented.
    pub common_names: Vec<String>,
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener>> for ClientPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        let common_names = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(super::common_names)
            .unwrap_or_default();
        Self {
            addr: *stream.remote_addr(),
            common_names,
        }
    }
}
