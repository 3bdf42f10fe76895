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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rcdc_state::{ChangefeedId, TableId, Ts};
use tokio::sync::watch;

use super::executor::PipelineExecutor;
use super::sorter::{DrainError, Sorter, SorterConfig, SorterError, DRAIN_BATCH};
use crate::event::TableEvent;
use crate::processor::tick::{Pipelines, TablePipelineState, TableProgress};
use crate::sink::{SinkError, TableSink};

/// Where a table's changes come from (the upstream, adapted per table).
pub trait TableSource: Send {
    /// The upstream's current ts: nothing newer can be asked for.
    fn now(&self) -> Ts;
    /// Streams the changes with `after < commit_ts <= upto`, in any order, then
    /// `Resolved(upto)`, into `emit`, one at a time (never collected: a slice can hold more
    /// rows than the sorter's memory). Stops at the first error `emit` returns and returns it.
    fn fetch(
        &mut self,
        after: Ts,
        upto: Ts,
        emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
    ) -> Result<(), PullError>;
}

/// Why a pull failed (the table's run ends; the processor restarts it from its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The source failed (snapshot lost, upstream unreachable, ...).
    #[error("{0}")]
    Source(String),
    /// The sorter failed (a full disk, a corrupt run).
    #[error(transparent)]
    Sorter(#[from] SorterError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct TablePipelineConfig {
    /// The sorter's memory bound and sort dir (`per-table-memory-quota`, `[sorter]`).
    pub sorter: SorterConfig,
    /// Pause between pulls when caught up.
    pub poll_interval: Duration,
    /// Largest ts range pulled at once, in physical milliseconds (bounds memory per pull).
    pub max_slice_ms: u64,
}

impl Default for TablePipelineConfig {
    fn default() -> Self {
        Self {
            sorter: SorterConfig::default(),
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
    /// Rows this run wrote, published with every report.
    rows: Arc<AtomicU64>,
}

impl ProgressSlot {
    /// A live slot for one run of `key`'s pipeline.
    pub fn new(progress: Arc<Mutex<Pipelines>>, key: (ChangefeedId, TableId)) -> Self {
        Self {
            progress,
            key,
            retired: Arc::new(AtomicBool::new(false)),
            rows: Arc::new(AtomicU64::new(0)),
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
                rows: self.rows.load(Ordering::Relaxed),
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
/// one. Every pull, and closing the sink, runs through `executor`: off the control plane's
/// threads, and the task yields at each of them.
pub async fn run_table_pipeline(
    start_ts: Ts,
    source: Box<dyn TableSource>,
    sink: Box<dyn TableSink>,
    slot: ProgressSlot,
    mut stop_at: watch::Receiver<Option<Ts>>,
    config: TablePipelineConfig,
    executor: PipelineExecutor,
) {
    let key = slot.key().clone();
    let mut counted = sink.rows_written();
    let label = format!("{}-{}", key.0, key.1);
    let mut work = Work::new(WorkParts {
        source,
        sorter: Sorter::new(config.sorter.clone(), start_ts, label),
        sink,
    });
    let (mut cursor, mut resolved, mut checkpoint) = (start_ts, start_ts, start_ts);
    slot.report(TablePipelineState::Starting, start_ts, start_ts);
    loop {
        let boundary = *stop_at.borrow();
        if boundary.is_some_and(|b| checkpoint >= b) {
            // Everything up to the checkpoint is durable whether or not closing succeeds.
            let _ = executor.run_blocking(move || work.close()).await;
            let stopped = TablePipelineState::Stopped {
                checkpoint_ts: checkpoint,
            };
            slot.report(stopped, resolved, checkpoint);
            return;
        }
        let upto = next_upto(
            work.parts().source.now(),
            boundary,
            cursor,
            config.max_slice_ms,
        );
        if upto > cursor {
            let (back, pulled) = match executor.run_blocking(move || work.pull(cursor, upto)).await
            {
                Ok(done) => done,
                Err(e) => {
                    // The work is lost with the panic (or the runtime's shutdown).
                    tracing::warn!(table = %key.1, changefeed = %key.0, error = %e, "table pipeline failed");
                    slot.report(
                        TablePipelineState::Failed(e.to_string()),
                        resolved,
                        checkpoint,
                    );
                    return;
                }
            };
            work = back;
            resolved = work.parts().sorter.resolved();
            match pulled {
                Ok(cp) => {
                    cursor = upto;
                    checkpoint = checkpoint.max(cp);
                    let written = work.parts().sink.rows_written();
                    let new_rows = written.saturating_sub(counted);
                    super::metrics::rows_flushed(key.0.as_str(), new_rows);
                    slot.rows.fetch_add(new_rows, Ordering::Relaxed);
                    counted = written;
                    slot.report(TablePipelineState::Running, resolved, checkpoint);
                    continue; // catching up: pull again at once (the pull was a yield point)
                }
                Err(e) => {
                    tracing::warn!(table = %key.1, changefeed = %key.0, error = %e, "table pipeline failed");
                    slot.report(
                        TablePipelineState::Failed(e.to_string()),
                        resolved,
                        checkpoint,
                    );
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

/// The end of the next pull: the upstream's now, capped by the boundary and by one slice.
fn next_upto(now: Ts, boundary: Option<Ts>, cursor: Ts, max_slice_ms: u64) -> Ts {
    let slice_end = Ts::from_parts(cursor.physical_ms() + max_slice_ms, 0);
    let upto = boundary.map_or(now, |b| now.min(b));
    upto.min(slice_end.max(Ts(cursor.0 + 1)))
}

/// What a pull works on, moved to the thread that runs the pull and back.
struct WorkParts {
    source: Box<dyn TableSource>,
    sorter: Sorter,
    sink: Box<dyn TableSink>,
}

/// [`WorkParts`] with the rule that they are dropped off the async threads: dropping them
/// removes spill files and closes sink files, which is blocking IO. A run that ends normally
/// drops them in its last blocking call; a run aborted between pulls drops them here, from a
/// task's async thread, so the drop is handed to the blocking pool.
struct Work(Option<WorkParts>);

impl Work {
    fn new(parts: WorkParts) -> Self {
        Self(Some(parts))
    }

    fn parts(&mut self) -> &mut WorkParts {
        match &mut self.0 {
            Some(parts) => parts,
            // Taken only by `close` and `drop`, which consume the work.
            None => unreachable!("work used after it was closed"),
        }
    }

    /// Closes the sink and drops everything, on the calling (blocking) thread.
    fn close(mut self) {
        if let Some(mut parts) = self.0.take() {
            parts.sink.close();
        }
    }

    /// One pull; a failed pull closes the sink, which is poisoned anyway.
    fn pull(mut self, after: Ts, upto: Ts) -> (Self, Result<Ts, PullError>) {
        let parts = self.parts();
        let pulled = pull(
            &mut *parts.source,
            &mut parts.sorter,
            &mut *parts.sink,
            after,
            upto,
        );
        if pulled.is_err() {
            parts.sink.close();
        }
        (self, pulled)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let Some(parts) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            // Detached: nothing waits for a drop, and a runtime shutting down drops it inline.
            Ok(handle) => drop(handle.spawn_blocking(move || drop(parts))),
            Err(_) => drop(parts),
        }
    }
}

/// One pull: stream the slice into the sorter (which spills past its memory bound), write
/// what is released in bounded batches, flush. Returns the sink checkpoint.
fn pull(
    source: &mut dyn TableSource,
    sorter: &mut Sorter,
    sink: &mut dyn TableSink,
    after: Ts,
    upto: Ts,
) -> Result<Ts, PullError> {
    // TiCDC's `processor_panic`: any action panics here, on the blocking pool, where the
    // executor turns it into this table's failure (the capture lives on).
    fail::fail_point!(
        "pipeline-panic",
        |m: Option<String>| -> Result<Ts, PullError> {
            panic!(
                "failpoint pipeline-panic: {}",
                m.as_deref().unwrap_or("injected")
            )
        }
    );
    source.fetch(after, upto, &mut |ev| Ok(sorter.push(ev)?))?;
    sorter
        .drain_ready(DRAIN_BATCH, |rows| sink.write(rows))
        .map_err(|e| match e {
            DrainError::Sorter(e) => PullError::Sorter(e),
            DrainError::Write(e) => PullError::Sink(e),
        })?;
    Ok(sink.flush(sorter.resolved())?)
}

/// Emits `events` in order (sources in tests produce whole slices).
#[cfg(test)]
pub(crate) fn emit_all(
    events: impl IntoIterator<Item = TableEvent>,
    emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
) -> Result<(), PullError> {
    events.into_iter().try_for_each(emit)
}

#[cfg(test)]
mod tests;
