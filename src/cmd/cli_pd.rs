//! `cdc cli`'s PD side, as TiCDC's CLI has one: `tso query`, and the PD-backed upstream that
//! `changefeed create` takes its default start-ts from and protects it in.

use std::sync::Arc;

use anyhow::anyhow;
use rcdc::data_plane::DataPlane;
use rcdc::meta::{GuardError, StartTsGuard};
use rcdc::security::Security;
use rcdc::state::Ts;
use rcdc::upstream::pd::PdUpstream;
use rcdc_pd::{PdClient, PdError, PdOptions};

/// `cdc cli tso query`: prints one TSO from PD, as TiCDC's does.
pub async fn tso_query(endpoints: &[String], security: &Security) -> anyhow::Result<()> {
    let pd = probe(endpoints, security).await?.ok_or_else(|| {
        anyhow!(
            "{} is a plain etcd, not a PD: tso query needs the PD of a TiDB cluster",
            endpoints.join(",")
        )
    })?;
    let ts = pd.get_ts().await.map_err(|e| anyhow!("{e}"))?;
    outln!("{ts}")?;
    Ok(())
}

/// A PD client when the `--pd` endpoints are a PD, `None` when they are a plain etcd.
pub async fn probe(endpoints: &[String], security: &Security) -> anyhow::Result<Option<PdClient>> {
    let options = PdOptions {
        tls: security.client_tls_config(),
        ..PdOptions::default()
    };
    match PdClient::connect(endpoints, options).await {
        Ok(pd) => Ok(Some(pd)),
        Err(PdError::NotPd { .. }) => Ok(None),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// A create's [`StartTsGuard`]: the CLI's own data plane, and a warning to print if the
/// cluster's default upstream — not known for sure — is the one asked.
pub struct CreateGuard {
    plane: DataPlane,
    unsure: Option<String>,
    warned: std::sync::atomic::AtomicBool,
}

impl CreateGuard {
    fn warn_if_default(&self, upstream: Option<&str>) {
        if let (None, Some(why)) = (upstream, &self.unsure) {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("Warning: {why}");
            }
        }
    }
}

#[async_trait::async_trait]
impl StartTsGuard for CreateGuard {
    async fn current_ts(&self, upstream: Option<&str>) -> Result<Ts, GuardError> {
        self.warn_if_default(upstream);
        self.plane.current_ts(upstream).await
    }

    async fn protect(
        &self,
        upstream: Option<&str>,
        service: &str,
        ttl_secs: u64,
        start: Ts,
    ) -> Result<Ts, GuardError> {
        self.warn_if_default(upstream);
        self.plane.protect(upstream, service, ttl_secs, start).await
    }
}

/// The upstreams a create is checked against: `default_upstream` (the cluster's; `unsure`
/// says why it may not be, warned about only if it is used) and `explicit` (`--upstream`),
/// each parsed on first use — except a TiDB cluster (`pd://`), served by `pd`, the client on
/// the `--pd` endpoints.
pub async fn create_guard(
    (default_upstream, unsure): (String, Option<String>),
    explicit: Option<&str>,
    pd: Option<PdClient>,
) -> anyhow::Result<CreateGuard> {
    let plane = DataPlane::new(
        default_upstream.clone(),
        Arc::new(rcdc::reactor::SystemClock),
    );
    let pd_uris: Vec<&str> = [Some(default_upstream.as_str()), explicit]
        .into_iter()
        .flatten()
        .filter(|u| u.starts_with("pd://"))
        .collect();
    if let (Some(uri), Some(pd)) = (pd_uris.first(), pd) {
        let upstream = PdUpstream::start(
            (*uri).to_owned(),
            pd,
            None,
            tokio::runtime::Handle::current(),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
        let upstream: Arc<dyn rcdc::upstream::Upstream> = Arc::new(upstream);
        for uri in pd_uris {
            plane.register(uri, upstream.clone());
        }
    }
    Ok(CreateGuard {
        plane,
        unsure,
        warned: Default::default(),
    })
}
