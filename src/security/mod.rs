//! TLS for every connection rcdc makes or serves, from TiCDC's keys: `[security] ca-path,
//! cert-path, key-path, cert-allowed-cn` and the flags `--ca --cert --key --cert-allowed-cn`.
//!
//! [`SecurityConfig`] is what the user gave (paths). [`SecurityConfig::load`] reads and checks
//! the files once, at start (readable, PEM, the key is the certificate's, both within their
//! validity), and yields [`Security`], from which every TLS user takes its configuration:
//! - etcd, PD and TiKV (gRPC): [`Security::client_tls_config`], tonic's `ClientTlsConfig`, which
//!   is also etcd-client's `TlsOptions`;
//! - the status API: [`Security::server_config`] (rustls; client certificates verified
//!   against the CA) served by [`https::TlsListener`]; the API checks `cert-allowed-cn` on
//!   every request of a connection ([`Security::allows`]);
//! - the CLI and capture→owner forwarding: [`Security::http_client`] and [`Security::api_url`].
//!
//! Every rustls configuration is built with the ring provider: aws-lc would need cmake.

mod failure;
pub mod https;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

pub use failure::{api_tls_failure, probe_etcd, tls_failure, EndpointError, Service, TlsFailure};

/// The `[security]` settings as given: paths, not yet read. TLS is on when `ca_path` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `--ca` / `ca-path`: the CA that signs every certificate of the cluster.
    pub ca_path: Option<PathBuf>,
    /// `--cert` / `cert-path`: this process's certificate (PEM; a chain may follow it).
    pub cert_path: Option<PathBuf>,
    /// `--key` / `key-path`: its private key (PEM).
    pub key_path: Option<PathBuf>,
    /// `--cert-allowed-cn` / `cert-allowed-cn`: the client certificate CNs the API accepts;
    /// empty accepts any certificate the CA signed.
    pub cert_allowed_cn: Vec<String>,
}

/// Which PEM file a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemFile {
    /// `--ca` / `ca-path`.
    Ca,
    /// `--cert` / `cert-path`.
    Cert,
    /// `--key` / `key-path`.
    Key,
}

impl std::fmt::Display for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemFile::Ca => "CA file (--ca)",
            PemFile::Cert => "certificate file (--cert)",
            PemFile::Key => "key file (--key)",
        })
    }
}

/// Why the TLS settings cannot be used; every file problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Settings that only make sense together were given apart.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A file cannot be read.
    #[error("cannot read {file} {path}: {source}")]
    Read {
        /// Which setting.
        file: PemFile,
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{file} {path}: {reason}")]
    Pem {
        /// Which setting.
        file: PemFile,
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate is outside its validity period.
    #[error("{file} {path}: {reason}")]
    Validity {
        /// Which setting.
        file: PemFile,
        /// The path given.
        path: PathBuf,
        /// Expired at, or not valid before, a time.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("key file (--key) {key} does not belong to certificate file (--cert) {cert}")]
    KeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// rustls refused the assembled configuration.
    #[error("building the TLS configuration: {0}")]
    Build(String),
}

/// Who loads the settings: a server must have its own certificate, a client may do without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `cdc server`: serves HTTPS, so it needs `--cert` and `--key` with `--ca`.
    Server,
    /// `cdc cli`: `--ca` alone is allowed (a server requiring client certificates will say so).
    Client,
}

impl SecurityConfig {
    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        self.ca_path.is_some()
    }

    /// Checks which settings are given together, without reading any file.
    pub fn check(&self, role: Role) -> Result<(), SecurityError> {
        if self.cert_path.is_some() != self.key_path.is_some() {
            return Err(SecurityError::Incomplete(
                "--cert and --key (cert-path, key-path) go together",
            ));
        }
        let tls_only = self.cert_path.is_some() || !self.cert_allowed_cn.is_empty();
        if !self.is_tls() && tls_only {
            return Err(SecurityError::Incomplete(
                "--cert, --key and --cert-allowed-cn need --ca (ca-path); without a CA TLS is off",
            ));
        }
        if role == Role::Server && self.is_tls() && self.cert_path.is_none() {
            return Err(SecurityError::Incomplete(
                "with --ca (ca-path), cdc server also needs --cert and --key (cert-path, key-path) to serve HTTPS",
            ));
        }
        Ok(())
    }

    /// Reads and checks the files; plain when no CA is given.
    pub fn load(&self, role: Role) -> Result<Security, SecurityError> {
        self.check(role)?;
        let Some(ca_path) = &self.ca_path else {
            return Ok(Security::plain());
        };
        let ca_pem = read(PemFile::Ca, ca_path)?;
        let mut roots = RootCertStore::empty();
        for der in certificates(PemFile::Ca, ca_path, &ca_pem)? {
            check_validity(PemFile::Ca, ca_path, &der)?;
            roots.add(der).map_err(|e| SecurityError::Pem {
                file: PemFile::Ca,
                path: ca_path.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let identity = match (&self.cert_path, &self.key_path) {
            (Some(cert), Some(key)) => Some(OwnIdentity::load(cert, key)?),
            _ => None,
        };
        Ok(Security {
            tls: Some(Arc::new(Tls {
                ca_pem,
                roots: Arc::new(roots),
                identity,
                allowed_cn: self.cert_allowed_cn.clone(),
            })),
        })
    }
}

/// The TLS settings, loaded and checked; cheap to clone. [`Security::plain`] is TLS off.
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<Tls>>,
}

struct Tls {
    ca_pem: Vec<u8>,
    roots: Arc<RootCertStore>,
    identity: Option<OwnIdentity>,
    allowed_cn: Vec<String>,
}

/// This process's certificate chain and key.
struct OwnIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Security {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every rustls configuration rcdc builds.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, for TLS configurations built by libraries
/// (tonic falls back to it too). Call once at start; later calls change nothing.
pub fn install_crypto_provider() {
    // An error only says a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Security {
    /// TLS off: plain HTTP and gRPC, the API for a trusted network only.
    pub fn plain() -> Self {
        Self { tls: None }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether we present a certificate of our own.
    fn has_client_certificate(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.identity.is_some())
    }

    /// `https` with TLS, else `http`: the scheme of every capture's API.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL of `path` on the API of the capture at `address` (`host:port`, as captures
    /// advertise themselves in etcd, TiCDC's format).
    pub fn api_url(&self, address: &str, path: &str) -> String {
        format!("{}://{address}{path}", self.scheme())
    }

    /// TLS for gRPC clients (etcd, PD, TiKV): trust the CA, present our certificate if we have
    /// one. `None` when TLS is off.
    pub fn client_tls_config(&self) -> Option<ClientTlsConfig> {
        let tls = self.tls.as_ref()?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some(id) = &tls.identity {
            config = config.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        Some(config)
    }

    /// An HTTP client for captures' APIs: HTTPS with our certificate when TLS is on.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, SecurityError> {
        let builder = reqwest::Client::builder().timeout(timeout);
        let builder = match &self.tls {
            None => builder,
            Some(tls) => builder.use_preconfigured_tls(rustls_client_config(tls, b"http/1.1")?),
        };
        builder
            .build()
            .map_err(|e| SecurityError::Build(e.to_string()))
    }

    /// A rustls client configuration offering `alpn`; `None` when TLS is off.
    fn rustls_client_config(
        &self,
        alpn: &[u8],
    ) -> Result<Option<rustls::ClientConfig>, SecurityError> {
        self.tls
            .as_ref()
            .map(|tls| rustls_client_config(tls, alpn))
            .transpose()
    }

    /// The status API's TLS: our certificate, and a client certificate signed by the CA
    /// required from every client. `None` when TLS is off.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, SecurityError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let id = tls.identity.as_ref().ok_or(SecurityError::Incomplete(
            "serving HTTPS needs --cert and --key (cert-path, key-path)",
        ))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(tls.roots.clone(), provider())
            .build()
            .map_err(|e| SecurityError::Build(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Build(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| SecurityError::Build(e.to_string()))?;
        // The API speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// Whether a client whose certificate carries these subject CNs may use the API: any, when
    /// TLS is off or `cert-allowed-cn` is empty; else one of them must be in the list.
    pub fn allows(&self, common_names: &[String]) -> bool {
        match &self.tls {
            None => true,
            Some(tls) => {
                tls.allowed_cn.is_empty()
                    || common_names.iter().any(|cn| tls.allowed_cn.contains(cn))
            }
        }
    }
}

fn rustls_client_config(tls: &Tls, alpn: &[u8]) -> Result<rustls::ClientConfig, SecurityError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Build(e.to_string()))?
        .with_root_certificates(tls.roots.clone());
    let mut config = match &tls.identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| SecurityError::Build(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

impl OwnIdentity {
    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, SecurityError> {
        let cert_pem = read(PemFile::Cert, cert_path)?;
        let chain = certificates(PemFile::Cert, cert_path, &cert_pem)?;
        check_validity(PemFile::Cert, cert_path, &chain[0])?;
        let key_pem = read(PemFile::Key, key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| SecurityError::Pem {
            file: PemFile::Key,
            path: key_path.to_owned(),
            reason: format!("no PEM private key in it ({e})"),
        })?;
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| SecurityError::Pem {
                file: PemFile::Key,
                path: key_path.to_owned(),
                reason: format!("not a usable private key ({e})"),
            })?;
        match rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match() {
            // `Unknown`: the key cannot tell its public half; the handshake will tell instead.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(SecurityError::KeyMismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                })
            }
            Err(e) => {
                return Err(SecurityError::Pem {
                    file: PemFile::Cert,
                    path: cert_path.to_owned(),
                    reason: format!("not a usable certificate ({e})"),
                })
            }
        }
        Ok(Self {
            cert_pem,
            key_pem,
            chain,
            key,
        })
    }
}

fn read(file: PemFile, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        file,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn certificates(
    file: PemFile,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let bad = |reason: String| SecurityError::Pem {
        file,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Refuses a certificate that has expired or is not valid yet: at start, naming the file,
/// rather than as a handshake failure on the other side later.
fn check_validity(
    file: PemFile,
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(), SecurityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| SecurityError::Pem {
        file,
        path: path.to_owned(),
        reason: format!("not an X.509 certificate ({e})"),
    })?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    let reason = if now > validity.not_after {
        format!("the certificate expired at {}", validity.not_after)
    } else if now < validity.not_before {
        format!(
            "the certificate is not valid before {}",
            validity.not_before
        )
    } else {
        return Ok(());
    };
    Err(SecurityError::Validity {
        file,
        path: path.to_owned(),
        reason,
    })
}

/// The subject CNs of a DER certificate (empty if it cannot be parsed, which the verifier
/// would already have refused).
pub fn common_names(der: &CertificateDer<'_>) -> Vec<String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect(),
        Err(_) => vec![],
    }
}

#[cfg(test)]
mod tests;
