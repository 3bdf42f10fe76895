//! The production [`Roles`]: the real owner and processor manager with their runtimes.

use std::sync::Arc;

use rcdc_state::model::CaptureInfo;
use tokio::sync::mpsc;

use super::run::Roles;
use crate::owner::runtime::{OwnerReactor, OwnerUpstream};
use crate::owner::tick::{Owner, OwnerConfig};
use crate::pipeline::table::TablePipelineConfig;
use crate::processor::runtime::{supervise, PipelineFactory, ProcessorReactor};
use crate::processor::{ProcessorConfig, ProcessorManager};

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
}

impl Roles for ClusterRoles {
    type Owner = OwnerReactor;
    type Processor = ProcessorReactor;

    fn owner(&self, me: &CaptureInfo) -> OwnerReactor {
        let config = OwnerConfig {
            addr: me.address.clone(),
            ..self.owner.clone()
        };
        // The handle for operator requests is wired to the API in issue #5.
        let (reactor, _handle) = OwnerReactor::spawn(Owner::new(config), self.upstream.clone());
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
