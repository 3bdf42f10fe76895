//! Client options and endpoint parsing.

use std::time::Duration;

use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::error::PdError;

/// How the client connects and how long it waits.
#[derive(Clone, Debug)]
pub struct PdOptions {
    /// TLS for every PD connection (`--ca/--cert/--key`). With TLS, `http://` and bare
    /// `host:port` endpoints are dialled as `https://`, as the Go client lets the credentials,
    /// not the scheme, decide.
    pub tls: Option<ClientTlsConfig>,
    /// The whole budget of one call, retries included (default 10 s).
    pub request_timeout: Duration,
    /// The budget of one connection attempt (default 3 s, TiCDC's minimum connect timeout).
    pub connect_timeout: Duration,
    /// How often the background loop asks the members who leads (default 10 s). A call that
    /// meets "not leader" or an unreachable leader asks at once.
    pub member_interval: Duration,
    /// How many times `connect` retries the whole endpoint list, with TiCDC's backoff (1 s,
    /// ×1.1, ±10 % jitter, at most 3 s), before giving up (default 10: about 16 s of waiting).
    pub connect_retries: usize,
    /// The most timestamps merged into one TSO request (default 10,000, the Go client's).
    pub max_tso_batch: u32,
    /// The runtime for the client's background tasks and connections; the ambient one if
    /// `None`.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for PdOptions {
    fn default() -> Self {
        Self {
            tls: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            member_interval: Duration::from_secs(10),
            connect_retries: 10,
            max_tso_batch: 10_000,
            runtime: None,
        }
    }
}

/// Turns a `--pd` endpoint into the URL to dial: `http://` or `https://` + host:port, no path.
/// A bare `host:port` gets `https://` with TLS and `http://` without; with TLS an `http://` URL
/// is upgraded (see [`PdOptions::tls`]); an `https://` URL without TLS is refused, since it
/// could only fail at the handshake.
pub(crate) fn normalize_endpoint(raw: &str, tls: bool) -> Result<String, PdError> {
    let bad = |reason: &str| PdError::BadEndpoint {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim().trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), trimmed),
    };
    if rest.is_empty() {
        return Err(bad("no host:port"));
    }
    if rest.contains('/') {
        return Err(bad("a PD endpoint is scheme://host:port, without a path"));
    }
    let scheme = match (scheme.as_str(), tls) {
        ("", false) | ("http", false) => "http",
        ("", true) | ("http", true) | ("https", true) => "https",
        ("https", false) => {
            return Err(bad(
                "https:// needs TLS: give the CA, certificate and key (--ca, --cert, --key)",
            ))
        }
        _ => return Err(bad("the scheme must be http:// or https://")),
    };
    let url = format!("{scheme}://{rest}");
    // Let tonic (http's URI parser) judge the host:port now, not at the first call.
    Endpoint::from_shared(url.clone()).map_err(|e| bad(&e.to_string()))?;
    Ok(url)
}

/// Normalizes every endpoint and drops duplicates, keeping the given order (the first
/// reachable one is used to discover the cluster).
pub(crate) fn normalize_endpoints(raw: &[String], tls: bool) -> Result<Vec<String>, PdError> {
    let mut out: Vec<String> = Vec::new();
    for endpoint in raw {
        let url = normalize_endpoint(endpoint, tls)?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.is_empty() {
        return Err(PdError::NoEndpoints);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_a_scheme_from_tls() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).expect("plain"),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("pd-0:2379", true).expect("tls"),
            "https://pd-0:2379"
        );
    }

    #[test]
    fn urls_keep_or_upgrade_their_scheme() {
        assert_eq!(
            normalize_endpoint(" http://127.0.0.1:2379/ ", false).expect("http"),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("HTTP://127.0.0.1:2379", true).expect("upgraded"),
            "https://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("https://pd:2379", true).expect("https"),
            "https://pd:2379"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_with_a_reason() {
        let reason = |raw: &str, tls: bool| match normalize_endpoint(raw, tls) {
            Err(PdError::BadEndpoint { reason, .. }) => reason,
            other => panic!("{raw}: expected BadEndpoint, got {other:?}"),
        };
        assert!(reason("https://pd:2379", false).contains("--ca"));
        assert!(reason("unix:///tmp/pd.sock", false).contains("scheme"));
        assert!(reason("http://pd:2379/pd/api", false).contains("path"));
        assert!(reason("", false).contains("host"));
        assert!(matches!(
            normalize_endpoints(&[], false),
            Err(PdError::NoEndpoints)
        ));
    }

    #[test]
    fn duplicates_are_dropped_in_order() {
        let raw: Vec<String> = ["127.0.0.1:2", "127.0.0.1:1", "http://127.0.0.1:2"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            normalize_endpoints(&raw, false).expect("valid"),
            vec!["http://127.0.0.1:2", "http://127.0.0.1:1"]
        );
    }
}
