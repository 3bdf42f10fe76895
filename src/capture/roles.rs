//! The production [`Roles`]: the real owner and processor manager with their runtimes.

use std::sync::Arc;

use rcdc_state::model::CaptureInfo;
use tokio::sync::mpsc;

use super::run::Roles;
use crate::owner::runtime::{OwnerHandle, OwnerReactor, OwnerUpstream};
use crate::owner::tick::{Owner, OwnerConfig};
use crate::pipeline::table::TablePipelineConfig;
use crate::processor::runtime::{supervise, PipelineFactory, ProcessorReactor};
use crate::processor::{ProcessorConfig, ProcessorManager};
use crate::record::Recorder;

/// Builds owner and processor reactors over one upstream seam and one pipeline factory.
pub struct ClusterRoles {
    /// The owner's upstream seam.
    pub upstream: Arc<dyn OwnerUpstream>,
    /// Sources and sinks for table pipelines.
    pub pipelines: Arc<dyn PipelineFactory>,
    /// Owner settings (its `addr` is replaced by the capture's).
    pub owner: OwnerConfig,
    /// Processor settings.
    pub processor: ProcessorConfig,
    /// Table pipeline settings.
    pub table: TablePipelineConfig,
    /// The running owner's handle, for the HTTP API (empty while this capture is not owner).
    pub owner_handle: OwnerSlot,
    /// Record each owner incarnation into this directory (`cdc server --record`).
    pub record: Option<RecordConfig>,
}

/// Where and how much to record.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// The cluster prefix, written into the header.
    pub cluster_prefix: String,
    /// Per-recording size limit.
    pub max_bytes: u64,
}

/// Where the capture publishes its running owner's handle.
pub type OwnerSlot = Arc<parking_lot::Mutex<Option<OwnerHandle>>>;

impl Roles for ClusterRoles {
    type Owner = OwnerReactor;
    type Processor = ProcessorReactor;

    fn owner(&self, me: &CaptureInfo) -> OwnerReactor {
        let config = OwnerConfig {
            addr: me.address.clone(),
            ..self.owner.clone()
        };
        let (mut reactor, handle) =
            OwnerReactor::spawn(Owner::new(config.clone()), self.upstream.clone());
        *self.owner_handle.lock() = Some(handle);
        if let Some(rec) = &self.record {
            match Recorder::create(
                &rec.dir,
                me.id.as_str(),
                &rec.cluster_prefix,
                &config,
                rec.max_bytes,
            ) {
                Ok(r) => {
                    tracing::info!(path = %r.path().display(), "recording the owner");
                    reactor = reactor.with_recorder(r);
                }
                Err(e) => {
                    tracing::warn!(dir = %rec.dir.display(), error = %e, "cannot record the owner")
                }
            }
        }
        reactor
    }

    fn processor(&self, me: &CaptureInfo) -> ProcessorReactor {
        let progress = Arc::new(parking_lot::Mutex::new(Default::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(supervise(
            rx,
            self.pipelines.clone(),
            progress.clone(),
            self.table.clone(),
        ));
        ProcessorReactor::new(
            ProcessorManager::new(me.id.clone(), self.processor.clone()),
            progress,
            tx,
        )
    }
}
