//! One table's pipeline task: source → sorter → sink, reporting progress to the processor
//! (target-design §8, facts §6.3).
//!
//! The task pulls the table's changes from its [`TableSource`] in slices up to the
//! upstream's current ts, sorts them, writes released rows to the sink, and flushes: the
//! sink's answer is the table checkpoint (everything at or before it is durable). Progress
//! `{resolved, checkpoint, state}` goes into the shared [`Pipelines`] map that the processor
//! reactor reads at its next tick, so the tick never waits on IO.
//!
//! "Stop at ts" (a remove operation) caps the pull at the boundary; once the checkpoint
//! reaches it the task reports `Stopped { checkpoint }` and ends, exactly what the op
//! protocol needs to finish the remove (facts §5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rcdc_state::{ChangefeedId, TableId, Ts};
use tokio::sync::watch;

use super::sorter::Sorter;
use crate::event::TableEvent;
use crate::processor::tick::{Pipelines, TablePipelineState, TableProgress};
use crate::sink::TableSink;

/// Where a table's changes come from (the upstream, adapted per table).
pub trait TableSource: Send {
    /// The upstream's current ts: nothing newer can be asked for.
    fn now(&self) -> Ts;
    /// Changes with `after < commit_ts <= upto` in any order, then `Resolved(upto)`.
    fn fetch(&mut self, after: Ts, upto: Ts) -> Result<Vec<TableEvent>, String>;
}

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct TablePipelineConfig {
    /// Sorter memory budget (`per-table-memory-quota`, 20 MiB in TiCDC).
    pub sorter_bytes: usize,
    /// Pause between pulls when caught up.
    pub poll_interval: Duration,
    /// Largest ts range pulled at once, in physical milliseconds (bounds memory per pull).
    pub max_slice_ms: u64,
}

impl Default for TablePipelineConfig {
    fn default() -> Self {
        Self {
            sorter_bytes: 20 << 20,
            poll_interval: Duration::from_millis(50),
            max_slice_ms: 1_000,
        }
    }
}

/// One pipeline run's entry in the shared progress map.
///
/// Aborting a task does not stop a pull already running, and that pull reports when it
/// ends; so a cancelled or replaced run is *retired*, and a retired run's reports are
/// dropped. Retiring and reporting both happen under the map's lock, so a report racing a
/// cancel lands either before the cancel removes the entry or not at all: no ghost entry
/// for a table the processor no longer runs.
#[derive(Clone)]
pub struct ProgressSlot {
    progress: Arc<Mutex<Pipelines>>,
    key: (ChangefeedId, TableId),
    retired: Arc<AtomicBool>,
}

impl ProgressSlot {
    /// A live slot for one run of `key`'s pipeline.
    pub fn new(progress: Arc<Mutex<Pipelines>>, key: (ChangefeedId, TableId)) -> Self {
        Self {
            progress,
            key,
            retired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The changefeed and table.
    pub fn key(&self) -> &(ChangefeedId, TableId) {
        &self.key
    }

    /// Publishes the run's progress, unless the run was retired.
    pub fn report(&self, state: TablePipelineState, resolved: Ts, checkpoint: Ts) {
        let mut map = self.progress.lock();
        // Relaxed is enough: the flag is only read and written under the map's lock.
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        map.insert(
            self.key.clone(),
            TableProgress {
                resolved_ts: resolved,
                checkpoint_ts: checkpoint,
                state,
            },
        );
    }

    /// Drops this run's later reports; with `remove`, its entry goes too, in the same step.
    pub fn retire(&self, remove: bool) {
        let mut map = self.progress.lock();
        self.retired.store(true, Ordering::Relaxed);
        if remove {
            map.remove(&self.key);
        }
    }
}

/// Runs the pipeline until stopped at its boundary, cancelled (the task is aborted and the
/// slot retired), or failed. `stop_at` carries the remove boundary once the processor sets
/// one.
pub async fn run_table_pipeline(
    start_ts: Ts,
    mut source: Box<dyn TableSource>,
    mut sink: Box<dyn TableSink>,
    slot: ProgressSlot,
    mut stop_at: watch::Receiver<Option<Ts>>,
    config: TablePipelineConfig,
) {
    let key = slot.key().clone();
    let report = |state, resolved, checkpoint| slot.report(state, resolved, checkpoint);
    let mut sorter = Sorter::new(config.sorter_bytes, start_ts);
    let mut cursor = start_ts;
    let mut checkpoint = start_ts;
    let mut counted = sink.rows_written();
    report(TablePipelineState::Starting, start_ts, start_ts);
    loop {
        let boundary = *stop_at.borrow();
        if let Some(b) = boundary {
            if checkpoint >= b {
                sink.close();
                report(
                    TablePipelineState::Stopped {
                        checkpoint_ts: checkpoint,
                    },
                    sorter.resolved(),
                    checkpoint,
                );
                return;
            }
        }
        let mut upto = source.now();
        if let Some(b) = boundary {
            upto = upto.min(b);
        }
        let slice_end = Ts::from_parts(cursor.physical_ms() + config.max_slice_ms, 0);
        upto = upto.min(slice_end.max(Ts(cursor.0 + 1)));
        if upto > cursor {
            match pull(&mut *source, &mut sorter, &mut *sink, cursor, upto) {
                Ok(cp) => {
                    cursor = upto;
                    checkpoint = checkpoint.max(cp);
                    let written = sink.rows_written();
                    super::metrics::rows_flushed(key.0.as_str(), written.saturating_sub(counted));
                    counted = written;
                    report(TablePipelineState::Running, sorter.resolved(), checkpoint);
                    continue; // catch up without waiting
                }
                Err(e) => {
                    tracing::warn!(table = %key.1, changefeed = %key.0, error = %e, "table pipeline failed");
                    report(TablePipelineState::Failed(e), sorter.resolved(), checkpoint);
                    sink.close();
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop_at.changed() => {}
        }
    }
}

/// One pull: fetch, sort, write what is released, flush. Returns the sink checkpoint.
fn pull(
    source: &mut dyn TableSource,
    sorter: &mut Sorter,
    sink: &mut dyn TableSink,
    after: Ts,
    upto: Ts,
) -> Result<Ts, String> {
    let events = source.fetch(after, upto)?;
    for ev in events {
        let mut pending = Some(ev);
        while let Some(ev) = pending.take() {
            if let Err(full) = sorter.push(ev.clone()) {
                // Release what is ready to make room; if nothing is, the budget is too small
                // for the unresolved span, which is a configuration error worth naming.
                let ready = sorter.take_ready();
                if ready.is_empty() {
                    return Err(full.to_string());
                }
                sink.write(&ready).map_err(|e| e.to_string())?;
                pending = Some(ev);
            }
        }
    }
    let ready = sorter.take_ready();
    sink.write(&ready).map_err(|e| e.to_string())?;
    sink.flush(sorter.resolved()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
