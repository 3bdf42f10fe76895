//! `cdc server`: one capture process wired from its configuration.
//!
//! Startup order (facts §4.1): the binary validates the configuration and sets up logging
//! and the timezone (and has read the TLS files); then here the status HTTP listener is bound
//! (a taken port is a clear error at once), with TLS each etcd endpoint gets a handshake (a
//! certificate problem is a clear error at once, naming the endpoint), the etcd client
//! connects with backoff (a dead etcd is waited for, never a crash), and the capture loop
//! starts with the real owner and processor runtimes, the API serving beside it (HTTPS with
//! TLS). SIGINT/SIGTERM take the graceful path (drain, resign, leave).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcdc_reactor::store::etcd::{EtcdStore, EtcdStoreConfig};
use rcdc_reactor::SystemClock;
use rcdc_state::{CaptureId, KeyLayout};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::views::TimeZone;
use crate::api::{ApiContext, LogLevelSetter};
use crate::capture::roles::ClusterRoles;
use crate::capture::run::{run, CaptureConfig, CaptureStatus};
use crate::data_plane::DataPlane;
use crate::meta::Meta;
use crate::owner::gc::GcConfig;
use crate::owner::tick::OwnerConfig;
use crate::pipeline::executor::{DataPlaneError, DataPlaneRuntime, DataPlaneRuntimeConfig};
use crate::pipeline::sorter::dir::{SortDir, SortDirError};
use crate::pipeline::table::TablePipelineConfig;
use crate::processor::ProcessorConfig;
use crate::security::{EndpointError, Security, SecurityError};

/// What `cdc server` runs with (resolved from flags and the config file by the binary).
#[derive(Clone)]
pub struct ServerConfig {
    /// etcd endpoints (`--pd`).
    pub endpoints: Vec<String>,
    /// Listen address of the HTTP API (`--addr`).
    pub addr: String,
    /// Advertised `host:port`.
    pub advertise_addr: String,
    /// Cluster root prefix (`--cluster-prefix`).
    pub cluster_prefix: String,
    /// Default upstream of changefeeds (`--upstream`); `None`: the TiDB cluster behind
    /// `--pd` when it is a PD, else `demo://`.
    pub upstream: Option<String>,
    /// `capture-session-ttl`.
    pub session_ttl: Duration,
    /// `owner-flush-interval`.
    pub owner_flush_interval: Duration,
    /// `gc-ttl`: the TTL of every service GC safe point the owner sets.
    pub gc_ttl: Duration,
    /// `processor-flush-interval`.
    pub processor_flush_interval: Duration,
    /// `--tz`.
    pub tz: TimeZone,
    /// Settings of every table pipeline (`per-table-memory-quota` is the sorter budget);
    /// server start adds the sort dir.
    pub table_pipeline: TablePipelineConfig,
    /// Where sorters spill (`[sorter] sort-dir`, or `<data-dir>/tmp/sorter`).
    pub sort_dir: PathBuf,
    /// The data plane's threads and concurrent pulls (`[sorter] num-concurrent-worker`).
    pub data_plane: DataPlaneRuntimeConfig,
    /// The resolved configuration as served at `GET /config`.
    pub config_json: serde_json::Value,
    /// Changes the log level at runtime (`POST /api/v1/log`).
    pub set_log_level: LogLevelSetter,
    /// The recording switch (`--record DIR` turns it on at start; the API flips it).
    pub recording: Arc<crate::record::RecordingControl>,
    /// TLS for etcd, the API and forwarding (`[security]`, `--ca --cert --key`).
    pub security: Security,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The table pipelines' runtime could not be started.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// The PD behind `--pd` cannot be used.
    #[error(transparent)]
    Pd(#[from] pd_start::PdStartError),
    /// The TLS settings cannot serve HTTPS.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// An etcd endpoint refused our TLS, or we refused its certificate.
    #[error(transparent)]
    EtcdTls(#[from] EndpointError),
    /// The sort dir cannot be used.
    #[error(transparent)]
    SortDir(#[from] SortDirError),
}

/// Runs one capture until `shutdown` becomes true.
pub async fn serve(
    mut config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(&config.addr)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.addr.clone(),
            source,
        })?;
    let tls = config.security.server_config()?;
    tracing::info!(addr = %config.addr, scheme = config.security.scheme(), "status server listening");
    // A certificate problem is a configuration error, not an outage to wait out.
    crate::security::probe_etcd(
        &config.endpoints,
        &config.security,
        crate::security::PROBE_TIMEOUT,
    )
    .await?;
    // Table pipelines get threads of their own, apart from the session keep-alive, the etcd
    // workers and the API on this runtime (see `pipeline::executor`).
    let data_plane = DataPlaneRuntime::start(config.data_plane)?;
    let sort_dir = open_sort_dir(config.sort_dir.clone()).await?;
    config.table_pipeline.sorter.spill = Some(sort_dir.clone());
    let Some(store) = connect(&config.endpoints, &config.security, &mut shutdown).await else {
        return Ok(()); // shut down while waiting for etcd
    };
    let clock = Arc::new(SystemClock);
    // PD, when the endpoints are one, is the cluster's time and GC (facts §4.1).
    let pd = pd_start::detect(
        &config.endpoints,
        config.security.client_tls_config(),
        &config.security.http_client(Duration::from_secs(10))?,
        &mut shutdown,
    )
    .await?;
    let (default_upstream, pd_upstream) =
        pd_start::default_upstream(config.upstream.as_deref(), pd, &mut shutdown).await?;
    let plane = DataPlane::new(default_upstream.clone(), clock.clone());
    if let Some(upstream) = pd_upstream {
        plane.register(&default_upstream, upstream);
    }
    let plane = Arc::new(plane);
    let owner_handle = Arc::new(parking_lot::Mutex::new(None));
    let roles = cluster_roles(
        &config,
        &default_upstream,
        plane.clone(),
        data_plane,
        owner_handle.clone(),
    );
    let mut server_config = config.config_json.clone();
    server_config["upstream"] = crate::sink::mask_uri(&default_upstream).into();
    let layout = KeyLayout::new(&config.cluster_prefix);
    let capture = CaptureConfig {
        layout: layout.clone(),
        advertise_addr: config.advertise_addr.clone(),
        version: format!("v{}", env!("CARGO_PKG_VERSION")),
        session_ttl: config.session_ttl,
        owner_tick: config.owner_flush_interval,
        processor_tick: config.processor_flush_interval,
        reset_interval: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(10),
        new_id: Arc::new(|| CaptureId::new(uuid::Uuid::new_v4().to_string())),
        clock: clock.clone(),
    };
    let (status_tx, status_rx) = watch::channel(CaptureStatus::default());
    let api = ApiContext {
        meta: Meta::new(Arc::new(store.clone()), layout),
        status: status_rx,
        owner: owner_handle,
        tz: config.tz,
        server_config,
        set_log_level: config.set_log_level.clone(),
        recording: config.recording.clone(),
        start_ts_guard: plane,
        clock,
        // Longer than the owner's own confirmation deadline, so a forwarded request gets the
        // owner's answer (`ErrOwnerUnconfirmed` included) rather than a forwarding timeout.
        http: config
            .security
            .http_client(crate::owner::runtime::REQUEST_TIMEOUT + Duration::from_secs(10))?,
        security: config.security.clone(),
    };
    // The API stops only after the capture has drained and left, so operators can watch
    // the drain through it.
    let (api_stop_tx, api_stop_rx) = watch::channel(false);
    let api_task = tokio::spawn(crate::api::serve(listener, api, tls, api_stop_rx));
    run(store, capture, Arc::new(roles), shutdown, status_tx).await;
    let _ = api_stop_tx.send(true);
    match api_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "status server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "status server task failed"),
        Ok(Ok(())) => {}
    }
    remove_sort_dir(sort_dir).await;
    Ok(())
}

/// Opens the sort dir, removing what crashed processes left there (blocking IO, off the
/// async threads).
async fn open_sort_dir(path: PathBuf) -> Result<Arc<SortDir>, ServerError> {
    let opened = tokio::task::spawn_blocking(move || SortDir::open(&path))
        .await
        .map_err(|e| DataPlaneError::Panicked(e.to_string()))?;
    let (dir, cleaned) = opened?;
    if cleaned.dirs > 0 {
        tracing::info!(
            sort_dir = %dir.root().display(),
            files = cleaned.files,
            bytes = cleaned.bytes,
            "removed {} bytes of sorter files left by {} stopped process(es)",
            cleaned.bytes,
            cleaned.dirs
        );
    }
    tracing::info!(sort_dir = %dir.own().display(), "sorter spills here");
    Ok(Arc::new(dir))
}

/// A clean exit removes this process's spill directory (TiCDC's `UnifiedSorterCleanUp`).
async fn remove_sort_dir(dir: Arc<SortDir>) {
    match tokio::task::spawn_blocking(move || dir.remove_own()).await {
        Ok(Ok(bytes)) => tracing::info!(bytes, "removed the sorter's files"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the sorter's files"),
        Err(e) => tracing::warn!(error = %e, "removing the sorter's files failed"),
    }
}

/// The owner's settings from the server's (its `addr` is filled in per capture), with the
/// cluster's default upstream as server start found it.
pub fn owner_config(config: &ServerConfig, default_upstream: &str) -> OwnerConfig {
    OwnerConfig {
        flush_interval_ms: config.owner_flush_interval.as_millis() as u64,
        gc: GcConfig {
            ttl_secs: config.gc_ttl.as_secs(),
            // Changefeeds naming no upstream use this one; the owner must know it to give
            // them and those naming it explicitly one safe point between them.
            default_upstream: default_upstream.to_owned(),
            service_id: crate::owner::gc::service_id(&config.cluster_prefix),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The capture's owner and processor roles over one data plane.
fn cluster_roles(
    config: &ServerConfig,
    default_upstream: &str,
    plane: Arc<DataPlane>,
    data_plane: DataPlaneRuntime,
    owner_handle: crate::capture::roles::OwnerSlot,
) -> ClusterRoles {
    ClusterRoles {
        upstream: plane.clone(),
        pipelines: plane,
        owner: owner_config(config, default_upstream),
        processor: ProcessorConfig::default(),
        table: config.table_pipeline.clone(),
        data_plane,
        owner_handle,
        record: Some(crate::capture::roles::RecordConfig {
            control: config.recording.clone(),
            cluster_prefix: config.cluster_prefix.clone(),
        }),
    }
}

/// Connects to etcd, retrying with backoff until it answers or shutdown is requested.
async fn connect(
    endpoints: &[String],
    security: &Security,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<EtcdStore> {
    let config = EtcdStoreConfig {
        tls: security.client_tls_config(),
        ..EtcdStoreConfig::default()
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match EtcdStore::connect(endpoints, config.clone()).await {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "etcd is not reachable yet")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

pub mod pd_start;
#[cfg(test)]
mod tests;
