//! TLS failures in the operator's terms, instead of a transport error chain.
//!
//! rustls reports what went wrong precisely (an unknown issuer, an expired certificate, the
//! peer's alert), but by the time it reaches us it sits several sources deep inside tonic's,
//! hyper's or reqwest's error. [`tls_failure`] digs it out and says it with the flag to check.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

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
    pub fn given(self, presented_certificate: bool) -> Self {
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

/// The server's verdict on our TLS: connect to `host:port`, shake hands with `config`, send
/// `hello`, read. An alert, in the handshake or at the first read (where TLS 1.3 puts a
/// refusal of our certificate, after our side of the handshake is done), is a failure; an
/// answer, silence or an unreachable server is not (that is no TLS verdict).
/// `presented_certificate`: whether `config` presents a client certificate.
pub async fn handshake_verdict(
    config: Arc<rustls::ClientConfig>,
    presented_certificate: bool,
    host: &str,
    port: u16,
    hello: &[u8],
    timeout: Duration,
) -> Option<TlsFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server_name = match rustls::pki_types::ServerName::try_from(host.to_owned()) {
        Ok(name) => name,
        Err(e) => {
            return Some(TlsFailure::Other(format!(
                "{host} is not a TLS server name: {e}"
            )))
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
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
    Some(failure.given(presented_certificate))
}
