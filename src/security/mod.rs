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
//! The files are read and checked, and the rustls configurations built (ring provider; aws-lc
//! would need cmake), by the `rcdc-tls` crate, which `cdc-standin` shares: the same flags say
//! the same things about the same files in both.

mod failure;
pub mod https;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcdc_tls::{CaFile, OwnIdentity};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

pub use failure::{api_tls_failure, probe_etcd, EndpointError, Service, PROBE_TIMEOUT};
pub use rcdc_tls::{
    common_names, install_crypto_provider, tls_failure, PemFile, TlsError, TlsFailure,
};

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

/// Why the TLS settings cannot be used; every file problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Settings that only make sense together were given apart.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A file cannot be used, or the configuration cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
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
        let ca = CaFile::load(ca_path)?;
        let identity = match (&self.cert_path, &self.key_path) {
            (Some(cert), Some(key)) => Some(OwnIdentity::load(cert, key)?),
            _ => None,
        };
        Ok(Security {
            tls: Some(Arc::new(Tls {
                ca,
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
    ca: CaFile,
    identity: Option<OwnIdentity>,
    allowed_cn: Vec<String>,
}

impl std::fmt::Debug for Security {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
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
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca.pem));
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
            .map_err(|e| TlsError::Build(e.to_string()).into())
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
        // The API speaks HTTP/1.1 only.
        Ok(Some(tls.ca.server_config(id, &[b"http/1.1"])?))
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
    Ok(tls.ca.client_config(tls.identity.as_ref(), &[alpn])?)
}

#[cfg(test)]
mod tests;
