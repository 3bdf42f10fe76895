//! TLS failures as one clear line naming the endpoint, instead of a transport error chain
//! ([`TlsFailure`] says why, in the operator's terms; see `rcdc-tls`).

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use rcdc_tls::{handshake_verdict, tls_failure, TlsFailure};

use super::Security;

/// What answered on the other end, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// An etcd (or PD) endpoint.
    Etcd,
    /// A capture's status API.
    Api,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Etcd => "etcd",
            Service::Api => "the cdc API",
        })
    }
}

/// A TLS handshake with `endpoint` failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{service} at {endpoint}: TLS handshake failed: {failure}")]
pub struct EndpointError {
    /// What the endpoint is.
    pub service: Service,
    /// The URL or address.
    pub endpoint: String,
    /// Why.
    pub failure: TlsFailure,
}

/// How long the start-up TLS probe waits for each endpoint (`cdc server`, `cdc cli`).
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// With TLS on, shakes hands with each etcd (or PD) endpoint, so that a certificate problem
/// stops the process at start naming the endpoint, instead of being retried as an outage
/// forever. Endpoints that do not answer are not an error here (the capture waits for etcd).
///
/// A handshake of our own rather than an etcd request: with TLS 1.3 the server judges our
/// certificate after our side of the handshake is done, and the alert it sends then reaches
/// tonic's connection task, not the request, which only sees "connection closed".
pub async fn probe_etcd(
    endpoints: &[String],
    security: &Security,
    timeout: Duration,
) -> Result<(), EndpointError> {
    for endpoint in endpoints {
        let Some((host, port)) = host_port(endpoint) else {
            continue; // the config check has refused it already
        };
        // Offering h2 as gRPC does, so the server sends its HTTP/2 settings once it accepts us.
        if let Some(failure) = verdict(security, b"h2", &host, port, b"", timeout).await {
            return Err(EndpointError {
                service: Service::Etcd,
                endpoint: endpoint.clone(),
                failure,
            });
        }
    }
    Ok(())
}

/// Whether TLS is why a request to the API at `address` (`host:port`) failed: the error's
/// own chain says so, or else (TLS 1.3 can hide the server's verdict on our certificate from
/// the request, which only sees a closed connection) a handshake of our own does.
pub async fn api_tls_failure(
    security: &Security,
    address: &str,
    error: &(dyn Error + Send + Sync + 'static),
) -> Option<EndpointError> {
    let failure = match tls_failure(error) {
        Some(failure) => failure.given(security.has_client_certificate()),
        None => {
            let (host, port) = address.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let hello = format!(
                "GET /api/v1/health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
            );
            let timeout = Duration::from_secs(5);
            verdict(
                security,
                b"http/1.1",
                host,
                port.parse().ok()?,
                hello.as_bytes(),
                timeout,
            )
            .await?
        }
    };
    Some(EndpointError {
        service: Service::Api,
        endpoint: address.to_owned(),
        failure,
    })
}

/// The server's verdict on our TLS at `host:port` (see [`handshake_verdict`]); `None` when
/// TLS is off or the server gave none.
async fn verdict(
    security: &Security,
    alpn: &[u8],
    host: &str,
    port: u16,
    hello: &[u8],
    timeout: Duration,
) -> Option<TlsFailure> {
    let config = match security.rustls_client_config(alpn) {
        Ok(config) => config?,
        Err(e) => return Some(TlsFailure::Other(e.to_string())),
    };
    let presented = security.has_client_certificate();
    handshake_verdict(Arc::new(config), presented, host, port, hello, timeout).await
}

/// `https://host:port` → (host without brackets, port).
fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some((host.to_owned(), url.port_or_known_default()?))
}
