//! TLS as a PD with `[security]` set serves it, and the stand-in's own link to etcd.
//!
//! `--ca --cert --key` are one identity, used both ways, as one CA signs every certificate of
//! a TiDB cluster:
//! - serving: every member's port speaks only TLS, offering ALPN `h2` (gRPC: PD's and etcd's)
//!   and `http/1.1` (PD's HTTP API, the control routes, etcd's plain HTTP), and requires a
//!   client certificate signed by `--ca` (PD with `cert-allowed-cn` unset accepts any such
//!   certificate); member URLs are `https://`;
//! - an `https://` `--etcd` is dialled trusting `--ca` and presenting `--cert`, both by the
//!   stand-in's etcd client (cluster id, GC safe points) and by the forwarding of etcd's gRPC
//!   and HTTP (see [`crate::proxy`]). An `http://` `--etcd` stays plain either way.
//!
//! The files are read and checked by `rcdc-tls`, the crate `cdc` uses for the same flags, so
//! both say the same about a bad file.

use std::sync::Arc;
use std::time::Duration;

use rcdc_tls::{handshake_verdict, CaFile, OwnIdentity};

use crate::cli::PdArgs;
use crate::error::{Result, StandinError};

/// The ALPN protocols a member offers: gRPC needs `h2` (tonic refuses a TLS server that does
/// not negotiate it); HTTP/1.1 clients (the version route, curl) ask for `http/1.1`.
const MEMBER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long the start-up handshake with etcd may take.
const ETCD_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The stand-in's CA and identity, read and checked at start.
pub struct StandinTls {
    ca: CaFile,
    identity: OwnIdentity,
}

impl std::fmt::Debug for StandinTls {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandinTls").finish_non_exhaustive()
    }
}

impl StandinTls {
    /// The files of `--ca --cert --key`; `None` without `--ca` (clap makes the three go
    /// together). A bad file is an error naming it.
    pub fn load(args: &PdArgs) -> Result<Option<Self>> {
        let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
            return Ok(None);
        };
        Ok(Some(Self {
            ca: CaFile::load(ca)?,
            identity: OwnIdentity::load(cert, key)?,
        }))
    }

    /// What every member serves: our certificate, a CA-signed client certificate required.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        Ok(self.ca.server_config(&self.identity, &MEMBER_ALPN)?)
    }

    /// The forwarding's client side to etcd, without ALPN (the HTTP connector sets it to
    /// match the protocol it speaks).
    pub fn etcd_client_config(&self) -> Result<rustls::ClientConfig> {
        Ok(self.ca.client_config(Some(&self.identity), &[])?)
    }

    /// The etcd client's TLS (etcd-client's `TlsOptions` is tonic's `ClientTlsConfig`).
    pub fn etcd_options(&self) -> etcd_client::TlsOptions {
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&self.ca.pem))
            .identity(etcd_client::Identity::from_pem(
                &self.identity.cert_pem,
                &self.identity.key_pem,
            ))
    }

    /// Shakes hands with etcd at start, so a certificate problem stops the stand-in naming
    /// etcd and the reason rather than surfacing as a vague "unreachable": with TLS 1.3 etcd
    /// refuses our certificate after our side of the handshake, which a request only sees as
    /// a closed connection. An etcd that does not answer is left to the connect that follows.
    pub async fn probe_etcd(&self, endpoint: &str) -> Result<()> {
        let bad = |why: String| StandinError::Config(format!("--etcd {endpoint}: {why}"));
        let uri: http::Uri = endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let host = uri.host().ok_or_else(|| bad("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        // Offering h2 as gRPC does, so etcd sends its HTTP/2 settings once it accepts us.
        let config = Arc::new(self.ca.client_config(Some(&self.identity), &[b"h2"])?);
        match handshake_verdict(config, true, host, port, b"", ETCD_PROBE_TIMEOUT).await {
            None => Ok(()),
            Some(failure) => Err(StandinError::EtcdTls {
                endpoint: endpoint.to_owned(),
                failure,
            }),
        }
    }
}

/// How the stand-in reaches etcd, from `--etcd`'s scheme: `http://` (or a bare `host:port`,
/// as etcd's clients read it) plain, `https://` with the stand-in's TLS (which must then be
/// given).
pub fn etcd_link<'a>(
    endpoint: &str,
    tls: Option<&'a StandinTls>,
) -> Result<Option<&'a StandinTls>> {
    let bad = |why: &str| StandinError::Config(format!("--etcd {endpoint}: {why}"));
    let uri: http::Uri = endpoint.parse().map_err(|e| bad(&format!("{e}")))?;
    match (uri.scheme_str(), tls) {
        (Some("http") | None, _) => Ok(None),
        (Some("https"), Some(tls)) => Ok(Some(tls)),
        (Some("https"), None) => Err(bad(
            "https:// needs --ca, --cert and --key (the stand-in dials etcd with them)",
        )),
        _ => Err(bad("the scheme must be http:// or https://")),
    }
}
