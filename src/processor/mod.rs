//! The processor: the per-capture side of table replication (target-design §7, facts §6).
//!
//! [`tick`] holds the pure decision step, [`ProcessorManager::tick`]: from the snapshot and
//! the table progress the runtime reports it returns patch groups for etcd and
//! [`PipelineCommand`]s for the runtime (start, stop-at, cancel a table pipeline). It reads no
//! clock and does no IO, so it can be replayed (target-design §3, §9). [`runtime`] adapts it to
//! the EtcdWorker and runs the table pipelines it commands.
//!
//! Differences from TiCDC v5, all deliberate:
//! - a patch that finds its task status or operation gone drops its group instead of killing
//!   the worker (facts §8.23); the next tick decides again;
//! - a failed processor is recreated after an exponential backoff, not on the next tick;
//! - the reported checkpoint never moves backwards, except down to the progress of a table
//!   that joined through an add operation (see [`tick`] for why that exception is needed);
//! - work per tick scales with the capture's own tables: other captures' task keys are never
//!   read (facts §8.26, target-design §10).

pub mod metrics;
pub mod runtime;
pub mod tick;

pub use tick::{
    PipelineCommand, Pipelines, ProcessorConfig, ProcessorInput, ProcessorManager, ProcessorOutput,
    TablePipelineState, TableProgress, PROCESSOR_UNKNOWN_ERROR,
};
