//! `cdc cli`'s PD side, as TiCDC's CLI has one: `tso query`, and the PD-backed upstream that
//! `changefeed create` takes its default start-ts from and protects it in.

use std::sync::Arc;

use anyhow::anyhow;
use rcdc::data_plane::DataPlane;
use rcdc::security::Security;
use rcdc::upstream::pd::PdUpstream;
use rcdc_pd::{PdClient, PdError, PdOptions};

/// A PD client on the `--pd` endpoints; a plain etcd there is an error naming the command.
async fn connect(
    endpoints: &[String],
    security: &Security,
    what: &str,
) -> anyhow::Result<PdClient> {
    let options = PdOptions {
        tls: security.client_tls_config(),
        ..PdOptions::default()
    };
    PdClient::connect(endpoints, options)
        .await
        .map_err(|e| match e {
            PdError::NotPd { endpoint } => anyhow!(
                "{endpoint} is a plain etcd, not a PD: {what} needs the PD of a TiDB cluster"
            ),
            other => anyhow!("{other}"),
        })
}

/// `cdc cli tso query`: prints one TSO from PD, as TiCDC's does.
pub async fn tso_query(endpoints: &[String], security: &Security) -> anyhow::Result<()> {
    let pd = connect(endpoints, security, "tso query").await?;
    let ts = pd.get_ts().await.map_err(|e| anyhow!("{e}"))?;
    println!("{ts}");
    Ok(())
}

/// The upstreams a create is checked against: `default_upstream` (the cluster's, from the
/// owner) and `explicit` (`--upstream`), each parsed on first use — except a TiDB cluster
/// (`pd://`), which needs a PD client on the `--pd` endpoints.
pub async fn create_guard(
    default_upstream: String,
    explicit: Option<&str>,
    endpoints: &[String],
    security: &Security,
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
    if let Some(uri) = pd_uris.first() {
        let pd = connect(endpoints, security, "a changefeed on a TiDB cluster").await?;
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
