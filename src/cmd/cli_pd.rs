//! `cdc cli`'s PD side, as TiCDC's CLI has one: `tso query`, and the PD-backed upstream that
//! `changefeed create` takes its default start-ts from and protects it in.

use std::sync::Arc;

use anyhow::anyhow;
use rcdc::data_plane::DataPlane;
use rcdc::security::Security;
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
    println!("{ts}");
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

/// The upstreams a create is checked against: `default_upstream` (the cluster's) and
/// `explicit` (`--upstream`), each parsed on first use — except a TiDB cluster (`pd://`),
/// served by `pd`, the client on the `--pd` endpoints.
pub async fn create_guard(
    default_upstream: String,
    explicit: Option<&str>,
    pd: Option<PdClient>,
) -> anyhow::Result<DataPlane> {
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
    Ok(plane)
}
