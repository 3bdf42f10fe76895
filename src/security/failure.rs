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

/// The TLS failure in an etcd-client error (whose own `source` is empty: look inside).
pub fn etcd_tls_failure(error: &etcd_client::Error) -> Option<TlsFailure> {
    match error {
        etcd_client::Error::GRpcStatus(status) => tls_failure(status),
        etcd_client::Error::TransportError(t) => tls_failure(t),
        etcd_client::Error::IoError(io) => tls_failure(io),
        _ => None,
    }
}

/// With TLS on, asks each etcd endpoint for one key, so that a certificate problem stops the
/// process at start naming the endpoint, instead of being retried as an outage forever.
/// Endpoints that do not answer are not an error here (the capture waits for etcd).
pub async fn probe_etcd(
    endpoints: &[String],
    security: &Security,
    timeout: Duration,
) -> Result<(), EndpointError> {
    let Some(tls) = security.client_tls_config() else {
        return Ok(());
    };
    for endpoint in endpoints {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_tls(tls.clone());
        let answer = async {
            let mut client =
                etcd_client::Client::connect([endpoint.as_str()], Some(options)).await?;
            client.get("/rcdc-tls-probe", None).await.map(drop)
        };
        let Ok(Err(e)) = tokio::time::timeout(timeout, answer).await else {
            continue; // answered, or silent: not a TLS verdict
        };
        match etcd_tls_failure(&e) {
            Some(failure) => {
                return Err(EndpointError {
                    service: Service::Etcd,
                    endpoint: endpoint.clone(),
                    failure,
                })
            }
            None => {
                tracing::warn!(%endpoint, error = %e, "etcd endpoint did not answer the TLS probe")
            }
        }
    }
    Ok(())
}
