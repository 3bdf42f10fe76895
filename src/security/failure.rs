//! TLS failures as one clear line naming the endpoint, instead of a transport error chain.
//!
//! rustls reports what went wrong precisely (an unknown issuer, an expired certificate, the
//! peer's alert), but by the time it reaches us it sits several sources deep inside tonic's,
//! hyper's or reqwest's error. [`tls_failure`] digs it out and says it in the operator's
//! terms, with the flag to check.

use std::error::Error;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

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

/// Why a TLS handshake failed, in the operator's terms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The server's certificate does not chain to our CA.
    #[error("certificate signed by an unknown authority (check --ca)")]
    UnknownAuthority,
    /// The server's certificate has expired.
    #[error("the server's certificate has expired")]
    ServerCertificateExpired,
    /// The server's certificate is not valid yet.
    #[error("the server's certificate is not valid yet")]
    ServerCertificateNotYetValid,
    /// The server's certificate does not name the address we dialled.
    #[error("the server's certificate is not valid for this address")]
    WrongServerName,
    /// We sent no certificate and the server requires one.
    #[error("the server requires a client certificate (give --cert and --key)")]
    ClientCertificateRequired,
    /// The server refused our certificate as expired.
    #[error("the server refused our client certificate as expired (renew --cert)")]
    ClientCertificateExpired,
    /// The server refused our certificate.
    #[error("the server refused our client certificate ({alert}); is --cert signed by the CA the server trusts?")]
    ClientCertificateRefused {
        /// The TLS alert it sent.
        alert: String,
    },
    /// The other end does not speak TLS.
    #[error("the server does not speak TLS (is it a plain http:// endpoint?)")]
    NotTls,
    /// Anything else rustls reported.
    #[error("{0}")]
    Other(String),
}

impl TlsFailure {
    /// A refusal of the certificate we did not send means the server wants one (Go's TLS,
    /// etcd's and PD's, answers a missing certificate with `bad_certificate`).
    fn given(self, presented_certificate: bool) -> Self {
        match self {
            Self::ClientCertificateRefused { .. } if !presented_certificate => {
                Self::ClientCertificateRequired
            }
            other => other,
        }
    }

    fn from_rustls(e: &rustls::Error) -> Self {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Self::UnknownAuthority
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Self::ServerCertificateExpired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Self::ServerCertificateNotYetValid
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Self::WrongServerName,
                other => Self::Other(format!("invalid peer certificate: {other:?}")),
            },
            E::AlertReceived(alert) => match alert {
                AlertDescription::CertificateRequired => Self::ClientCertificateRequired,
                AlertDescription::CertificateExpired => Self::ClientCertificateExpired,
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateRevoked
                | AlertDescription::AccessDenied => Self::ClientCertificateRefused {
                    alert: format!("{alert:?}"),
                },
                other => Self::Other(format!("the server sent the alert {other:?}")),
            },
            E::InvalidMessage(_) => Self::NotTls,
            other => Self::Other(other.to_string()),
        }
    }
}

/// The TLS failure somewhere in `error`'s source chain, if there is one.
pub fn tls_failure(error: &(dyn Error + 'static)) -> Option<TlsFailure> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(TlsFailure::from_rustls(r));
        }
        // An io::Error's `source` skips the error it wraps (tokio-rustls wraps rustls's, and
        // hyper wraps that again): step into the wrapped one instead.
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

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

/// The server's verdict on our TLS: connect, shake hands, send `hello`, read. An alert, in
/// the handshake or at the first read (where TLS 1.3 puts a refusal of our certificate), is
/// a failure; an answer, silence or an unreachable server is not (that is no TLS verdict).
async fn verdict(
    security: &Security,
    alpn: &[u8],
    host: &str,
    port: u16,
    hello: &[u8],
    timeout: Duration,
) -> Option<TlsFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = match security.rustls_client_config(alpn) {
        Ok(config) => config?,
        Err(e) => return Some(TlsFailure::Other(e.to_string())),
    };
    let server_name = match rustls::pki_types::ServerName::try_from(host.to_owned()) {
        Ok(name) => name,
        Err(e) => {
            return Some(TlsFailure::Other(format!(
                "{host} is not a TLS server name: {e}"
            )))
        }
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut stream = match connector.connect(server_name, tcp).await {
            Ok(stream) => stream,
            Err(e) => return tls_failure(&e),
        };
        if let Err(e) = stream.write_all(hello).await {
            return tls_failure(&e);
        }
        let mut byte = [0u8; 1];
        stream
            .read(&mut byte)
            .await
            .err()
            .and_then(|e| tls_failure(&e))
    };
    let failure = tokio::time::timeout(timeout, exchange)
        .await
        .ok()
        .flatten()?;
    Some(failure.given(security.has_client_certificate()))
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
