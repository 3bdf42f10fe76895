//! The owner's table scheduler for one changefeed (target-design §6, facts §5), as a pure
//! function of the snapshot, the live captures, the changefeed's table set and injected time.
//!
//! # Protocol
//! Everything travels in the `task/status/<capture>/<changefeed>` keys (facts §2.5, §5):
//!
//! ```text
//! owner ADD:     tables[t] = {start-ts: b}, operation[t] = {delete: false, boundary_ts: b}
//! processor:     status 1 (Processed), then 2 (Finished) once the table caught up
//! owner:         deletes the Finished op
//!
//! owner REMOVE:  tables[t] deleted, operation[t] = {delete: true, boundary_ts: b}
//!                (a move also sets flag 1 and "rcdc-move-target": "<capture>")
//! processor:     status 1, then 2 when the pipeline stopped (boundary = table checkpoint)
//! owner:         deletes the Finished op; for a move, in the SAME patch group, adds the
//!                table on the recorded target (an atomic hand-over)
//! ```
//!
//! Each [`TableScheduler::tick`], in order:
//! 1. index `table → capture` from `tables` and non-finished ops of every live capture's
//!    TaskStatus; a table under two captures is an error (TiCDC's `ErrTableListenReplicated`)
//!    and nothing is scheduled;
//! 2. delete Finished ops; a finished move re-adds its table on the recorded target;
//! 3. remove tables no longer in the changefeed (dropped by DDL);
//! 4. add unassigned tables to the least-loaded live capture (ties: capture id order);
//! 5. run queued move requests;
//! 6. rebalance, but only when the changefeed has settled (no op anywhere, nothing patched);
//! 7. report `settled`, which gates the changefeed status update (facts §4.10).
//!
//! All patches of a tick go in one [`PatchGroup`], so every hand-over (finished remove deleted,
//! table added elsewhere) is atomic: **a table is never added while another capture still
//! holds it** in `tables` or in a pending op. Task statuses of captures that are not alive are
//! ignored here (deleting them is the preflight's job), so their tables get re-dispatched.
//!
//! # TiCDC v5 bugs fixed (facts §8.19–8.22)
//! - §8.19, periodic rebalance was a TODO and rebalance removed arbitrary tables: here a
//!   rebalance also runs every [`SchedulerConfig::rebalance_interval_ms`] when the spread of
//!   table counts exceeds [`SchedulerConfig::rebalance_skew`]; it picks the highest table ids
//!   of over-loaded captures and moves them straight to the under-loaded ones (with a
//!   recorded target) instead of removing them and hoping the re-dispatch lands well.
//! - §8.20, load underflow: TiCDC subtracted 1 from a u64 workload for every remove job, so a
//!   capture without a workload key wrapped to `u64::MAX` and was never chosen again. Here the
//!   load is the number of tables in the capture's `tables` (which already excludes tables
//!   being removed) plus this tick's assignments, with saturating arithmetic throughout.
//! - §8.21, one move of an unknown table blocked the move queue forever: here a move of an
//!   unknown table, or to a capture that is not alive, is rejected with a reason and dropped,
//!   and the other requests proceed; a move of a busy table waits in the queue.
//! - §8.22, the move target lived only in the owner's memory: here it is written into the
//!   delete op itself (`TaskStatusEdit::MoveTableOut`, extra field `rcdc-move-target`), so a new
//!   owner finishes the move exactly as the old one would have.
//!
//! Cost: a tick is O(T + M·log M) for T tables and M captures of the changefeed (the index is
//! rebuilt from the snapshot each tick); no HashMap, so the output is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use rcdc_state::model::{CaptureInfo, OperationStatus};
use rcdc_state::patch::TaskStatusEdit;
use rcdc_state::{
    CaptureId, CdcKey, ChangefeedId, ChangefeedState, Edit, KeyLayout, PatchGroup, TableId, Ts,
};

/// Rebalance tuning.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchedulerConfig {
    /// How often the periodic skew check runs, milliseconds.
    pub rebalance_interval_ms: u64,
    /// The periodic check rebalances when the largest minus the smallest table count per live
    /// capture exceeds this.
    pub rebalance_skew: usize,
    /// At most this many operations in flight in one capture's TaskStatus: a first dispatch
    /// of many tables goes in rounds, so the value (every table plus every op) stays well
    /// inside etcd's request limit (about 55 bytes a table and 80 an op: 10,000 tables and
    /// 1,000 ops are ~630 KiB).
    #[serde(default = "default_max_ops_per_capture")]
    pub max_ops_per_capture: usize,
    /// At most this many tables of one changefeed on one capture: its TaskStatus is one etcd
    /// value and must fit a txn with its ops (with real TSOs ~57 bytes a table and up to ~120
    /// an op: 18,000 tables and 1,000 ops are ~1.1 MB of etcd's 1.25 MiB). Tables no capture
    /// has room for stay unassigned (the changefeed's checkpoint waits) until captures join.
    #[serde(default = "default_max_tables_per_capture")]
    pub max_tables_per_capture: usize,
}

fn default_max_tables_per_capture() -> usize {
    18_000
}

fn default_max_ops_per_capture() -> usize {
    1_000
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            rebalance_interval_ms: 60_000,
            rebalance_skew: 1,
            max_ops_per_capture: default_max_ops_per_capture(),
            max_tables_per_capture: default_max_tables_per_capture(),
        }
    }
}

/// An operator's scheduling request (the HTTP API's move-table and rebalance).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScheduleRequest {
    /// Move one table to a capture.
    MoveTable {
        /// The table.
        table: TableId,
        /// The capture that should replicate it.
        target: CaptureId,
    },
    /// Even out the table counts across live captures.
    Rebalance,
}

/// What one tick decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleOutcome {
    /// Patch groups to commit: one per TaskStatus key touched, labelled
    /// `changefeed/<id>/schedule/<capture>`, so that no group outgrows a txn however many
    /// captures a decision touches.
    pub groups: Vec<PatchGroup>,
    /// Requests this tick carried out: their consequence is in `groups` (or needed none).
    /// The owner acknowledges them once those groups commit.
    pub started: Vec<ScheduleRequest>,
    /// No op in flight in any TaskStatus of the changefeed and nothing patched this tick: the
    /// owner may update the changefeed status (facts §4.10).
    pub settled: bool,
    /// Requests dropped this tick, with the reason.
    pub rejected: Vec<(ScheduleRequest, String)>,
    /// An inconsistency that stops scheduling (nothing is patched while it lasts).
    pub error: Option<String>,
}

/// The scheduler of one changefeed. Its memory is only the request queue and rebalance
/// bookkeeping: everything about tables in flight is read back from etcd every tick, so a new
/// instance (a new owner) continues where the old one stopped.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TableScheduler {
    changefeed: ChangefeedId,
    config: SchedulerConfig,
    /// Queued move requests, oldest first.
    moves: Vec<QueuedMove>,
    /// Rebalances asked for (API) that have not run yet; several are one rebalance.
    #[serde(
        default,
        alias = "rebalance_requested",
        deserialize_with = "count_or_flag"
    )]
    rebalance_requests: usize,
    /// The live capture set changed and the rebalance it calls for has not run yet.
    captures_changed: bool,
    /// The live capture set seen by the previous tick (`None` before the first tick, which
    /// therefore counts as a change, like TiCDC's `lastTickCaptureCount = 0`).
    last_captures: Option<BTreeSet<CaptureId>>,
    /// When the periodic skew check last ran (`None` before the first tick).
    last_check_ms: Option<u64>,
}

/// Recordings made before rebalance requests were counted stored a flag.
fn count_or_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum CountOrFlag {
        Count(usize),
        Flag(bool),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        CountOrFlag::Count(n) => n,
        CountOrFlag::Flag(b) => usize::from(b),
    })
}

/// A move request waiting to run (recordings made before retries were tracked stored a
/// `(table, target)` pair).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "QueuedMoveRepr")]
struct QueuedMove {
    table: TableId,
    target: CaptureId,
    /// Re-queued after its first run's group was dropped: finding the table already on the
    /// target means that run landed after all.
    retry: bool,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum QueuedMoveRepr {
    Current {
        table: TableId,
        target: CaptureId,
        #[serde(default)]
        retry: bool,
    },
    Pair(TableId, CaptureId),
}

impl From<QueuedMoveRepr> for QueuedMove {
    fn from(r: QueuedMoveRepr) -> Self {
        match r {
            QueuedMoveRepr::Current {
                table,
                target,
                retry,
            } => QueuedMove {
                table,
                target,
                retry,
            },
            QueuedMoveRepr::Pair(table, target) => QueuedMove {
                table,
                target,
                retry: false,
            },
        }
    }
}

/// Where a table is, in this tick's working view.
#[derive(Clone, Debug)]
struct Hold {
    capture: CaptureId,
    /// In the holder's `tables`.
    in_tables: bool,
    /// An op exists for it (or this tick patches one): it must not be moved now.
    busy: bool,
    /// The holder already has a pending (unfinished) delete op for it.
    removing: bool,
}

/// A finished delete op found on a capture.
struct FinishedRemove {
    table: TableId,
    target: Option<CaptureId>,
}

impl TableScheduler {
    /// A scheduler for `changefeed` with nothing queued.
    pub fn new(changefeed: ChangefeedId, config: SchedulerConfig) -> Self {
        Self {
            changefeed,
            config,
            moves: Vec::new(),
            rebalance_requests: 0,
            captures_changed: false,
            last_captures: None,
            last_check_ms: None,
        }
    }

    /// The changefeed this scheduler serves.
    pub fn changefeed(&self) -> &ChangefeedId {
        &self.changefeed
    }

    /// Queues a request for the next tick. Move requests run in order; several rebalance
    /// requests before the rebalance runs are one.
    pub fn request(&mut self, req: ScheduleRequest) {
        match req {
            ScheduleRequest::MoveTable { table, target } => self.moves.push(QueuedMove {
                table,
                target,
                retry: false,
            }),
            ScheduleRequest::Rebalance => self.rebalance_requests += 1,
        }
    }

    /// Takes every queued request (the changefeed stopped or is gone: they are refused).
    pub fn drain_requests(&mut self) -> Vec<ScheduleRequest> {
        let mut out: Vec<ScheduleRequest> = std::mem::take(&mut self.moves)
            .into_iter()
            .map(|m| ScheduleRequest::MoveTable {
                table: m.table,
                target: m.target,
            })
            .collect();
        out.extend(std::iter::repeat_n(
            ScheduleRequest::Rebalance,
            std::mem::take(&mut self.rebalance_requests),
        ));
        out
    }

    /// Puts back requests whose groups were dropped, ahead of newer ones: the next tick runs
    /// them again on fresh state. A dropped group may also have carried a rebalance that a
    /// capture change called for, so that check runs again too.
    pub fn requeue(&mut self, started: Vec<ScheduleRequest>) {
        let mut moves = Vec::new();
        for req in started {
            match req {
                ScheduleRequest::MoveTable { table, target } => moves.push(QueuedMove {
                    table,
                    target,
                    retry: true,
                }),
                ScheduleRequest::Rebalance => self.rebalance_requests += 1,
            }
        }
        moves.append(&mut self.moves);
        self.moves = moves;
        self.captures_changed = true;
    }

    /// Move requests still waiting (their table had an op in flight).
    pub fn pending_moves(&self) -> usize {
        self.moves.len()
    }

    /// One scheduling round. `captures` are the live captures, `current_tables` the tables the
    /// changefeed should replicate now, `checkpoint` the changefeed checkpoint (the boundary of
    /// every op written), `now_ms` the owner's clock.
    pub fn tick(
        &mut self,
        layout: &KeyLayout,
        cf: &ChangefeedState,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
        current_tables: &BTreeSet<TableId>,
        checkpoint: Ts,
        now_ms: u64,
    ) -> ScheduleOutcome {
        let alive: BTreeSet<CaptureId> = captures.keys().cloned().collect();
        if self.last_captures.as_ref() != Some(&alive) {
            self.captures_changed = true;
            self.last_captures = Some(alive);
        }
        let last_check = *self.last_check_ms.get_or_insert(now_ms);

        let mut out = ScheduleOutcome::default();
        if let Some(error) = self.check_task_statuses_decode(layout, cf, captures) {
            out.error = Some(error);
            return out;
        }
        // 1. Who holds what.
        let index = match Index::build(cf, captures) {
            Ok(index) => index,
            Err(error) => {
                out.error = Some(error);
                return out;
            }
        };
        let Index {
            mut holds,
            mut load,
            finished,
        } = index;
        // A draining capture still holds its tables, but is never a target: it gets nothing
        // new and its tables move away below (graceful shutdown, target-design §5).
        let draining: BTreeSet<CaptureId> = captures
            .iter()
            .filter(|(_, info)| info.is_draining())
            .map(|(c, _)| c.clone())
            .collect();
        load.retain(|c, _| !draining.contains(c));

        let changefeed = self.changefeed.clone();
        let mut plan = Plan {
            layout,
            changefeed: &changefeed,
            group: PatchGroup::new(format!("changefeed/{}/schedule", self.changefeed)),
            checkpoint,
        };
        // Room per capture this tick for new ops (a first dispatch goes in rounds) and new
        // tables (a TaskStatus must stay one etcd value).
        let mut room = Room::new(cf, captures, &self.config);

        // 2. Finished ops: delete them; a finished move hands its table to the target.
        for (capture, removes) in &finished {
            plan.push(capture, TaskStatusEdit::DeleteFinishedOps);
            for r in removes {
                let Some(target) = r.target.as_ref() else {
                    continue;
                };
                if !current_tables.contains(&r.table)
                    || !captures.contains_key(target)
                    || draining.contains(target)
                    || holds.contains_key(&r.table)
                {
                    // Dropped meanwhile, target gone, or somehow held: step 3/4 decide.
                    continue;
                }
                if !room.take_target(target) {
                    // The target is at its op limit: step 4 places the table this round or
                    // a later one.
                    continue;
                }
                plan.add(target, r.table);
                bump(&mut load, target);
                holds.insert(r.table, Hold::added(target.clone()));
            }
        }

        // 3. Tables no longer in the changefeed: remove them from their holder.
        for (table, hold) in holds.iter_mut() {
            if current_tables.contains(table) || hold.removing || !hold.in_tables {
                continue;
            }
            plan.push(
                &hold.capture,
                TaskStatusEdit::RemoveTable {
                    table: *table,
                    boundary_ts: checkpoint,
                    is_move: false,
                },
            );
            if let Some(n) = load.get_mut(&hold.capture) {
                *n = n.saturating_sub(1);
            }
            hold.busy = true;
            hold.removing = true;
            hold.in_tables = false;
        }

        // 4. Unassigned tables: to the least-loaded live capture, ties by capture id.
        let mut by_load: BTreeSet<(usize, CaptureId)> =
            load.iter().map(|(c, n)| (*n, c.clone())).collect();
        let mut full = Vec::new();
        let mut unassigned = false;
        for table in current_tables {
            if holds.contains_key(table) {
                continue;
            }
            // The least-loaded capture with room for another table; a full one sits out
            // the rest of this round.
            let picked = loop {
                let Some((n, capture)) = by_load.pop_first() else {
                    break None;
                };
                if room.take_target(&capture) {
                    break Some((n, capture));
                }
                full.push((n, capture));
            };
            let Some((n, capture)) = picked else {
                // No capture may take it now (none alive, all draining, or all at their op
                // limit). The changefeed is not settled: its progress must not pass a table
                // nobody replicates yet.
                unassigned = true;
                break;
            };
            plan.add(&capture, *table);
            holds.insert(*table, Hold::added(capture.clone()));
            by_load.insert((n.saturating_add(1), capture));
        }
        by_load.extend(full);
        let load: BTreeMap<CaptureId, usize> = by_load.into_iter().map(|(n, c)| (c, n)).collect();

        // 5. Manual moves.
        self.run_moves(
            &mut plan,
            &mut holds,
            &mut room,
            captures,
            current_tables,
            &mut out,
        );

        // 5b. Draining captures hand every idle table to the least-loaded other capture.
        if !draining.is_empty() {
            let mut by_load: BTreeSet<(usize, CaptureId)> =
                load.iter().map(|(c, n)| (*n, c.clone())).collect();
            let leaving: Vec<(TableId, CaptureId)> = holds
                .iter()
                .filter(|(_, h)| {
                    draining.contains(&h.capture) && h.in_tables && !h.busy && !h.removing
                })
                .map(|(t, h)| (*t, h.capture.clone()))
                .collect();
            for (table, from) in leaving {
                let Some((n, to)) = by_load.pop_first() else {
                    break; // nobody to take it: the drain waits out its timeout
                };
                if !room.take_move(&from, &to) {
                    // Limits reached: the rest of the drain goes in the next rounds.
                    by_load.insert((n, to));
                    break;
                }
                plan.push(
                    &from,
                    TaskStatusEdit::MoveTableOut {
                        table,
                        boundary_ts: checkpoint,
                        target: to.clone(),
                    },
                );
                if let Some(h) = holds.get_mut(&table) {
                    h.busy = true;
                }
                by_load.insert((n.saturating_add(1), to));
            }
        }

        // 6. Rebalance, once everything has settled.
        let ops_in_flight = cf
            .task_statuses
            .values()
            .any(|s| s.operation.as_ref().is_some_and(|ops| !ops.is_empty()));
        let periodic_due = now_ms >= last_check.saturating_add(self.config.rebalance_interval_ms);
        let requested = self.rebalance_requests > 0;
        let wanted = requested || self.captures_changed || periodic_due;
        if wanted && !ops_in_flight && plan.group.is_empty() {
            let threshold = if requested || self.captures_changed {
                1
            } else {
                self.config.rebalance_skew
            };
            let skew = spread(&load);
            let mut cut_short = false;
            if skew > threshold {
                for (table, from, to) in rebalance_moves(&load, &holds) {
                    // Nothing is in flight here, so `room` is each capture's whole op limit;
                    // a larger rebalance goes in rounds (the next settled tick goes on).
                    if !room.take_move(&from, &to) {
                        cut_short = true;
                        continue;
                    }
                    plan.push(
                        &from,
                        TaskStatusEdit::MoveTableOut {
                            table,
                            boundary_ts: checkpoint,
                            target: to,
                        },
                    );
                }
            }
            out.started.extend(std::iter::repeat_n(
                ScheduleRequest::Rebalance,
                self.rebalance_requests,
            ));
            self.rebalance_requests = 0;
            self.captures_changed = cut_short;
            self.last_check_ms = Some(now_ms);
        }

        out.settled = !ops_in_flight && plan.group.is_empty() && !unassigned;
        out.groups = plan.group.split_by_key();
        out
    }

    /// A corrupt TaskStatus of a live capture hides which tables it holds; scheduling around
    /// it could replicate a table twice, so nothing is scheduled until it is repaired.
    fn check_task_statuses_decode(
        &self,
        layout: &KeyLayout,
        cf: &ChangefeedState,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
    ) -> Option<String> {
        let bad: Vec<&str> = cf
            .corrupt
            .keys()
            .filter(|key| {
                matches!(
                    layout.parse(key),
                    Some(CdcKey::TaskStatus { capture, .. }) if captures.contains_key(&capture)
                )
            })
            .map(String::as_str)
            .collect();
        (!bad.is_empty()).then(|| {
            format!(
                "changefeed {}: task status {} does not decode; not scheduling",
                self.changefeed,
                bad.join(", ")
            )
        })
    }

    /// Runs queued moves: invalid ones are rejected and dropped, moves of busy tables wait.
    fn run_moves(
        &mut self,
        plan: &mut Plan<'_>,
        holds: &mut BTreeMap<TableId, Hold>,
        room: &mut Room,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
        current_tables: &BTreeSet<TableId>,
        out: &mut ScheduleOutcome,
    ) {
        let mut waiting = Vec::new();
        for queued in std::mem::take(&mut self.moves) {
            let QueuedMove {
                table,
                target,
                retry,
            } = queued.clone();
            let request = ScheduleRequest::MoveTable {
                table,
                target: target.clone(),
            };
            let reject = |reason: String| {
                (
                    ScheduleRequest::MoveTable {
                        table,
                        target: target.clone(),
                    },
                    reason,
                )
            };
            if !current_tables.contains(&table) {
                out.rejected.push(reject(format!(
                    "table {table} is not replicated by changefeed {}",
                    self.changefeed
                )));
                continue;
            }
            if !captures.contains_key(&target) {
                out.rejected
                    .push(reject(format!("target capture {target} is not alive")));
                continue;
            }
            let Some(hold) = holds.get_mut(&table) else {
                out.rejected.push(reject(format!(
                    "table {table} is not assigned to any capture"
                )));
                continue;
            };
            if hold.capture == target {
                if retry {
                    // The first run's move landed although its outcome was lost.
                    out.started.push(request);
                } else {
                    out.rejected.push(reject(format!(
                        "table {table} is already on capture {target}"
                    )));
                }
                continue;
            }
            if hold.busy || !room.take_move(&hold.capture, &target) {
                // In flight, or a limit reached: later.
                waiting.push(queued);
                continue;
            }
            plan.push(
                &hold.capture,
                TaskStatusEdit::MoveTableOut {
                    table,
                    boundary_ts: plan.checkpoint,
                    target,
                },
            );
            hold.busy = true;
            out.started.push(request);
        }
        self.moves = waiting;
    }
}

/// The patch group of one tick under construction.
struct Plan<'a> {
    layout: &'a KeyLayout,
    changefeed: &'a ChangefeedId,
    group: PatchGroup,
    checkpoint: Ts,
}

impl Plan<'_> {
    fn push(&mut self, capture: &CaptureId, edit: TaskStatusEdit) {
        let key = self.layout.task_status(capture, self.changefeed);
        self.group.push(key, Edit::TaskStatus(edit));
    }

    fn add(&mut self, capture: &CaptureId, table: TableId) {
        self.push(
            capture,
            TaskStatusEdit::AddTable {
                table,
                start_ts: self.checkpoint,
                boundary_ts: self.checkpoint,
            },
        );
    }
}

impl Hold {
    fn added(capture: CaptureId) -> Self {
        Hold {
            capture,
            in_tables: true,
            busy: true,
            removing: false,
        }
    }
}

/// Who holds what, read from the live captures' task statuses.
struct Index {
    holds: BTreeMap<TableId, Hold>,
    /// Tables in `tables` per live capture (0 for a capture without a TaskStatus).
    load: BTreeMap<CaptureId, usize>,
    /// Captures with Finished ops, and the finished delete ops among them.
    finished: BTreeMap<CaptureId, Vec<FinishedRemove>>,
}

impl Index {
    fn build(
        cf: &ChangefeedState,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
    ) -> Result<Index, String> {
        let mut holds: BTreeMap<TableId, Hold> = BTreeMap::new();
        let mut load: BTreeMap<CaptureId, usize> =
            captures.keys().map(|c| (c.clone(), 0)).collect();
        let mut finished: BTreeMap<CaptureId, Vec<FinishedRemove>> = BTreeMap::new();
        let mut conflicts: BTreeSet<String> = BTreeSet::new();

        let mut hold = |table: TableId, h: Hold| match holds.get_mut(&table) {
            Some(old) if old.capture != h.capture => {
                conflicts.insert(format!(
                    "table {table} is held by both capture {} and capture {}",
                    old.capture, h.capture
                ));
            }
            Some(old) => {
                old.in_tables |= h.in_tables;
                old.busy |= h.busy;
                old.removing |= h.removing;
            }
            None => {
                holds.insert(table, h);
            }
        };

        for (capture, status) in &cf.task_statuses {
            if !captures.contains_key(capture) {
                continue;
            }
            let ops = status.operation.as_ref();
            if let Some(tables) = status.tables.as_ref() {
                load.insert(capture.clone(), tables.len());
                for table in tables.keys() {
                    let busy = ops.is_some_and(|o| o.contains_key(table));
                    hold(
                        *table,
                        Hold {
                            capture: capture.clone(),
                            in_tables: true,
                            busy,
                            removing: false,
                        },
                    );
                }
            }
            for (table, op) in ops.into_iter().flatten() {
                if op.status == OperationStatus::Finished {
                    let entry = finished.entry(capture.clone()).or_default();
                    if op.delete {
                        // Deleted in this tick's group: the table is released atomically.
                        entry.push(FinishedRemove {
                            table: *table,
                            target: op.move_target(),
                        });
                        continue;
                    }
                }
                hold(
                    *table,
                    Hold {
                        capture: capture.clone(),
                        in_tables: false,
                        busy: true,
                        removing: op.delete,
                    },
                );
            }
        }
        if conflicts.is_empty() {
            Ok(Index {
                holds,
                load,
                finished,
            })
        } else {
            Err(format!(
                "ErrTableListenReplicated: {}; not scheduling",
                conflicts.into_iter().collect::<Vec<_>>().join("; ")
            ))
        }
    }
}

/// What each live capture can still take this tick: op slots (`max_ops_per_capture` minus
/// ops in flight) and table slots (`max_tables_per_capture` minus tables held).
struct Room {
    ops: BTreeMap<CaptureId, usize>,
    tables: BTreeMap<CaptureId, usize>,
}

impl Room {
    fn new(
        cf: &ChangefeedState,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
        config: &SchedulerConfig,
    ) -> Self {
        let mut room = Room {
            ops: BTreeMap::new(),
            tables: BTreeMap::new(),
        };
        for c in captures.keys() {
            let status = cf.task_statuses.get(c);
            let ops = status
                .and_then(|s| s.operation.as_ref())
                .map_or(0, |o| o.len());
            let tables = status
                .and_then(|s| s.tables.as_ref())
                .map_or(0, |t| t.len());
            room.ops
                .insert(c.clone(), config.max_ops_per_capture.saturating_sub(ops));
            room.tables.insert(
                c.clone(),
                config.max_tables_per_capture.saturating_sub(tables),
            );
        }
        room
    }

    /// A table (and its add op) onto `capture`, if it has room for both.
    fn take_target(&mut self, capture: &CaptureId) -> bool {
        let has = |m: &BTreeMap<CaptureId, usize>| m.get(capture).is_some_and(|r| *r > 0);
        if !has(&self.ops) || !has(&self.tables) {
            return false;
        }
        for m in [&mut self.ops, &mut self.tables] {
            if let Some(r) = m.get_mut(capture) {
                *r -= 1;
            }
        }
        true
    }

    /// A move: a delete op on `from`, and the table (with its add op) reserved on `to`.
    fn take_move(&mut self, from: &CaptureId, to: &CaptureId) -> bool {
        if self.ops.get(from).is_none_or(|r| *r == 0) || !self.take_target(to) {
            return false;
        }
        if let Some(r) = self.ops.get_mut(from) {
            *r -= 1;
        }
        true
    }
}

fn bump(load: &mut BTreeMap<CaptureId, usize>, capture: &CaptureId) {
    if let Some(n) = load.get_mut(capture) {
        *n = n.saturating_add(1);
    }
}

/// Largest minus smallest table count over the live captures (0 without captures).
fn spread(load: &BTreeMap<CaptureId, usize>) -> usize {
    let max = load.values().copied().max().unwrap_or(0);
    let min = load.values().copied().min().unwrap_or(0);
    max.saturating_sub(min)
}

/// The moves that bring every live capture to `floor(T/M)` or `ceil(T/M)` tables with the
/// fewest moves: the captures that hold the most keep the `T mod M` ceil slots (ties by
/// capture id), over-loaded captures give up their highest table ids first (tables with an
/// op in flight are skipped), and under-loaded captures fill up in capture id order.
fn rebalance_moves(
    load: &BTreeMap<CaptureId, usize>,
    holds: &BTreeMap<TableId, Hold>,
) -> Vec<(TableId, CaptureId, CaptureId)> {
    let n = load.len();
    if n == 0 {
        return Vec::new();
    }
    let total: usize = load.values().sum();
    let (base, extra) = (total / n, total % n);
    let mut order: Vec<(&CaptureId, usize)> = load.iter().map(|(c, n)| (c, *n)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let target: BTreeMap<&CaptureId, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (*c, if i < extra { base + 1 } else { base }))
        .collect();

    // Movable tables per capture, highest ids first.
    let mut movable: BTreeMap<&CaptureId, Vec<TableId>> = BTreeMap::new();
    for (table, hold) in holds.iter().rev() {
        if hold.in_tables && !hold.busy {
            movable.entry(&hold.capture).or_default().push(*table);
        }
    }
    let mut surplus: Vec<(TableId, &CaptureId)> = Vec::new();
    for (capture, n) in load {
        let want = target.get(capture).copied().unwrap_or(*n);
        let give = n.saturating_sub(want);
        if let Some(tables) = movable.get(capture) {
            surplus.extend(tables.iter().take(give).map(|t| (*t, capture)));
        }
    }
    let mut deficits: Vec<(&CaptureId, usize)> = load
        .iter()
        .filter_map(|(c, n)| {
            let want = target.get(c).copied().unwrap_or(*n);
            (want > *n).then(|| (c, want - *n))
        })
        .collect();

    let mut moves = Vec::new();
    let mut slot = 0;
    for (table, from) in surplus {
        while slot < deficits.len() && deficits[slot].1 == 0 {
            slot += 1;
        }
        let Some((to, left)) = deficits.get_mut(slot) else {
            break;
        };
        *left -= 1;
        moves.push((table, from.clone(), (*to).clone()));
    }
    moves
}

#[cfg(test)]
mod tests;
