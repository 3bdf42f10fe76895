//! Server start on a PD (facts §4.1, §5): whether the `--pd` endpoints are a TiDB cluster's PD
//! or a plain etcd, PD's and TiKV's versions, and the cluster's default upstream.
//!
//! PD embeds etcd and serves etcd's gRPC and PD's on one port, so the same endpoints answer
//! both. A plain etcd answers PD's GetMembers with Unimplemented: then the capture runs as
//! before, on the demo default.

use std::sync::Arc;
use std::time::Duration;

use rcdc_pd::version::{check_pd_version, check_store_versions, MIN_PD_VERSION};
use rcdc_pd::{ClientTlsConfig, PdClient, PdError, PdOptions};
use tokio::sync::watch;

use crate::upstream::pd::{pd_uri, PdUpstream};
use crate::upstream::{parse_upstream_uri, Upstream};

/// Why a server could not start on its PD.
#[derive(Debug, thiserror::Error)]
pub enum PdStartError {
    /// PD's version is below what rcdc supports (TiCDC fails the start too).
    #[error(
        "PD at {endpoint} reports version {version}, incompatible with rcdc: {reason} \
         (the minimum is {MIN_PD_VERSION})"
    )]
    IncompatiblePd {
        /// The PD asked.
        endpoint: String,
        /// Its version as reported.
        version: String,
        /// Why it is refused.
        reason: String,
    },
    /// PD's HTTP API did not give its version.
    #[error("cannot read PD's version from {url}: {reason}")]
    Version {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// PD refused us for good (a foreign cluster id, a bad endpoint).
    #[error(transparent)]
    Pd(PdError),
    /// The default upstream could not be made.
    #[error("upstream {uri}: {reason}")]
    Upstream {
        /// The upstream URI.
        uri: String,
        /// What went wrong.
        reason: String,
    },
}

/// The TiDB cluster behind `--pd`.
pub struct PdCluster {
    /// Its PD client (leader-following, TSO, GC).
    pub client: PdClient,
    /// Its upstream URI, [`pd_uri`] of the endpoints.
    pub uri: String,
}

/// How often server start asks a PD that is not answering yet.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Retries `attempt` every [`RETRY_EVERY`] while its error is worth waiting out (`transient`),
/// until it succeeds, fails for good, or shutdown is requested (`Ok(None)`). A PD that is
/// still starting or electing a leader is waited for, as a dead etcd is.
async fn until_up<T, F, Fut>(
    what: &str,
    mut attempt: F,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<T>, PdError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PdError>>,
{
    use backon::{ConstantBuilder, Retryable};
    let transient = |e: &PdError| e.is_retryable() || matches!(e, PdError::Timeout { .. });
    let retrying = (|| attempt())
        .retry(
            ConstantBuilder::default()
                .with_delay(RETRY_EVERY)
                .without_max_times(),
        )
        .when(transient)
        .notify(|e, _| tracing::warn!(error = %e, "{what}: PD is not answering yet; retrying"));
    tokio::select! {
        r = retrying => r.map(Some),
        _ = shutdown.wait_for(|s| *s) => Ok(None),
    }
}

/// Asks the endpoints whether they are a PD, waiting while they do not answer (or shutdown
/// is requested: `Ok(None)` then too). Logs what was found, checks PD's version (an
/// incompatible PD fails the start) and warns about each TiKV store too old for rcdc.
pub async fn detect(
    endpoints: &[String],
    tls: Option<ClientTlsConfig>,
    http: &reqwest::Client,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<PdCluster>, PdStartError> {
    let options = PdOptions {
        tls,
        ..PdOptions::default()
    };
    let connect = || PdClient::connect(endpoints, options.clone());
    let client = match until_up("connecting", connect, shutdown).await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(PdError::NotPd { endpoint }) => {
            tracing::info!(
                %endpoint,
                "the --pd endpoints are a plain etcd (no PD service): the default upstream is demo://"
            );
            return Ok(None);
        }
        Err(e) => return Err(PdStartError::Pd(e)),
    };
    let leader = client.leader_url();
    let version = pd_version(http, &leader).await?;
    check_pd_version(&version).map_err(|e| PdStartError::IncompatiblePd {
        endpoint: leader.clone(),
        version: version.clone(),
        reason: e.reason,
    })?;
    let stores = match client.get_all_stores(true).await {
        Ok(stores) => stores,
        Err(e) => {
            // A warning at start, as TiCDC's version check of stores is.
            tracing::warn!(error = %e, "cannot list TiKV stores to check their versions");
            Vec::new()
        }
    };
    for warning in check_store_versions(&stores) {
        tracing::warn!("{warning}");
    }
    let uri = pd_uri(endpoints);
    tracing::info!(
        cluster_id = client.cluster_id(),
        pd_leader = %leader,
        pd_version = %version,
        tikv_stores = stores.len(),
        upstream = %uri,
        "the --pd endpoints are a TiDB cluster's PD: PD gives time and GC"
    );
    Ok(Some(PdCluster { client, uri }))
}

/// PD's version from its HTTP API (`GET /pd/api/v1/version`, `{"version": "v5.1.0"}`).
async fn pd_version(http: &reqwest::Client, leader: &str) -> Result<String, PdStartError> {
    let url = format!("{}/pd/api/v1/version", leader.trim_end_matches('/'));
    let failed = |reason: String| PdStartError::Version {
        url: url.clone(),
        reason,
    };
    let answer: serde_json::Value = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?
        .json()
        .await
        .map_err(|e| failed(e.to_string()))?;
    answer["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| failed(format!("no \"version\" in {answer}")))
}

/// The cluster's default upstream: its URI, and the upstream object when it must be made
/// here (a PD-backed one needs the connected client; a plain URI is parsed on first use).
///
/// - `--upstream` given, no PD: that URI.
/// - `--upstream` given, on a PD: its rows on PD's time and GC, under the PD's URI.
/// - no `--upstream`, on a PD: the TiDB cluster itself (rows from TiKV).
/// - neither: [`crate::config::DEFAULT_UPSTREAM`].
pub async fn default_upstream(
    given: Option<&str>,
    pd: Option<PdCluster>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(String, Option<Arc<dyn Upstream>>), PdStartError> {
    let Some(pd) = pd else {
        let uri = given.unwrap_or(crate::config::DEFAULT_UPSTREAM).to_owned();
        return Ok((uri, None));
    };
    let upstream_error = |uri: &str, reason: String| PdStartError::Upstream {
        uri: uri.to_owned(),
        reason,
    };
    let data = given
        .map(parse_upstream_uri)
        .transpose()
        .map_err(|e| upstream_error(given.unwrap_or_default(), e.to_string()))?;
    // The first TSO: a PD electing a leader is waited for, not a reason to exit.
    let first = || pd.client.get_ts();
    let Some(first) = until_up("the first TSO", first, shutdown)
        .await
        .map_err(|e| upstream_error(&pd.uri, e.to_string()))?
    else {
        return Ok((pd.uri, None)); // shut down while waiting
    };
    let runtime = tokio::runtime::Handle::current();
    let upstream = PdUpstream::new(pd.uri.clone(), pd.client, first, data, runtime);
    Ok((pd.uri, Some(Arc::new(upstream))))
}
