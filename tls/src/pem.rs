//! The PEM files behind `--ca`, `--cert` and `--key`: read once, checked, and turned into
//! rustls configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::provider;

/// Which PEM file a problem is in, named by its flag (TiCDC's and PD's `[security]` keys take
/// the same files).
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

/// Why TLS material cannot be used; every file problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
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
    /// rustls (or a client library) refused the assembled configuration.
    #[error("building the TLS configuration: {0}")]
    Build(String),
}

/// The CA every certificate of the cluster chains to.
#[derive(Clone, Debug)]
pub struct CaFile {
    /// The file as read (tonic takes PEM).
    pub pem: Vec<u8>,
    /// Its certificates, as rustls trusts them.
    pub roots: Arc<RootCertStore>,
}

/// This process's certificate chain and key. The fields are public so that a test can present
/// a certificate [`OwnIdentity::load`] would refuse (an expired one, as a careless client
/// would).
pub struct OwnIdentity {
    /// The certificate file as read (a chain may follow the certificate).
    pub cert_pem: Vec<u8>,
    /// The key file as read.
    pub key_pem: Vec<u8>,
    /// The certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for OwnIdentity {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CaFile {
    /// Reads `path` (`--ca`): at least one PEM certificate, each within its validity.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = read(PemFile::Ca, path)?;
        let mut roots = RootCertStore::empty();
        for der in certificates(PemFile::Ca, path, &pem)? {
            check_validity(PemFile::Ca, path, &der)?;
            roots.add(der).map_err(|e| TlsError::Pem {
                file: PemFile::Ca,
                path: path.to_owned(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        Ok(Self {
            pem,
            roots: Arc::new(roots),
        })
    }

    /// A server presenting `id` that requires every client to present a certificate this CA
    /// signed (a client without one fails the handshake), offering `alpn`.
    pub fn server_config(
        &self,
        id: &OwnIdentity,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Build(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Build(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Build(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client trusting this CA, presenting `id` when given, offering `alpn` (empty: none,
    /// for libraries that set it themselves).
    pub fn client_config(
        &self,
        id: Option<&OwnIdentity>,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Build(e.to_string()))?
            .with_root_certificates(self.roots.clone());
        let mut config = match id {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| TlsError::Build(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl OwnIdentity {
    /// Reads `--cert` and `--key`: the certificate within its validity, the key usable and
    /// the certificate's own.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(PemFile::Cert, cert_path)?;
        let chain = certificates(PemFile::Cert, cert_path, &cert_pem)?;
        check_validity(PemFile::Cert, cert_path, &chain[0])?;
        let key_pem = read(PemFile::Key, key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            file: PemFile::Key,
            path: key_path.to_owned(),
            reason: format!("no PEM private key in it ({e})"),
        })?;
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::Pem {
                file: PemFile::Key,
                path: key_path.to_owned(),
                reason: format!("not a usable private key ({e})"),
            })?;
        match rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match() {
            // `Unknown`: the key cannot tell its public half; the handshake will tell instead.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                })
            }
            Err(e) => {
                return Err(TlsError::Pem {
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

fn read(file: PemFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
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
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
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
fn check_validity(file: PemFile, path: &Path, der: &CertificateDer<'_>) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Pem {
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
    Err(TlsError::Validity {
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
