//! [`ProcessorManager::tick`]: the processor manager and its processors as one pure step
//! (facts §5, §6.1–6.2; target-design §3, §7).
//!
//! Per changefeed, in order:
//! 1. **Active?** Info, status and this capture's task status present, no stop state in any
//!    of their admin job types. If not: cancel its pipelines, write nothing. A broken
//!    changefeed (a corrupt key) is frozen: no command, no patch, until it decodes again.
//! 2. **Create** a processor when the own task status has tables or operations and no
//!    backoff is running. A capture holding nothing of the changefeed does no work for it.
//! 3. **Failure**: a pipeline reporting `Failed` puts the error in the own TaskPosition,
//!    cancels every pipeline of the changefeed and closes the processor, which is recreated
//!    after a backoff (1 s doubling to 60 s; reset once a processor stays healthy that long).
//! 4. **Position missing**: create it at the changefeed checkpoint and stop there (§6.2).
//! 5. **Operations** not yet applied, as in facts §5 (one patch per status change).
//! 6. **Tables vs pipelines**: start tables that have no operation and no pipeline (after a
//!    restart) at max(replica start-ts, changefeed checkpoint); cancel pipelines of tables
//!    neither held nor under a delete operation.
//! 7. **Position**: min resolved and min checkpoint over the live pipelines, written only when
//!    changed. The checkpoint is floored at the one already reported, so a pipeline restarted
//!    below it cannot drag it back (its data up to there was flushed before). A table that
//!    joined through an add operation is exempt from the floor until it catches up: flooring
//!    it would report progress it has not made, and the owner's cap (op boundaries bound the
//!    changefeed resolved ts only while the op exists) stops protecting it once the op is
//!    deleted. The resolved ts is kept ≥ the checkpoint.
//! 8. **Workload**: `{table: {workload: 1}}` for running pipelines, written only when changed,
//!    through [`WorkloadEdit::Set`](rcdc_state::patch::WorkloadEdit::Set) (a typed edit, so unknown fields of kept entries survive).
//!
//! The patches of one changefeed form one group labelled `processor/<capture>/<changefeed>`,
//! except the workload, which follows in `…/workload` (both fit one txn on their own).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use itertools::{EitherOrBoth, Itertools};
use rcdc_state::model::{OperationStatus, RunningError, TaskStatus};
use rcdc_state::patch::{TaskPositionEdit, TaskStatusEdit};
use rcdc_state::{
    CaptureId, ChangefeedId, ChangefeedState, Edit, GlobalState, PatchGroup, TableId, Ts,
};

/// The error code a processor reports for an error without an RFC code.
pub const PROCESSOR_UNKNOWN_ERROR: &str = "CDC:ErrProcessorUnknown";

/// An effect for the runtime that owns the table pipelines. Commands are ordered; the runtime
/// executes them in order. `Cancel` of an unknown pipeline is a no-op, and `Start` of a table
/// whose old pipeline is still being torn down replaces it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PipelineCommand {
    /// Start replicating `table` with changes after `start_ts`.
    Start {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The table.
        table: TableId,
        /// Replicate changes after this ts.
        start_ts: Ts,
    },
    /// Stop the pipeline once its checkpoint reaches `boundary_ts` (facts §6.3), then report
    /// [`TablePipelineState::Stopped`].
    StopAt {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The table.
        table: TableId,
        /// The stop ts.
        boundary_ts: Ts,
    },
    /// Drop the pipeline now; the runtime stops reporting it once it is gone.
    Cancel {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The table.
        table: TableId,
    },
}

/// The life of one table pipeline, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TablePipelineState {
    /// Started, no resolved event yet.
    Starting,
    /// Replicating.
    Running,
    /// Stopped at its stop ts (or target ts) with this final checkpoint.
    Stopped {
        /// The table's final checkpoint.
        checkpoint_ts: Ts,
    },
    /// The pipeline failed with this message.
    Failed(String),
}

/// One pipeline's progress, reported by the runtime.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableProgress {
    /// Every change up to here is in the sorter.
    pub resolved_ts: Ts,
    /// Every change up to here is in the sink.
    pub checkpoint_ts: Ts,
    /// Its state.
    pub state: TablePipelineState,
    /// Rows this run of the pipeline has written to the sink (the changefeed's
    /// `TaskPosition.count` on this capture adds them up).
    #[serde(default)]
    pub rows: u64,
}

/// The runtime's report: every pipeline on this capture, by changefeed and table.
pub type Pipelines = BTreeMap<(ChangefeedId, TableId), TableProgress>;

/// What a tick reads besides the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct ProcessorInput<'a> {
    /// Injected time, Unix milliseconds.
    pub now_ms: u64,
    /// Every pipeline the runtime runs on this capture.
    pub tables: &'a Pipelines,
}

/// What a tick decided.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessorOutput {
    /// Patch groups to commit, one per changefeed with something to write.
    pub groups: Vec<PatchGroup>,
    /// Commands for the runtime, in order.
    pub commands: Vec<PipelineCommand>,
}

/// Tunables of the processor manager.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessorConfig {
    /// First delay before a failed processor is recreated.
    pub backoff_initial_ms: u64,
    /// Largest delay; the delay doubles per failure up to it.
    pub backoff_max_ms: u64,
    /// A recreated processor healthy this long resets the backoff.
    pub backoff_reset_ms: u64,
    /// A started pipeline the runtime has not reported after this long counts as missing.
    pub start_report_timeout_ms: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            backoff_reset_ms: 60_000,
            start_report_timeout_ms: 10_000,
        }
    }
}

/// A start command sent but not yet reflected in the runtime's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PendingStart {
    start_ts: Ts,
    sent_ms: u64,
}

/// Memory of one changefeed's processor on this capture.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Processor {
    created_ms: u64,
    pending: BTreeMap<TableId, PendingStart>,
    /// Tables added through an add operation whose checkpoint is still below the reported
    /// one; exempt from the checkpoint floor.
    joined: BTreeSet<TableId>,
    /// The rows behind `TaskPosition.count`; see [`RowCount`].
    #[serde(default, skip_serializing_if = "RowCount::is_empty")]
    rows: RowCount,
}

/// The rows a processor's pipelines wrote, for `TaskPosition.count`. Each pipeline run reports
/// its own total; a run that stops reporting (moved away, restarted) keeps counting through
/// `done`. `base` is the count the position held when the first row was seen, so a processor
/// recreated on the same capture continues the count instead of restarting it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RowCount {
    base: Option<u64>,
    done: u64,
    /// The last total of each reporting run with rows, by table (sorted).
    seen: Vec<(TableId, u64)>,
}

impl RowCount {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Takes in the runs' reports (sorted by table); returns the count, `None` while no row
    /// was written. One merge walk over the reports and the last totals: this runs on every
    /// visit of a changefeed that may hold many thousand tables.
    fn observe<'a>(
        &mut self,
        runs: impl Iterator<Item = (TableId, &'a TableProgress)>,
        stored: u64,
    ) -> Option<u64> {
        let reported = runs.filter(|(_, p)| p.rows > 0).map(|(t, p)| (t, p.rows));
        let mut now = Vec::with_capacity(self.seen.len());
        for pair in reported.merge_join_by(self.seen.iter(), |(t, _), (s, _)| t.cmp(s)) {
            match pair {
                EitherOrBoth::Both((t, rows), (_, before)) => {
                    if *before > rows {
                        self.done += before; // a new run of the table
                    }
                    now.push((t, rows));
                }
                EitherOrBoth::Left((t, rows)) => now.push((t, rows)),
                EitherOrBoth::Right((_, before)) => self.done += before, // the run left
            }
        }
        self.seen = now;
        let sum = self.done + self.seen.iter().map(|(_, r)| r).sum::<u64>();
        if sum == 0 {
            return None;
        }
        Some(*self.base.get_or_insert(stored) + sum)
    }
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Failure {
    count: u32,
    retry_at_ms: u64,
}

/// The processor manager of one capture (facts §6.1): one processor per changefeed that has
/// work here.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProcessorManager {
    capture: CaptureId,
    config: ProcessorConfig,
    processors: BTreeMap<ChangefeedId, Processor>,
    failures: BTreeMap<ChangefeedId, Failure>,
    /// Pipelines we sent `Cancel` for that the runtime still reports, so it is sent once.
    cancelled: BTreeMap<ChangefeedId, BTreeSet<TableId>>,
}

impl ProcessorManager {
    /// A manager for `capture`.
    pub fn new(capture: CaptureId, config: ProcessorConfig) -> Self {
        Self {
            capture,
            config,
            processors: BTreeMap::new(),
            failures: BTreeMap::new(),
            cancelled: BTreeMap::new(),
        }
    }

    /// The capture this manager acts for.
    pub fn capture(&self) -> &CaptureId {
        &self.capture
    }

    /// Whether a processor for `changefeed` is open.
    pub fn has_processor(&self, changefeed: &ChangefeedId) -> bool {
        self.processors.contains_key(changefeed)
    }

    /// One decision step. Pure: everything it reads is in `state` and `input`.
    pub fn tick(&mut self, state: &GlobalState, input: &ProcessorInput<'_>) -> ProcessorOutput {
        let mut out = ProcessorOutput::default();
        for (id, cf) in state.changefeeds() {
            self.tick_changefeed(state, id, Some(cf), input, &mut out);
        }
        // Processors, cancels and pipelines of changefeeds that left the state entirely.
        let mut orphans: BTreeSet<ChangefeedId> = BTreeSet::new();
        let gone = |id: &ChangefeedId| state.changefeed(id).is_none();
        orphans.extend(self.processors.keys().filter(|id| gone(id)).cloned());
        orphans.extend(self.cancelled.keys().filter(|id| gone(id)).cloned());
        orphans.extend(changefeeds_in(input.tables).into_iter().filter(gone));
        for id in &orphans {
            self.tick_changefeed(state, id, None, input, &mut out);
        }
        self.failures.retain(|id, _| state.changefeed(id).is_some());
        out
    }

    fn tick_changefeed(
        &mut self,
        state: &GlobalState,
        id: &ChangefeedId,
        cf: Option<&ChangefeedState>,
        input: &ProcessorInput<'_>,
        out: &mut ProcessorOutput,
    ) {
        self.prune_cancelled(id, input.tables);
        if cf.is_some_and(ChangefeedState::is_broken) {
            return;
        }
        let Some(view) = cf.and_then(|cf| ActiveView::of(cf, &self.capture)) else {
            self.close(id, input.tables, out);
            return;
        };
        let now = input.now_ms;
        let mut processor = match self.processors.remove(id) {
            Some(p) => p,
            None => {
                let backing_off = self.failures.get(id).is_some_and(|f| now < f.retry_at_ms);
                if view.task.is_empty() || backing_off {
                    self.close(id, input.tables, out);
                    return;
                }
                Processor {
                    created_ms: now,
                    ..Processor::default()
                }
            }
        };
        let cancelled = self.cancelled.remove(id).unwrap_or_default();
        let group = PatchGroup::new(format!("processor/{}/{}", self.capture, id));
        let mut run = Run {
            manager: self,
            state,
            id,
            view: &view,
            tables: input.tables,
            now,
            group,
            cancelled,
            commands: Vec::new(),
        };
        let keep = run.tick(&mut processor);
        let Run {
            group,
            cancelled,
            commands,
            ..
        } = run;
        out.commands.extend(commands);
        // The workload goes in a group of its own: it is as large as the task status (an
        // entry per table), and the two together would not fit one txn for a capture holding
        // ~15,000 tables; nothing reads them as a pair.
        let (workload, rest): (Vec<_>, Vec<_>) = group
            .patches
            .into_iter()
            .partition(|p| matches!(p.edit, Edit::TaskWorkload(_)));
        for (label, patches) in [
            (group.label.clone(), rest),
            (format!("{}/workload", group.label), workload),
        ] {
            if !patches.is_empty() {
                out.groups.push(PatchGroup { label, patches });
            }
        }
        if !cancelled.is_empty() {
            self.cancelled.insert(id.clone(), cancelled);
        }
        match keep {
            Keep::Open => {
                if self.failures.get(id).is_some_and(|_| {
                    processor
                        .created_ms
                        .saturating_add(self.config.backoff_reset_ms)
                        <= now
                }) {
                    self.failures.remove(id);
                }
                self.processors.insert(id.clone(), processor);
            }
            Keep::Failed => {
                let count = self
                    .failures
                    .get(id)
                    .map_or(0, |f| f.count)
                    .saturating_add(1);
                let shift = count.saturating_sub(1).min(32);
                let delay = self
                    .config
                    .backoff_initial_ms
                    .saturating_mul(1u64 << shift)
                    .min(self.config.backoff_max_ms);
                self.failures.insert(
                    id.clone(),
                    Failure {
                        count,
                        retry_at_ms: now.saturating_add(delay),
                    },
                );
                // Pending starts not yet reported are cancelled too.
                for table in processor.pending.keys() {
                    self.cancel(id, *table, out);
                }
                self.close(id, input.tables, out);
            }
        }
    }

    /// Closes the processor of `id` (if any) and cancels every pipeline the runtime still
    /// reports for it, once per pipeline.
    fn close(&mut self, id: &ChangefeedId, tables: &Pipelines, out: &mut ProcessorOutput) {
        if let Some(p) = self.processors.remove(id) {
            for table in p.pending.keys() {
                self.cancel(id, *table, out);
            }
        }
        for (table, _) in pipelines(tables, id) {
            self.cancel(id, table, out);
        }
    }

    fn cancel(&mut self, id: &ChangefeedId, table: TableId, out: &mut ProcessorOutput) {
        let set = self.cancelled.entry(id.clone()).or_default();
        if set.insert(table) {
            out.commands.push(PipelineCommand::Cancel {
                changefeed: id.clone(),
                table,
            });
        }
    }

    /// Forgets cancels of pipelines the runtime no longer reports.
    fn prune_cancelled(&mut self, id: &ChangefeedId, tables: &Pipelines) {
        if let Some(set) = self.cancelled.get_mut(id) {
            let mut key = (id.clone(), TableId(0));
            set.retain(|t| {
                key.1 = *t;
                tables.contains_key(&key)
            });
            if set.is_empty() {
                self.cancelled.remove(id);
            }
        }
    }
}

/// The parts of an active changefeed a processor reads.
struct ActiveView<'a> {
    cf: &'a ChangefeedState,
    task: &'a TaskStatus,
    checkpoint_ts: Ts,
    resolved_ts: Ts,
}

impl<'a> ActiveView<'a> {
    /// `Some` when the changefeed is active on `capture` and not in a stop state.
    fn of(cf: &'a ChangefeedState, capture: &CaptureId) -> Option<Self> {
        let info = cf.info.as_ref()?;
        let status = cf.status.as_ref()?;
        let task = cf.task_statuses.get(capture)?;
        let stopped = info.admin_job_type.is_stop_state()
            || status.admin_job_type.is_stop_state()
            || task.admin_job_type.is_stop_state();
        if stopped {
            return None;
        }
        Some(Self {
            cf,
            task,
            checkpoint_ts: info.checkpoint_ts(Some(status)),
            resolved_ts: status.resolved_ts,
        })
    }
}

enum Keep {
    Open,
    Failed,
}

/// One processor's tick: borrows what it reads, collects what it writes.
struct Run<'a> {
    manager: &'a ProcessorManager,
    state: &'a GlobalState,
    id: &'a ChangefeedId,
    view: &'a ActiveView<'a>,
    tables: &'a Pipelines,
    now: u64,
    group: PatchGroup,
    cancelled: BTreeSet<TableId>,
    commands: Vec<PipelineCommand>,
}

impl Run<'_> {
    fn tick(&mut self, p: &mut Processor) -> Keep {
        let capture = &self.manager.capture;
        let layout = self.state.layout();
        let position_key = layout.task_position(capture, self.id);

        // A started pipeline the runtime now reports is no longer pending.
        let mut key = (self.id.clone(), TableId(0));
        p.pending.retain(|t, _| {
            key.1 = *t;
            !self.tables.contains_key(&key)
        });

        if let Some((table, message)) = self.first_failure() {
            let addr = self
                .state
                .captures()
                .get(capture)
                .map(|c| c.address.clone())
                .unwrap_or_default();
            let error = RunningError {
                addr,
                code: PROCESSOR_UNKNOWN_ERROR.to_owned(),
                message: format!("table {table}: {message}"),
                ..RunningError::default()
            };
            if !self.view.cf.task_positions.contains_key(capture) {
                // Not at ts 0, as a bare SetError would create it (and TiCDC does).
                let cp = self.view.checkpoint_ts;
                self.group.push(
                    position_key.clone(),
                    Edit::TaskPosition(TaskPositionEdit::SetTs {
                        checkpoint_ts: cp,
                        resolved_ts: cp,
                        count: None,
                    }),
                );
            }
            self.group.push(
                position_key,
                Edit::TaskPosition(TaskPositionEdit::SetError { error: Some(error) }),
            );
            return Keep::Failed;
        }

        let Some(position) = self.view.cf.task_positions.get(capture) else {
            let cp = self.view.checkpoint_ts;
            self.group.push(
                position_key,
                Edit::TaskPosition(TaskPositionEdit::SetTs {
                    checkpoint_ts: cp,
                    resolved_ts: cp,
                    count: None,
                }),
            );
            return Keep::Open;
        };

        self.handle_operations(p, position.resolved_ts);
        self.sync_tables(p);
        let count = p
            .rows
            .observe(pipelines(self.tables, self.id), position.count);
        self.handle_position(
            p,
            (position.checkpoint_ts, position.resolved_ts),
            count.filter(|c| *c != position.count),
            position_key,
        );
        self.handle_workload();
        Keep::Open
    }

    /// The reported pipeline of `table`, unless it is being cancelled.
    fn progress(&self, table: TableId) -> Option<&TableProgress> {
        if self.cancelled.contains(&table) {
            return None;
        }
        self.tables.get(&(self.id.clone(), table))
    }

    /// Live reported pipelines: not being cancelled.
    fn live(&self) -> impl Iterator<Item = (TableId, &TableProgress)> + '_ {
        pipelines(self.tables, self.id).filter(|(t, _)| !self.cancelled.contains(t))
    }

    fn first_failure(&self) -> Option<(TableId, String)> {
        self.live().find_map(|(t, prog)| match &prog.state {
            TablePipelineState::Failed(msg) => Some((t, msg.clone())),
            _ => None,
        })
    }

    fn set_op(&mut self, table: TableId, status: OperationStatus, boundary_ts: Option<Ts>) {
        let key = self
            .state
            .layout()
            .task_status(&self.manager.capture, self.id);
        self.group.push(
            key,
            Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
                table,
                status,
                boundary_ts,
            }),
        );
    }

    fn start(&mut self, p: &mut Processor, table: TableId, start_ts: Ts) {
        self.cancelled.remove(&table);
        p.pending.insert(
            table,
            PendingStart {
                start_ts,
                sent_ms: self.now,
            },
        );
        self.commands.push(PipelineCommand::Start {
            changefeed: self.id.clone(),
            table,
            start_ts,
        });
    }

    fn cancel(&mut self, p: &mut Processor, table: TableId) {
        p.pending.remove(&table);
        p.joined.remove(&table);
        if self.cancelled.insert(table) {
            self.commands.push(PipelineCommand::Cancel {
                changefeed: self.id.clone(),
                table,
            });
        }
    }

    /// Whether a start was sent recently enough that the runtime may not report it yet.
    fn pending_fresh(&self, p: &Processor, table: TableId) -> bool {
        p.pending.get(&table).is_some_and(|s| {
            self.now.saturating_sub(s.sent_ms) < self.manager.config.start_report_timeout_ms
        })
    }

    /// Facts §5: walk the operations not yet applied.
    fn handle_operations(&mut self, p: &mut Processor, position_resolved: Ts) {
        let task = self.view.task;
        let Some(ops) = task.operation.as_ref() else {
            return;
        };
        let held = |t: &TableId| task.tables.as_ref().is_some_and(|m| m.contains_key(t));
        for (&table, op) in ops.iter().filter(|(_, op)| !op.is_applied()) {
            let reported = self.progress(table).cloned();
            let pending = self.pending_fresh(p, table);
            match (op.delete, op.status) {
                (false, OperationStatus::Dispatched) => {
                    if !held(&table) {
                        // TiCDC fails the processor here (ErrProcessorTableNotFound); the owner
                        // always writes both, so leave it for the owner to repair.
                        continue;
                    }
                    p.joined.insert(table);
                    match reported.as_ref().map(|r| &r.state) {
                        Some(TablePipelineState::Stopped { .. }) => {
                            self.cancel(p, table);
                            self.start(p, table, op.boundary_ts);
                        }
                        Some(_) => {}
                        None if pending => {}
                        None => self.start(p, table, op.boundary_ts),
                    }
                    self.set_op(table, OperationStatus::Processed, None);
                }
                (false, _) => {
                    p.joined.insert(table);
                    match reported {
                        None if pending => {}
                        None => {
                            p.pending.remove(&table);
                            self.set_op(table, OperationStatus::Dispatched, None);
                        }
                        Some(r) => {
                            if r.resolved_ts >= position_resolved
                                && position_resolved >= self.view.resolved_ts
                            {
                                self.set_op(table, OperationStatus::Finished, None);
                            }
                        }
                    }
                }
                (true, OperationStatus::Dispatched) => {
                    if reported.is_some() || pending {
                        self.commands.push(PipelineCommand::StopAt {
                            changefeed: self.id.clone(),
                            table,
                            boundary_ts: op.boundary_ts,
                        });
                        self.set_op(table, OperationStatus::Processed, None);
                    } else {
                        self.set_op(table, OperationStatus::Finished, None);
                    }
                }
                (true, _) => match reported.map(|r| r.state) {
                    Some(TablePipelineState::Stopped { checkpoint_ts }) => {
                        self.set_op(table, OperationStatus::Finished, Some(checkpoint_ts));
                        self.cancel(p, table);
                    }
                    Some(_) => {}
                    None if pending => {}
                    None => {
                        // The pipeline is gone (the processor was recreated): nothing to stop.
                        p.pending.remove(&table);
                        self.set_op(table, OperationStatus::Finished, None);
                    }
                },
            }
        }
    }

    /// Facts §6.2 checkTablesNum: start held tables without operation or pipeline, cancel
    /// pipelines of tables neither held nor being removed.
    fn sync_tables(&mut self, p: &mut Processor) {
        let task = self.view.task;
        let empty = BTreeMap::new();
        let held = task.tables.as_ref().unwrap_or(&empty);
        let ops = task.operation.as_ref();
        let deleting = |t: &TableId| ops.and_then(|o| o.get(t)).is_some_and(|op| op.delete);

        let mut stray: Vec<TableId> = Vec::new();
        let mut covered = 0usize;
        // Both sequences are in table order: walk them together instead of a map lookup
        // per pipeline (the lookups were half of a steady tick at 100,000 tables).
        let mut held_tables = held.keys().peekable();
        for (t, _) in self.live() {
            while held_tables.next_if(|h| **h < t).is_some() {}
            if held_tables.peek() == Some(&&t) {
                covered += 1;
            } else if !deleting(&t) {
                stray.push(t);
            }
        }
        for t in p.pending.keys() {
            if held.contains_key(t) {
                covered += 1;
            } else if !deleting(t) {
                stray.push(*t);
            }
        }
        for t in stray {
            self.cancel(p, t);
        }
        if covered >= held.len() {
            return;
        }
        let mut key = (self.id.clone(), TableId(0));
        let mut starts = Vec::new();
        for (t, replica) in held {
            key.1 = *t;
            let has_pipeline = (self.tables.contains_key(&key) && !self.cancelled.contains(t))
                || p.pending.contains_key(t);
            let has_op = ops.is_some_and(|o| o.contains_key(t));
            if !has_pipeline && !has_op {
                starts.push((*t, replica.start_ts.max(self.view.checkpoint_ts)));
            }
        }
        for (t, ts) in starts {
            self.start(p, t, ts);
        }
    }
}

/// The pipelines the runtime reports for one changefeed, in table order.
fn pipelines<'a>(
    tables: &'a Pipelines,
    id: &ChangefeedId,
) -> impl Iterator<Item = (TableId, &'a TableProgress)> + 'a {
    let lo = (id.clone(), TableId(i64::MIN));
    let hi = (id.clone(), TableId(i64::MAX));
    tables.range(lo..=hi).map(|((_, t), prog)| (*t, prog))
}

/// The distinct changefeeds in the runtime's report, one range probe each.
fn changefeeds_in(tables: &Pipelines) -> Vec<ChangefeedId> {
    let mut out = Vec::new();
    let mut next = tables.keys().next();
    while let Some((cf, _)) = next {
        out.push(cf.clone());
        let after = (cf.clone(), TableId(i64::MAX));
        next = tables
            .range((Bound::Excluded(after), Bound::Unbounded))
            .next()
            .map(|(k, _)| k);
    }
    out
}

mod progress;

#[cfg(test)]
mod tests;
