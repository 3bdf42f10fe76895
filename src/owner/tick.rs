//! `Owner::tick`: the owner's whole decision step, pure (target-design §3, §6).
//!
//! Inputs: the snapshot, the injected time, operator requests, and the results of earlier
//! effects. Outputs: patch groups for the EtcdWorker and effects for the runtime. Per
//! changefeed, in order:
//! 1. **preflight** (facts §4.7): create a missing status at `start-ts − 1` (saturating, §8.16);
//!    delete task keys of captures that are gone. Unlike v5 it never creates empty task
//!    statuses for captures that hold nothing (§8.27). If it patched anything, the rest waits
//!    for the next tick, so decisions are made on repaired state.
//! 2. **feed state** ([`super::feed_state`]): admin jobs, errors, backoff; decides whether the
//!    changefeed runs.
//! 3. if running: ask the upstream for the table set at the checkpoint once (an effect);
//!    **schedule** ([`super::scheduler`]); when settled, write **progress**
//!    ([`super::progress`]) capped by the DDL barrier and the target ts, and finish at the
//!    target ts.
//!
//! Then the **GC safe point** ([`super::gc`]) for the cluster.
//!
//! A changefeed whose keys do not decode is left alone entirely; one whose info is gone has
//! its remaining keys cleaned up (facts §4.13).

use std::collections::{BTreeMap, BTreeSet};

use itertools::{EitherOrBoth, Itertools};
use rcdc_state::model::{CaptureInfo, FeedState};
use rcdc_state::patch::StatusEdit;
use rcdc_state::{
    CaptureId, ChangefeedId, ChangefeedState, Edit, GlobalState, Patch, PatchGroup, TableId, Ts,
};

use super::ddl::{DdlBarrier, DdlStep};
use super::drain::DrainTargets;
use super::feed_state::{
    only_task_keys_corrupt, task_key_deletes, AdminJob, FeedStateConfig, FeedStateMachine,
};
use super::gc::{GcConfig, GcManager, SafePointResult, UpdateSafePoint};
use super::progress::{compute, ProgressWriter};
use super::scheduler::{ScheduleRequest, SchedulerConfig, TableScheduler};

/// Owner settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerConfig {
    /// This capture's advertise address, for errors the owner records.
    pub addr: String,
    /// `owner-flush-interval` in milliseconds (default 200).
    pub flush_interval_ms: u64,
    /// Feed state machine timing.
    pub feed: FeedStateConfig,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// GC settings.
    pub gc: GcConfig,
}

/// A request from an operator (HTTP API / CLI) for one changefeed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OwnerRequest {
    /// Pause, resume or remove.
    Admin(ChangefeedId, AdminJob),
    /// Move or rebalance.
    Schedule(ChangefeedId, ScheduleRequest),
    /// Move every table of a capture to the other captures (remote drain).
    Drain(CaptureId),
}

/// Work for the runtime.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OwnerEffect {
    /// List the tables of a changefeed's upstream at `at` (after its filter).
    ListTables {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The ts to list at (the checkpoint).
        at: Ts,
    },
    /// Find the first DDL of a changefeed's upstream after `after` (its DDL barrier).
    FetchDdl {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// Exclusive lower bound.
        after: Ts,
    },
    /// Push the GC safe point.
    UpdateGcSafePoint(UpdateSafePoint),
    /// Record the changefeed checkpoint in the sink, so a consumer knows up to where its
    /// files are complete (every table flushed at least this far).
    WriteSinkCheckpoint {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// Its checkpoint.
        checkpoint: Ts,
    },
}

/// Results of earlier effects, fed back to the next tick.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OwnerEffectResult {
    /// The table set of a changefeed at a ts.
    Tables {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The table ids.
        tables: BTreeSet<TableId>,
    },
    /// Listing failed.
    TablesFailed {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// Why.
        error: String,
    },
    /// The next DDL after `after`, or none up to `upto` (the upstream's now).
    Ddl {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// The question's lower bound.
        after: Ts,
        /// The first DDL's commit ts, if any.
        next: Option<Ts>,
        /// How far the upstream looked.
        upto: Ts,
    },
    /// The DDL query failed.
    DdlFailed {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// Why.
        error: String,
    },
    /// The GC push's answer.
    GcSafePoint(SafePointResult),
    /// Writing the sink checkpoint failed (e.g. an unwritable sink directory).
    SinkCheckpointFailed {
        /// The changefeed.
        changefeed: ChangefeedId,
        /// Why.
        error: String,
    },
}

/// Everything a tick may read besides the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerInput {
    /// Injected time, Unix milliseconds.
    pub now_ms: u64,
    /// Operator requests since the last tick.
    pub requests: Vec<OwnerRequest>,
    /// Effect results since the last tick.
    pub results: Vec<OwnerEffectResult>,
    /// The groups of the previous tick's output that did not commit (their indices); every
    /// other group of it committed. This is the commit acknowledgement (target-design §3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<usize>,
}

/// What a tick decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerOutput {
    /// Patch groups for the EtcdWorker.
    pub groups: Vec<PatchGroup>,
    /// Effects for the runtime.
    pub effects: Vec<OwnerEffect>,
    /// Requests refused, with the reason (answered to the API caller).
    pub rejected: Vec<(OwnerRequest, String)>,
    /// Requests that took effect: the groups carrying their consequence committed (answered
    /// to the API caller as done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<OwnerRequest>,
    /// How many changefeeds this tick visited (the rest were unchanged and idle).
    pub visited: usize,
}

/// Per-changefeed owner memory.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Feed {
    state: FeedStateMachine,
    scheduler: TableScheduler,
    progress: ProgressWriter,
    /// Shared, so a visit reads it without copying the set.
    tables: Option<std::sync::Arc<BTreeSet<TableId>>>,
    listing: bool,
    /// The DDL barrier while running (reset when the changefeed stops).
    ddl: Option<DdlBarrier>,
}

/// How long a full round of the background sweep takes: every changefeed is visited at
/// least this often even when none of its keys change (periodic rebalance checks, and a
/// safety net for any timer a feed forgot to declare). Five minutes keeps the sweep's share
/// of a tick small at 10,000 changefeeds (≈ 7 visits per 200 ms tick).
const SWEEP_ROUND_MS: u64 = 300_000;

/// The owner's state machine.
///
/// A tick visits only changefeeds that need it (target-design §10): every one on the first
/// tick and when captures change; otherwise those whose keys changed (the snapshot's change
/// log), those with requests or effect results, those left with pending work by their last
/// visit, and a slice of the background sweep. A changefeed where only progress reports
/// changed, and which was settled, skips the scheduler.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    config: OwnerConfig,
    feeds: BTreeMap<ChangefeedId, Feed>,
    gc: GcManager,
    /// Changefeeds whose last visit left work pending.
    /// Value: whether the next visit must be full (run the scheduler). A visit whose only
    /// output was a progress write needs only a progress visit next: if the write is
    /// dropped, recomputing progress rewrites it, and nothing the scheduler reads changed.
    awake: BTreeMap<ChangefeedId, bool>,
    /// Changefeeds whose scheduler was settled at their last visit.
    settled: BTreeSet<ChangefeedId>,
    /// Where the sweep continues, and when it last ran.
    sweep_after: Option<ChangefeedId>,
    last_sweep_ms: Option<u64>,
    sweep_credit: u64,
    primed: bool,
    /// What each group of the last output carries, in the output's order: its outcome, read
    /// at the next tick, acknowledges or re-queues the inputs behind it.
    #[serde(default)]
    sent: Vec<(ChangefeedId, Carries)>,
    /// Schedule requests carried out by the last output, per changefeed.
    #[serde(default)]
    started: BTreeMap<ChangefeedId, Vec<ScheduleRequest>>,
    /// Captures drained on an operator's request.
    #[serde(default)]
    drains: DrainTargets,
}

/// What a group of the owner's output carries (target-design §3: decisions are acknowledged
/// by commit).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Carries {
    /// The feed state decision: an admin job and owner errors it consumed.
    State,
    /// Scheduler patches, and the schedule requests started with them.
    Schedule,
    /// A status write; the sink checkpoint is written once it committed.
    Progress(Ts),
    /// Repairs and deletes derived from the state on every visit: a drop only means the
    /// changefeed is visited again.
    Derived,
}

/// Independent deletes per group: each is a compare and an op, and a txn also carries the
/// delete counter and the fence, within etcd's 128.
const MAX_DELETES_PER_GROUP: usize = 100;

impl Owner {
    /// A new owner (after winning the election).
    pub fn new(config: OwnerConfig) -> Self {
        let gc = GcManager::new(config.gc.clone());
        Self {
            config,
            feeds: BTreeMap::new(),
            gc,
            awake: BTreeMap::new(),
            settled: BTreeSet::new(),
            sweep_after: None,
            last_sweep_ms: None,
            sweep_credit: 0,
            primed: false,
            sent: Vec::new(),
            started: BTreeMap::new(),
            drains: DrainTargets::default(),
        }
    }

    /// Reads the previous output's outcome: inputs behind committed groups are acknowledged,
    /// those behind dropped groups go back to their queues; a committed status write releases
    /// its sink checkpoint. Returns the changefeeds that must be visited again.
    fn confirm(&mut self, input: &OwnerInput, out: &mut OwnerOutput) -> BTreeSet<ChangefeedId> {
        let dropped: BTreeSet<usize> = input.dropped.iter().copied().collect();
        let mut state_ok: BTreeMap<ChangefeedId, bool> = BTreeMap::new();
        let mut schedule_ok: BTreeMap<ChangefeedId, bool> = BTreeMap::new();
        let mut revisit = BTreeSet::new();
        for (index, (id, carries)) in std::mem::take(&mut self.sent).into_iter().enumerate() {
            let ok = !dropped.contains(&index);
            if !ok {
                revisit.insert(id.clone());
            }
            match carries {
                Carries::State => {
                    state_ok.insert(id, ok);
                }
                Carries::Schedule => *schedule_ok.entry(id).or_insert(true) &= ok,
                Carries::Progress(checkpoint) if ok => {
                    out.effects.push(OwnerEffect::WriteSinkCheckpoint {
                        changefeed: id,
                        checkpoint,
                    });
                }
                Carries::Progress(_) | Carries::Derived => {}
            }
        }
        for (id, ok) in state_ok {
            if let Some(job) = self.feeds.get_mut(&id).and_then(|f| f.state.confirm(ok)) {
                out.acknowledged.push(OwnerRequest::Admin(id, job));
            }
        }
        for (id, started) in std::mem::take(&mut self.started) {
            if schedule_ok.get(&id).copied().unwrap_or(true) {
                out.acknowledged.extend(
                    started
                        .into_iter()
                        .map(|r| OwnerRequest::Schedule(id.clone(), r)),
                );
            } else if let Some(f) = self.feeds.get_mut(&id) {
                f.scheduler.requeue(started);
            }
        }
        revisit
    }

    /// Forgets a changefeed whose info is gone, answering the admin jobs still queued for it:
    /// a remove is done (its first commit may have landed unseen), anything else is refused.
    fn forget(&mut self, id: &ChangefeedId, out: &mut OwnerOutput) {
        self.settled.remove(id);
        let Some(mut feed) = self.feeds.remove(id) else {
            return;
        };
        for job in feed.state.drain_jobs() {
            let request = OwnerRequest::Admin(id.clone(), job);
            if job == AdminJob::Remove {
                out.acknowledged.push(request);
            } else {
                out.rejected
                    .push((request, format!("changefeed {id} was removed")));
            }
        }
        let started = self.started.remove(id).unwrap_or_default();
        for r in started.into_iter().chain(feed.scheduler.drain_requests()) {
            out.rejected.push((
                OwnerRequest::Schedule(id.clone(), r),
                format!("changefeed {id} was removed"),
            ));
        }
    }

    /// Appends groups a visit produced, recording what each carries.
    fn emit(
        &mut self,
        out: &mut OwnerOutput,
        id: &ChangefeedId,
        groups: impl IntoIterator<Item = (PatchGroup, Carries)>,
    ) {
        for (g, carries) in groups {
            if g.is_empty() {
                continue;
            }
            out.groups.push(g);
            self.sent.push((id.clone(), carries));
        }
    }

    fn feed(&mut self, id: &ChangefeedId) -> &mut Feed {
        let c = &self.config;
        self.feeds.entry(id.clone()).or_insert_with(|| Feed {
            state: FeedStateMachine::new(id.clone(), c.feed.clone()),
            scheduler: TableScheduler::new(id.clone(), c.scheduler.clone()),
            progress: ProgressWriter::new(id.clone(), c.flush_interval_ms),
            tables: None,
            listing: false,
            ddl: None,
        })
    }

    /// One decision step.
    pub fn tick(&mut self, state: &GlobalState, input: &OwnerInput) -> OwnerOutput {
        let mut out = OwnerOutput::default();
        let revisit = self.confirm(input, &mut out);
        self.take_results(state, input, &mut out);
        // A drain changes every changefeed's scheduling: all of them are visited.
        let mut drains_changed = self.drains.retain_live(state.captures());
        for req in &input.requests {
            match req {
                OwnerRequest::Admin(id, _) | OwnerRequest::Schedule(id, _)
                    if state.changefeed(id).and_then(|c| c.info.as_ref()).is_none() =>
                {
                    out.rejected
                        .push((req.clone(), format!("changefeed {id} does not exist")));
                }
                OwnerRequest::Admin(id, job) => self.feed(id).state.push_admin_job(*job),
                OwnerRequest::Schedule(id, r) => self.feed(id).scheduler.request(r.clone()),
                // Nothing to commit: the targets live in the owner's memory (see `drain`), so
                // the request is done once they hold it.
                OwnerRequest::Drain(capture) => {
                    match self.drains.request(state.captures(), capture) {
                        Ok(()) => {
                            drains_changed = true;
                            out.acknowledged.push(req.clone());
                        }
                        Err(why) => out.rejected.push((req.clone(), why.to_string())),
                    }
                }
            }
        }
        let layout = state.layout();
        let changes = state.changes();
        // A new upstream GC answer can make any changefeed's snapshot lost.
        let gc_answer = input
            .results
            .iter()
            .any(|r| matches!(r, OwnerEffectResult::GcSafePoint(_)));
        let everything = !self.primed || changes.captures || gc_answer || drains_changed;
        self.primed = true;
        let mut visit: BTreeMap<ChangefeedId, bool> = BTreeMap::new(); // id → full visit
        if everything {
            visit.extend(state.changefeeds().keys().map(|id| (id.clone(), true)));
            // A changefeed the owner remembers but the state no longer has is forgotten (its
            // queued jobs answered). Incremental ticks find those in the change log; this
            // tick does not read it, so it looks (rare ticks: a full scan is fine here).
            let gone = self
                .feeds
                .keys()
                .filter(|id| state.changefeed(id).is_none());
            visit.extend(gone.map(|id| (id.clone(), true)));
        } else {
            for (id, kinds) in &changes.changefeeds {
                let progress_only = kinds.only_progress() && self.settled.contains(id);
                visit.insert(id.clone(), !progress_only);
            }
            let touched = input
                .requests
                .iter()
                .filter_map(|r| match r {
                    OwnerRequest::Admin(id, _) | OwnerRequest::Schedule(id, _) => Some(id),
                    OwnerRequest::Drain(_) => None,
                })
                .chain(input.results.iter().filter_map(result_changefeed));
            for id in touched {
                visit.insert(id.clone(), true);
            }
            for (id, full) in &self.awake {
                *visit.entry(id.clone()).or_insert(*full) |= *full;
            }
            for id in self.sweep(state, input.now_ms) {
                visit.insert(id, true);
            }
        }
        // Whatever a dropped group carried is decided again, on every kind of tick.
        for id in revisit {
            visit.insert(id, true);
        }
        self.awake.clear();
        out.visited = visit.len();
        // The scheduler's view of the captures (drain targets marked), once per tick: a
        // borrow when nothing is drained, one copy for the whole tick otherwise.
        let captures = self.drains.view(state.captures());
        for (id, full) in visit {
            let Some(cf) = state.changefeed(&id) else {
                // Every key is gone.
                self.forget(&id, &mut out);
                continue;
            };
            if cf.is_broken() && !self.stop_broken(state, &id, cf) {
                continue;
            }
            if cf.info.is_none() {
                // Removed: clean whatever is left (facts §4.13), in groups that fit a txn; the
                // status stays when it is the removed changefeed's record.
                let mut deletes = Vec::new();
                if cf.status.is_some() && !cf.is_removed() {
                    deletes.push(Patch::new(layout.status(&id), Edit::Delete));
                }
                deletes.extend(task_key_deletes(layout, &id, cf));
                let label = format!("changefeed/{id}/cleanup");
                let groups = PatchGroup::chunks(&label, deletes, MAX_DELETES_PER_GROUP);
                self.emit(
                    &mut out,
                    &id,
                    groups.into_iter().map(|g| (g, Carries::Derived)),
                );
                self.forget(&id, &mut out);
                continue;
            }
            if let Some(repairs) = preflight(state, &id, cf) {
                self.emit(
                    &mut out,
                    &id,
                    repairs.into_iter().map(|g| (g, Carries::Derived)),
                );
                self.awake.insert(id, true);
                continue;
            }
            let before = (out.groups.len(), out.effects.len());
            let mut visit = Visit {
                full,
                now_ms: input.now_ms,
                ..Visit::default()
            };
            let settled = self.tick_changefeed(state, &id, cf, &captures, &mut visit, &mut out);
            if !visit.started.is_empty() {
                if visit.groups.iter().any(|(_, c)| *c == Carries::Schedule) {
                    self.started.insert(id.clone(), visit.started);
                } else {
                    // Carried out with nothing to write (a rebalance already even).
                    let started = visit.started.into_iter();
                    out.acknowledged
                        .extend(started.map(|r| OwnerRequest::Schedule(id.clone(), r)));
                }
            }
            self.emit(&mut out, &id, visit.groups);
            if settled {
                self.settled.insert(id.clone());
            } else {
                self.settled.remove(&id);
            }
            // A progress write is one group (its sink checkpoint follows the commit).
            let new_groups = &self.sent[before.0..];
            let progress = new_groups
                .iter()
                .filter(|(_, c)| matches!(c, Carries::Progress(_)))
                .count();
            let other = new_groups.len() > progress || out.effects.len() > before.1;
            let idle = self
                .feeds
                .get(&id)
                .is_none_or(|f| f.state.is_idle() && !f.progress.is_deferred());
            if other || !idle || !settled {
                self.awake.insert(id, true);
            } else if progress > 0 {
                self.awake.entry(id).or_insert(false);
            }
        }
        for push in self.gc.tick(state, input.now_ms) {
            out.effects.push(OwnerEffect::UpdateGcSafePoint(push));
        }
        out
    }

    /// The slice of the background sweep due at `now_ms`: in one round of
    /// [`SWEEP_ROUND_MS`] every changefeed comes up once.
    fn sweep(&mut self, state: &GlobalState, now_ms: u64) -> Vec<ChangefeedId> {
        let total = state.changefeeds().len() as u64;
        let elapsed = match self.last_sweep_ms {
            Some(t) => now_ms.saturating_sub(t),
            None => 0,
        };
        self.last_sweep_ms = Some(now_ms);
        // Credit accrues at `total` visits per round; whole visits are spent, the rest kept.
        self.sweep_credit = self
            .sweep_credit
            .saturating_add(total.saturating_mul(elapsed));
        let due = self.sweep_credit / SWEEP_ROUND_MS;
        self.sweep_credit %= SWEEP_ROUND_MS;
        if due == 0 {
            return vec![];
        }
        let start = match &self.sweep_after {
            Some(after) => state.changefeeds().range::<ChangefeedId, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            )),
            None => state.changefeeds().range::<ChangefeedId, _>(..),
        };
        let due = usize::try_from(due.min(total)).unwrap_or(usize::MAX);
        let mut picked: Vec<ChangefeedId> = start.take(due).map(|(id, _)| id.clone()).collect();
        if picked.len() < due {
            // Wrap around for the rest of the slice.
            let rest = due - picked.len();
            picked.extend(state.changefeeds().keys().take(rest).cloned());
        }
        self.sweep_after = picked.last().cloned();
        picked
    }

    fn take_results(&mut self, state: &GlobalState, input: &OwnerInput, out: &mut OwnerOutput) {
        let _ = out;
        for r in &input.results {
            match r {
                OwnerEffectResult::Tables { changefeed, tables } => {
                    // Re-validate: the changefeed may be gone since the effect was planned.
                    if state
                        .changefeed(changefeed)
                        .is_some_and(|c| c.info.is_some())
                    {
                        let f = self.feed(changefeed);
                        f.tables = Some(std::sync::Arc::new(tables.clone()));
                        f.listing = false;
                    }
                }
                OwnerEffectResult::TablesFailed { changefeed, error } => {
                    if state
                        .changefeed(changefeed)
                        .is_some_and(|c| c.info.is_some())
                    {
                        let addr = self.config.addr.clone();
                        let f = self.feed(changefeed);
                        f.listing = false;
                        f.state.report_error(rcdc_state::model::RunningError {
                            addr,
                            code: "CDC:ErrOwnerUnknown".into(),
                            message: format!("listing tables: {error}"),
                            extra: Default::default(),
                        });
                    }
                }
                OwnerEffectResult::SinkCheckpointFailed { changefeed, error } => {
                    if state
                        .changefeed(changefeed)
                        .is_some_and(|c| c.info.is_some())
                    {
                        let addr = self.config.addr.clone();
                        self.feed(changefeed)
                            .state
                            .report_error(rcdc_state::model::RunningError {
                                addr,
                                code: "CDC:ErrSinkCheckpoint".into(),
                                message: error.clone(),
                                extra: Default::default(),
                            });
                    }
                }
                OwnerEffectResult::Ddl {
                    changefeed,
                    after,
                    next,
                    upto,
                } => {
                    if let Some(b) = self.feeds.get_mut(changefeed).and_then(|f| f.ddl.as_mut()) {
                        b.on_fetched(*after, *next, *upto);
                    }
                }
                OwnerEffectResult::DdlFailed { changefeed, error } => {
                    if let Some(f) = self.feeds.get_mut(changefeed) {
                        if let Some(b) = f.ddl.as_mut() {
                            b.on_failed();
                        }
                        tracing::warn!(changefeed = %changefeed, error = %error, "DDL query failed; retrying");
                    }
                }
                OwnerEffectResult::GcSafePoint(res) => {
                    if let Some(e) = self.gc.on_result(res.clone(), input.now_ms) {
                        tracing::error!(error = %e, "GC safe point");
                    }
                }
            }
        }
    }

    /// A broken changefeed (some key does not decode) whose info and status still decode
    /// and whose corrupt keys are all task keys is stopped with an error naming them, so the
    /// operator sees it (the API's `error`) and the retry after the backoff starts from clean
    /// task keys. Any other broken changefeed is left alone: acting on a partial view of its
    /// info could destroy it. Returns whether the visit may go on.
    fn stop_broken(
        &mut self,
        state: &GlobalState,
        id: &ChangefeedId,
        cf: &ChangefeedState,
    ) -> bool {
        let layout = state.layout();
        if !only_task_keys_corrupt(layout, cf) {
            return false;
        }
        // Reported while it runs; in `error` it is already stopping, and its backoff visits
        // delete the keys (reporting again would only push the retry further out).
        let running = cf
            .info
            .as_ref()
            .is_some_and(|i| i.state == FeedState::Normal);
        if running {
            let keys: Vec<&str> = cf.corrupt.keys().map(String::as_str).collect();
            let error = owner_error(
                &self.config.addr,
                "CDC:ErrDecodeFailed",
                format!("task keys do not decode: {}", keys.join(", ")),
            );
            self.feed(id).state.report_error(error);
        }
        true
    }

    /// One changefeed's decisions. `visit.full = false` (only progress reports changed since
    /// a settled visit) skips the scheduler. Returns whether its tables are settled.
    fn tick_changefeed(
        &mut self,
        state: &GlobalState,
        id: &ChangefeedId,
        cf: &ChangefeedState,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
        visit: &mut Visit,
        out: &mut OwnerOutput,
    ) -> bool {
        let full = visit.full;
        let layout = state.layout();
        let now = visit.now_ms;
        let Some(info) = cf.info.as_ref() else {
            return true;
        };
        let checkpoint = info.checkpoint_ts(cf.status.as_ref());
        if matches!(info.state, FeedState::Normal) {
            if let Some(e) = self
                .gc
                .check_checkpoint(info, checkpoint, &self.config.addr)
            {
                self.feed(id).state.report_error(e);
            }
        }
        let feed = self.feed(id);
        let decision = feed.state.tick(layout, cf, now);
        for (job, why) in decision.rejected {
            out.rejected
                .push((OwnerRequest::Admin(id.clone(), job), why));
        }
        if let Some(job) = decision.done_job {
            out.acknowledged.push(OwnerRequest::Admin(id.clone(), job));
        }
        // The state change first; the task-key deletes it implies follow in their own
        // groups (many captures mean many keys), re-derived each visit until they are gone.
        // (Labels are built only for groups that exist: most visits write nothing.)
        if !decision.patches.is_empty() {
            let mut g = PatchGroup::new(format!("changefeed/{id}/state"));
            g.patches = decision.patches;
            visit.groups.push((g, Carries::State));
        }
        if !decision.cleanup.is_empty() {
            let label = format!("changefeed/{id}/stop-tasks");
            let cleanup = PatchGroup::chunks(&label, decision.cleanup, MAX_DELETES_PER_GROUP);
            visit
                .groups
                .extend(cleanup.into_iter().map(|g| (g, Carries::Derived)));
        }
        if !decision.should_run {
            feed.tables = None;
            feed.ddl = None;
            // Moves and rebalances are for a running changefeed: refused, not kept for a
            // resume that may never come.
            for r in feed.scheduler.drain_requests() {
                out.rejected.push((
                    OwnerRequest::Schedule(id.clone(), r),
                    format!("changefeed {id} is not running; cannot schedule its tables"),
                ));
            }
            return true;
        }
        let Some(tables) = feed.tables.clone() else {
            if !feed.listing {
                feed.listing = true;
                out.effects.push(OwnerEffect::ListTables {
                    changefeed: id.clone(),
                    at: checkpoint,
                });
            }
            return false;
        };
        if full {
            let sched = feed
                .scheduler
                .tick(layout, cf, captures, &tables, checkpoint, now);
            if let Some(e) = sched.error {
                // Stuck (a table held twice, an undecodable task status): an error of the
                // changefeed, so the operator sees it and the retry starts from clean keys.
                tracing::error!(changefeed = %id, error = %e, "scheduling stopped");
                let code = if e.starts_with("ErrTableListenReplicated") {
                    "CDC:ErrTableListenReplicated"
                } else {
                    "CDC:ErrSchedulerStuck"
                };
                let addr = self.config.addr.clone();
                self.feed(id)
                    .state
                    .report_error(owner_error(&addr, code, e));
                return false;
            }
            for (req, why) in sched.rejected {
                out.rejected
                    .push((OwnerRequest::Schedule(id.clone(), req), why));
            }
            visit.started.extend(sched.started);
            visit
                .groups
                .extend(sched.groups.into_iter().map(|g| (g, Carries::Schedule)));
            if !sched.settled {
                return false;
            }
        }
        let ddl = feed.ddl.get_or_insert_with(|| DdlBarrier::new(checkpoint));
        match ddl.step(checkpoint) {
            DdlStep::Wait => {}
            DdlStep::Fetch { after } => out.effects.push(OwnerEffect::FetchDdl {
                changefeed: id.clone(),
                after,
            }),
            DdlStep::Apply { at } => {
                // Every table is just before the DDL: take the table set after it, and let
                // the scheduler add and remove tables before anything moves on.
                tracing::info!(changefeed = %id, ddl_ts = %at, "applying a DDL: re-listing tables");
                feed.tables = None;
                feed.listing = true;
                out.effects.push(OwnerEffect::ListTables {
                    changefeed: id.clone(),
                    at,
                });
                return false;
            }
        }
        let target = info.target_ts();
        let barrier = ddl.barrier().min(target);
        if let Some(progress) = compute(cf, barrier) {
            if let Some(p) = feed.progress.tick(layout, cf, progress, now) {
                // The sink's checkpoint follows once this write committed (see `confirm`):
                // the sink must never claim more than etcd says.
                let mut g = PatchGroup::new(format!("changefeed/{id}/progress"));
                g.patches.push(p);
                visit
                    .groups
                    .push((g, Carries::Progress(progress.checkpoint_ts)));
            }
            if progress.checkpoint_ts >= target {
                feed.state.mark_finished();
            }
        }
        true
    }
}

/// What one visit of a changefeed produced besides the owner's output.
#[derive(Default)]
struct Visit {
    /// Input: run the scheduler (not only progress).
    full: bool,
    /// Input: the tick's time.
    now_ms: u64,
    /// Groups, with what each carries.
    groups: Vec<(PatchGroup, Carries)>,
    /// Schedule requests carried out by `groups`.
    started: Vec<ScheduleRequest>,
}

/// An error the owner records on a changefeed.
fn owner_error(addr: &str, code: &str, message: String) -> rcdc_state::model::RunningError {
    rcdc_state::model::RunningError {
        addr: addr.to_owned(),
        code: code.into(),
        message,
        extra: Default::default(),
    }
}

/// The changefeed an effect result is about, if any.
fn result_changefeed(r: &OwnerEffectResult) -> Option<&ChangefeedId> {
    match r {
        OwnerEffectResult::Tables { changefeed, .. }
        | OwnerEffectResult::TablesFailed { changefeed, .. }
        | OwnerEffectResult::Ddl { changefeed, .. }
        | OwnerEffectResult::DdlFailed { changefeed, .. }
        | OwnerEffectResult::SinkCheckpointFailed { changefeed, .. } => Some(changefeed),
        OwnerEffectResult::GcSafePoint(_) => None,
    }
}

/// Metadata repair before any decision (facts §4.7); `None` when nothing needs repair (the
/// common case, so no group or label is built). The deletes go in groups of at most
/// [`MAX_DELETES_PER_GROUP`]: many captures may have died at once.
fn preflight(
    state: &GlobalState,
    id: &ChangefeedId,
    cf: &ChangefeedState,
) -> Option<Vec<PatchGroup>> {
    let layout = state.layout();
    let mut patches: Vec<Patch> = Vec::new();
    if let (None, Some(info)) = (&cf.status, &cf.info) {
        let start = info.start_ts().prev();
        patches.push(Patch::new(
            layout.status(id),
            Edit::ChangefeedStatus(StatusEdit::Advance {
                resolved_ts: start,
                checkpoint_ts: start,
            }),
        ));
    }
    // Task keys of captures that are gone. Both sides are in capture order, so one walk
    // finds them (a lookup per task key was a large part of a visit at 100 captures).
    let live = state.captures();
    fn gone<'a, V, L>(
        keys: &'a BTreeMap<CaptureId, V>,
        live: &'a BTreeMap<CaptureId, L>,
    ) -> impl Iterator<Item = &'a CaptureId> + 'a {
        keys.keys()
            .merge_join_by(live.keys(), |a, b| a.cmp(b))
            .filter_map(|e| match e {
                EitherOrBoth::Left(c) => Some(c),
                _ => None,
            })
    }
    for c in gone(&cf.task_statuses, live) {
        patches.push(Patch::new(layout.task_status(c, id), Edit::Delete));
    }
    for c in gone(&cf.task_positions, live) {
        patches.push(Patch::new(layout.task_position(c, id), Edit::Delete));
    }
    for c in gone(&cf.workloads, live) {
        patches.push(Patch::new(layout.task_workload(c, id), Edit::Delete));
    }
    if patches.is_empty() {
        return None;
    }
    let label = format!("changefeed/{id}/preflight");
    Some(PatchGroup::chunks(&label, patches, MAX_DELETES_PER_GROUP))
}

#[cfg(test)]
mod tests;
