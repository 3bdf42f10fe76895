//! `cdc server`: one capture process wired from its configuration.
//!
//! Startup order: logging (by the binary), meta-store client, then the capture loop with the
//! real owner and processor runtimes over the data plane. A dead etcd is retried by the
//! capture loop, never a crash; SIGINT/SIGTERM take the graceful path (drain, resign, leave).
//! Work in progress for issue #5: the HTTP API, TOML config and metrics endpoint come there.

use std::sync::Arc;
use std::time::Duration;

use rcdc_reactor::store::etcd::{EtcdStore, EtcdStoreConfig};
use rcdc_reactor::store::StoreError;
use rcdc_reactor::SystemClock;
use rcdc_state::{CaptureId, KeyLayout};
use tokio::sync::watch;

use crate::capture::roles::ClusterRoles;
use crate::capture::run::{run, CaptureConfig, CaptureStatus};
use crate::data_plane::DataPlane;
use crate::owner::tick::OwnerConfig;
use crate::pipeline::table::TablePipelineConfig;
use crate::processor::ProcessorConfig;

/// What `cdc server` runs with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// etcd endpoints (`--pd`).
    pub endpoints: Vec<String>,
    /// Advertised `host:port`.
    pub advertise_addr: String,
    /// Cluster root prefix (`--cluster-prefix`).
    pub cluster_prefix: String,
    /// Default upstream of changefeeds (`--upstream`).
    pub upstream: String,
    /// `capture-session-ttl`.
    pub session_ttl: Duration,
    /// `owner-flush-interval`.
    pub owner_flush_interval: Duration,
    /// `processor-flush-interval`.
    pub processor_flush_interval: Duration,
}

/// Runs one capture until `shutdown` becomes true.
pub async fn serve(
    config: ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let store = EtcdStore::connect(&config.endpoints, EtcdStoreConfig::default()).await?;
    let plane = Arc::new(DataPlane::new(
        config.upstream.clone(),
        Arc::new(SystemClock),
    ));
    let roles = ClusterRoles {
        upstream: plane.clone(),
        pipelines: plane,
        owner: OwnerConfig {
            flush_interval_ms: config.owner_flush_interval.as_millis() as u64,
            ..Default::default()
        },
        processor: ProcessorConfig::default(),
        table: TablePipelineConfig::default(),
    };
    let capture = CaptureConfig {
        layout: KeyLayout::new(&config.cluster_prefix),
        advertise_addr: config.advertise_addr.clone(),
        version: format!("v{}", env!("CARGO_PKG_VERSION")),
        session_ttl: config.session_ttl,
        owner_tick: config.owner_flush_interval,
        processor_tick: config.processor_flush_interval,
        reset_interval: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(10),
        new_id: Arc::new(|| CaptureId::new(uuid::Uuid::new_v4().to_string())),
    };
    let (status, _) = watch::channel(CaptureStatus::default());
    run(store, capture, Arc::new(roles), shutdown, status).await;
    Ok(())
}
