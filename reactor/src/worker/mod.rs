//! The EtcdWorker: watch → snapshot → tick → commit, with every point of target-design §4.
//!
//! ```text
//!  load (get prefix @R) ──> watch from R+1 ──> events: raw cache + pending updates
//!        ^                                        │
//!        │ compacted / broken watch / etcd down   v (every tick interval, when caught up)
//!        └──────────── resync <──────────── apply updates → Reactor::tick → groups
//!                                                 │
//!             barrier = txn revision <── commit: one txn per batch of groups
//! ```
//!
//! Rules, in the order a reader checks them:
//! 1. One snapshot load, then a watch from its revision + 1. Events not newer than what was
//!    applied are dropped; the revision advances only with delivered events (never with a
//!    progress notification or a response header).
//! 2. No tick while groups are pending, and none until the watch has delivered the worker's
//!    last committed write (the barrier), so every tick sees its own writes.
//! 3. Commits compare exact mod revisions plus the delete counter (see [`commit`]); a conflict
//!    waits for the newer values to arrive on the watch and re-applies the same patches to
//!    them; a patch whose precondition broke drops its group. The next tick learns the
//!    outcome of every group of the previous one ([`TickContext::previous`]): that is how a
//!    reactor acknowledges a decision only once it committed (target-design §3).
//! 4. Groups are batched within etcd's limits; empty txns are never sent.
//! 5. Ticks are rate-limited to one per `tick_interval`; updates in between are batched.
//! 6. Transient store errors back off and resync (re-list, diff into the state); a compacted
//!    watch resyncs too. An indeterminate commit drops the pending groups (they may or may not
//!    have landed) and the reactor re-decides on the re-read state.
//! 7. With a [`Fence`], a txn whose fence compare fails ends the worker with
//!    [`WorkerError::Fenced`].
//! 8. Unknown keys and undecodable values are the state's business (see `GlobalState`), never
//!    an error here.
//! 9. Metrics: see [`crate::metrics`].

mod commit;
mod raw;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcdc_state::Revision;
use tokio::time::{Instant, MissedTickBehavior};

pub use commit::{Fence, TxnLimits};
use raw::{RawCache, Update};

use crate::metrics::WorkerMetrics;
use crate::reactor::{
    Clock, DropReason, Group, GroupOutcome, Reactor, ReactorState, SystemClock, TickContext,
};
use crate::store::{MetaStore, StoreError, Watch, WatchMessage};

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Names the worker in logs and metrics (`owner`, `processor`, ...).
    pub role: String,
    /// The watched prefix (for rcdc, `KeyLayout::watch_prefix()`).
    pub prefix: String,
    /// The delete-counter key (for rcdc, `KeyLayout::delete_counter()`).
    pub delete_counter_key: String,
    /// At most one tick per interval.
    pub tick_interval: Duration,
    /// First retry delay after a store error; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// If the watch has not delivered our own write after this long, resync.
    pub stall_timeout: Duration,
    /// Txn limits.
    pub limits: TxnLimits,
    /// The owner's fence, if this worker may only write while owner.
    pub fence: Option<Fence>,
}

impl WorkerConfig {
    /// A config with defaults for everything but the keys.
    pub fn new(role: &str, prefix: &str, delete_counter_key: &str) -> Self {
        Self {
            role: role.to_owned(),
            prefix: prefix.to_owned(),
            delete_counter_key: delete_counter_key.to_owned(),
            tick_interval: Duration::from_millis(100),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(5),
            limits: TxnLimits::default(),
            fence: None,
        }
    }
}

/// Why a worker returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// The stop future completed.
    Stopped,
    /// The reactor finished and its last patches were flushed.
    Finished,
}

/// Why a worker failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WorkerError {
    /// The fence key is gone or was re-created: this worker's owner was deposed.
    #[error("worker {role}: fence {key} no longer holds (ownership lost); not writing")]
    Fenced {
        /// The worker's role.
        role: String,
        /// The fence key.
        key: String,
    },
}

/// Counters a test or the API can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Txns committed.
    pub txns_committed: AtomicU64,
    /// Txns whose compares failed.
    pub conflicts: AtomicU64,
    /// Full re-lists.
    pub resyncs: AtomicU64,
    /// Groups dropped (precondition, too large, indeterminate).
    pub groups_dropped: AtomicU64,
    /// Watched updates applied to the state.
    pub updates_applied: AtomicU64,
    /// Store errors seen (each followed by a backoff).
    pub store_errors: AtomicU64,
}

impl WorkerStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Drives one [`Reactor`] against one [`MetaStore`].
pub struct EtcdWorker<S: MetaStore, R: Reactor> {
    store: S,
    reactor: R,
    state: R::State,
    config: WorkerConfig,
    clock: Arc<dyn Clock>,
    raw: RawCache,
    /// Highest revision applied from the snapshot or the watch.
    revision: Revision,
    /// The worker may not tick or commit until `revision >= barrier`.
    barrier: Revision,
    barrier_since: Option<Instant>,
    updates: Vec<Update>,
    pending: VecDeque<Pending<R::Patch>>,
    /// The outcome of each group of the last tick (`None` while still pending), reported to
    /// the next tick as [`TickContext::previous`].
    outcomes: Vec<Option<GroupOutcome>>,
    finished: bool,
    consecutive_conflicts: u32,
    /// After a conflict, do not re-apply before this instant.
    retry_at: Option<Instant>,
    stats: Arc<WorkerStats>,
    metrics: WorkerMetrics,
}

/// A group waiting to be committed, with its position in its tick's output.
struct Pending<P> {
    index: usize,
    group: Group<P>,
}

enum Step {
    Continue,
    Resync,
    Exit(Result<WorkerExit, WorkerError>),
}

impl<S: MetaStore, R: Reactor> EtcdWorker<S, R> {
    /// A worker over `store`, ticking `reactor` against `state` (usually empty: the worker
    /// loads it).
    pub fn new(store: S, reactor: R, state: R::State, config: WorkerConfig) -> Self {
        let metrics = WorkerMetrics::new(&config.role);
        Self {
            raw: RawCache::new(config.delete_counter_key.clone()),
            store,
            reactor,
            state,
            config,
            clock: Arc::new(SystemClock),
            revision: Revision(0),
            barrier: Revision(0),
            barrier_since: None,
            updates: Vec::new(),
            pending: VecDeque::new(),
            outcomes: Vec::new(),
            finished: false,
            consecutive_conflicts: 0,
            retry_at: None,
            stats: Arc::new(WorkerStats::default()),
            metrics,
        }
    }

    /// Replaces the clock ticks read (simulation and replay inject their own).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Shared counters of this worker.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Runs until `stop` completes, the reactor finishes, or the fence breaks. Store errors
    /// are retried forever with backoff: a dead etcd stalls the worker, never kills it.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<WorkerExit, WorkerError> {
        tokio::pin!(stop);
        let mut backoff = self.config.retry_initial;
        loop {
            let mut watch = tokio::select! {
                biased;
                _ = &mut stop => return Ok(WorkerExit::Stopped),
                r = self.connect() => match r {
                    Ok(w) => { backoff = self.config.retry_initial; w }
                    Err(e) => {
                        self.on_store_error("load snapshot", &e);
                        tokio::select! {
                            biased;
                            _ = &mut stop => return Ok(WorkerExit::Stopped),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.config.retry_max);
                        continue;
                    }
                }
            };
            match self.watch_loop(&mut watch, &mut stop).await {
                Step::Exit(r) => return r,
                Step::Continue | Step::Resync => {
                    tokio::select! {
                        biased;
                        _ = &mut stop => return Ok(WorkerExit::Stopped),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.retry_max);
                }
            }
        }
    }

    /// Loads (or re-loads) the snapshot and opens a watch after it.
    async fn connect(&mut self) -> Result<Box<dyn Watch>, StoreError> {
        let (listing, rev) = self.store.get_prefix(&self.config.prefix).await?;
        let first = self.revision == Revision(0);
        let diff = self.raw.replace_with(listing);
        if !first {
            self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.resyncs.inc();
            tracing::info!(role = %self.config.role, revision = rev.0, changed = diff.len(), "resynced snapshot");
        }
        self.updates.extend(diff);
        self.revision = rev;
        self.barrier_since = None;
        self.store
            .watch_prefix(&self.config.prefix, Revision(rev.0 + 1))
            .await
    }

    async fn watch_loop(
        &mut self,
        watch: &mut Box<dyn Watch>,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Step {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut tick_due = true;
        loop {
            match self.drive(&mut tick_due).await {
                Step::Continue => {}
                other => return other,
            }
            let retry_at = self.retry_at.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                _ = stop.as_mut() => return Step::Exit(Ok(WorkerExit::Stopped)),
                msg = watch.next() => match msg {
                    Ok(WatchMessage::Events { events, .. }) => {
                        // Judge staleness per event, not by the header: etcd sends a long
                        // catch-up in batches that all carry the *current* store revision, so
                        // a header-based drop would lose every batch after the first.
                        let mut newest = self.revision;
                        for ev in events {
                            let rev = ev.mod_revision();
                            if rev <= self.revision {
                                continue; // already applied (a duplicate, or before a resync)
                            }
                            newest = newest.max(rev);
                            if let Some(u) = self.raw.apply_event(ev) {
                                self.updates.push(u);
                            }
                        }
                        self.revision = newest;
                    }
                    Ok(WatchMessage::Progress { .. }) => {}
                    Ok(WatchMessage::Compacted { compact_revision }) => {
                        tracing::warn!(role = %self.config.role, compact_revision = compact_revision.0, "watch revision compacted; resyncing");
                        return Step::Resync;
                    }
                    Err(e) => {
                        self.on_store_error("watch", &e);
                        return Step::Resync;
                    }
                },
                _ = ticker.tick() => {
                    tick_due = true;
                    if let Some(since) = self.barrier_since {
                        if since.elapsed() > self.config.stall_timeout {
                            tracing::warn!(role = %self.config.role, barrier = self.barrier.0, revision = self.revision.0, "watch did not deliver our write in time; resyncing");
                            return Step::Resync;
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                }
            }
        }
    }

    /// Does everything that can be done without waiting: commit pending batches, then tick.
    async fn drive(&mut self, tick_due: &mut bool) -> Step {
        loop {
            if self.revision < self.barrier {
                self.barrier_since.get_or_insert_with(Instant::now);
                return Step::Continue;
            }
            self.barrier_since = None;
            if !self.pending.is_empty() {
                if self.retry_at.is_some() {
                    return Step::Continue; // wait out the conflict backoff
                }
                match self.commit_one().await {
                    Step::Continue => continue,
                    other => return other,
                }
            }
            if self.finished {
                return Step::Exit(Ok(WorkerExit::Finished));
            }
            if !*tick_due {
                return Step::Continue;
            }
            *tick_due = false;
            self.tick();
        }
    }

    fn tick(&mut self) {
        let n = self.updates.len() as u64;
        self.reactor.observe_updates(&self.updates, &self.raw);
        for (key, value) in self.updates.drain(..) {
            self.state.update(&key, value.as_deref());
        }
        self.stats.updates_applied.fetch_add(n, Ordering::Relaxed);
        self.metrics.updates_applied.inc_by(n);
        // Every group of the previous tick is settled: no tick runs while any is pending.
        let previous = std::mem::take(&mut self.outcomes)
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    GroupOutcome::Dropped(DropReason::Indeterminate("never sent".into()))
                })
            })
            .collect();
        let ctx = TickContext {
            now_ms: self.clock.now_ms(),
            revision: self.revision,
            previous,
        };
        let started = Instant::now();
        let out = self.reactor.tick(&self.state, &ctx);
        self.state.ticked();
        self.metrics
            .tick_duration
            .observe(started.elapsed().as_secs_f64());
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        self.outcomes = Vec::with_capacity(out.groups.len());
        for (index, group) in out.groups.into_iter().enumerate() {
            if group.patches.is_empty() {
                // Nothing to write is trivially committed.
                self.outcomes.push(Some(GroupOutcome::Committed));
            } else {
                self.outcomes.push(None);
                self.pending.push_back(Pending { index, group });
            }
        }
        self.finished |= out.finished;
    }

    /// Plans and sends one txn from the front of the pending groups.
    async fn commit_one(&mut self) -> Step {
        let plan = commit::plan(
            &self.raw,
            self.pending.iter().map(|p| &p.group),
            &self.config.limits,
            self.config.fence.as_ref(),
        );
        // Dropped groups stay dropped whatever happens to the txn.
        for (position, reason) in plan.dropped.into_iter().rev() {
            if let Some(p) = self.pending.remove(position) {
                self.drop_group(p, reason);
            }
        }
        let consumed = plan.consumed - plan.dropped_count;
        let Some(planned) = plan.txn else {
            self.settle_front(consumed);
            return Step::Continue;
        };
        let started = Instant::now();
        let result = self.store.txn(planned.txn.clone()).await;
        self.metrics
            .txn_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) if resp.succeeded => {
                self.metrics.txn_size.observe(planned.bytes as f64);
                self.metrics
                    .txn_ops
                    .observe(planned.txn.success.len() as f64);
                self.stats.txns_committed.fetch_add(1, Ordering::Relaxed);
                self.settle_front(consumed);
                self.barrier = resp.revision;
                self.consecutive_conflicts = 0;
                Step::Continue
            }
            Ok(resp) => {
                if planned.has_fence {
                    let fence = self.config.fence.as_ref();
                    let held = match (resp.gets.last(), fence) {
                        (Some(Some(kv)), Some(f)) => kv.create_revision == f.create_revision,
                        _ => false,
                    };
                    if !held {
                        let key = fence.map(|f| f.key.clone()).unwrap_or_default();
                        tracing::error!(role = %self.config.role, %key, "fence lost; stopping without writing");
                        return Step::Exit(Err(WorkerError::Fenced {
                            role: self.config.role.clone(),
                            key,
                        }));
                    }
                }
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                self.metrics.conflicts.inc();
                self.consecutive_conflicts += 1;
                self.retry_at = Some(Instant::now() + conflict_backoff(self.consecutive_conflicts));
                // Wait until the watch brings the values that beat us, then re-apply.
                let newest = resp.gets.iter().flatten().map(|kv| kv.mod_revision).max();
                if let Some(rev) = newest {
                    self.barrier = self.barrier.max(rev);
                }
                tracing::debug!(role = %self.config.role, barrier = self.barrier.0, "txn conflict; waiting for newer values");
                Step::Continue
            }
            Err(StoreError::Indeterminate(msg)) => {
                // The batch may or may not have landed. Its groups are not retried blindly:
                // the state is re-read and the reactor decides again (style lesson 4).
                tracing::warn!(role = %self.config.role, error = %msg, "txn outcome unknown; dropping pending groups and resyncing");
                let pending: Vec<_> = self.pending.drain(..).collect();
                for p in pending {
                    self.drop_group(p, DropReason::Indeterminate(msg.clone()));
                }
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                Step::Resync
            }
            Err(e) => {
                // Not applied (unavailable / rejected): keep the groups, back off, resync.
                self.on_store_error("txn", &e);
                if let StoreError::Rejected(msg) = &e {
                    // The server refused a txn we sized within the default limits: its limits
                    // are lower. Drop the front group rather than loop on it forever.
                    if let Some(p) = self.pending.pop_front() {
                        self.drop_group(p, DropReason::Rejected(msg.clone()));
                    }
                }
                Step::Resync
            }
        }
    }

    /// The first `n` pending groups committed (or had nothing to write).
    fn settle_front(&mut self, n: usize) {
        for p in self.pending.drain(..n) {
            if let Some(o) = self.outcomes.get_mut(p.index) {
                *o = Some(GroupOutcome::Committed);
            }
        }
    }

    /// Records a group as dropped: logged, counted, reported to the next tick.
    fn drop_group(&mut self, p: Pending<R::Patch>, reason: DropReason) {
        tracing::warn!(role = %self.config.role, group = %p.group.label, %reason, "patch group dropped");
        self.stats.groups_dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .dropped
            .with_label_values(&[&self.config.role, reason.kind()])
            .inc();
        if let Some(o) = self.outcomes.get_mut(p.index) {
            *o = Some(GroupOutcome::Dropped(reason));
        }
    }

    fn on_store_error(&self, what: &str, e: &StoreError) {
        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.store_errors.inc();
        tracing::warn!(role = %self.config.role, error = %e, "{what} failed; retrying with backoff");
    }
}

/// After consecutive conflicts, wait a little before re-applying, so two workers fighting
/// over a key do not spin.
fn conflict_backoff(n: u32) -> Duration {
    Duration::from_millis((5u64 << n.min(6)).min(200))
}

/// Plans the txns that would commit `groups` over the keys of `listing`, as the worker does
/// after a tick (patches applied to the cached values, compares, batching within `limits`);
/// returns how many txns. For benchmarks: feature `testing`.
#[cfg(feature = "testing")]
pub fn plan_txns<P: crate::KeyPatch>(
    listing: Vec<crate::store::KeyValue>,
    groups: Vec<Group<P>>,
    limits: &TxnLimits,
) -> usize {
    let mut raw = raw::RawCache::new("/__bench/delete-counter".into());
    raw.replace_with(listing);
    let mut pending: VecDeque<Group<P>> = groups.into();
    let mut txns = 0;
    while !pending.is_empty() {
        let plan = commit::plan(&raw, &pending, limits, None);
        if plan.consumed == 0 {
            break;
        }
        pending.drain(..plan.consumed);
        txns += usize::from(plan.txn.is_some());
    }
    txns
}

/// Whether `group` alone fits one txn over the keys of `raw` (the worker's own planner, with
/// a fence as an owner has): `Err` names why not. For the group-limit tests: feature
/// `testing`.
#[cfg(feature = "testing")]
pub fn check_group_fits<P: crate::KeyPatch>(
    raw: &std::collections::BTreeMap<String, Vec<u8>>,
    group: &Group<P>,
    limits: &TxnLimits,
) -> Result<(), String> {
    let mut cache = raw::RawCache::new("/__check/delete-counter".into());
    cache.replace_with(
        raw.iter()
            .map(|(k, v)| crate::store::KeyValue {
                key: k.clone(),
                value: v.clone(),
                create_revision: Revision(1),
                mod_revision: Revision(1),
                lease: 0,
            })
            .collect(),
    );
    let fence = Fence {
        key: "/__check/owner/fence".into(),
        create_revision: Revision(1),
    };
    let plan = commit::plan(&cache, std::iter::once(group), limits, Some(&fence));
    match plan.dropped.into_iter().next() {
        Some((_, DropReason::TooLarge(why))) => Err(why),
        _ => Ok(()),
    }
}
