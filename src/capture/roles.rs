//! The production [`Roles`]: the real owner and processor manager with their runtimes.

use std::sync::Arc;

use rcdc_state::model::CaptureInfo;
use tokio::sync::mpsc;

use super::run::Roles;
use crate::owner::runtime::{OwnerHandle, OwnerReactor, OwnerUpstream};
use crate::owner::tick::{Owner, OwnerConfig};
use crate::pipeline::executor::DataPlaneRuntime;
use crate::pipeline::table::TablePipelineConfig;
use crate::processor::runtime::{supervise, PipelineFactory, ProcessorReactor};
use crate::processor::{ProcessorConfig, ProcessorManager};
use crate::record::{Recording, RecordingControl, Role};

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
    /// Where table pipelines run: a runtime apart from the control plane's (the session
    /// keep-alive and the etcd workers), so that a saturated data plane cannot starve them.
    pub data_plane: DataPlaneRuntime,
    /// The running owner's handle, for the HTTP API (empty while this capture is not owner).
    pub owner_handle: OwnerSlot,
    /// Record the owner and processor-manager reactors while this switch is on (`cdc
    /// server --record`, or the HTTP API); `None`: never.
    pub record: Option<RecordConfig>,
}

/// The recording switch and what the headers need.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// The capture's switch.
    pub control: Arc<RecordingControl>,
    /// The cluster prefix, written into the header.
    pub cluster_prefix: String,
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
            reactor = reactor.with_recording(Recording::new(
                rec.control.clone(),
                Role::Owner,
                me.id.as_str(),
                &rec.cluster_prefix,
                &config,
            ));
        }
        reactor
    }

    fn processor(&self, me: &CaptureInfo) -> ProcessorReactor {
        let progress = Arc::new(parking_lot::Mutex::new(Default::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        // The supervisor only dispatches commands: it stays on the control plane's runtime
        // and ends with the reactor (its channel closes), ending every pipeline it started.
        tokio::spawn(supervise(
            rx,
            self.pipelines.clone(),
            progress.clone(),
            self.table.clone(),
            self.data_plane.executor(),
        ));
        let reactor = ProcessorReactor::new(
            ProcessorManager::new(me.id.clone(), self.processor.clone()),
            progress,
            tx,
        );
        match &self.record {
            Some(rec) => reactor.with_recording(Recording::new(
                rec.control.clone(),
                Role::Processor,
                me.id.as_str(),
                &rec.cluster_prefix,
                &self.processor,
            )),
            None => reactor,
        }
    }
}
