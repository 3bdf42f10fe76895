//! The changefeed state machine (target-design §6, facts §4.11), as a pure function of the
//! snapshot and injected time.
//!
//! ```text
//!            pause                 resume
//!   normal ─────────> stopped ─────────────> normal
//!     │  ^                                     
//!     │  │ backoff elapsed (1 s, 2 s, 4 s … 60 s)
//!     v  │                                     
//!   error ──── fast-fail error, or failing longer than max-retry ──> failed ──resume──> normal
//!     │
//!   normal ── target-ts reached ──> finished ──resume──> normal
//!   any ── remove ──> (info, status and task keys deleted)
//! ```
//!
//! Where we differ from TiCDC v5, and why:
//! - Every error stops the changefeed and re-initialises it only after an **exponential
//!   backoff** (1 s doubling to 60 s by default), reset after a healthy period. v5 retried at
//!   once on every tick until 3 errors in 2 minutes (facts §8.15).
//! - `failed` also follows a configurable total time of failing, not only fast-fail codes.
//! - An admin job not allowed in the current state is *rejected with a reason* (the API turns
//!   it into a 4xx), never a panic (facts §8.11).
//! - A stopped changefeed never turns into `error` through stale errors (facts §8.12): errors
//!   are only gathered while it should run.
//! - The `history` field keeps TiCDC's 2-minute window so that TiCDC tools read it the same.

use rcdc_state::model::{AdminJobType, FeedState, RunningError};
use rcdc_state::patch::{InfoEdit, StatusEdit, TaskPositionEdit};
use rcdc_state::{CdcKey, ChangefeedId, ChangefeedState, Edit, KeyLayout, Patch};

/// An operator's request for one changefeed (`cdc cli changefeed pause|resume|remove`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdminJob {
    /// Stop replicating, keep the changefeed.
    Pause,
    /// Start again after pause, error, failure or finish.
    Resume,
    /// Delete the changefeed.
    Remove,
}

/// Timing of retries and failure.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedStateConfig {
    /// First delay after an error before re-initialising.
    pub backoff_initial_ms: u64,
    /// Longest delay.
    pub backoff_max_ms: u64,
    /// Running this long without an error resets the backoff.
    pub healthy_reset_ms: u64,
    /// Failing (errors without a healthy period between) this long turns the feed `failed`.
    pub max_retry_ms: u64,
    /// The window of `history` kept in the info (TiCDC: 2 minutes).
    pub history_window_ms: u64,
}

impl Default for FeedStateConfig {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            healthy_reset_ms: 10 * 60_000,
            max_retry_ms: 30 * 60_000,
            history_window_ms: 2 * 60_000,
        }
    }
}

/// What the feed state machine decided this tick.
#[derive(Debug, Default, PartialEq)]
pub struct FeedDecision {
    /// Patches of the changefeed's state group: the consequence of the admin job and errors
    /// consumed this tick. Small by construction (the info and status keys, plus one error
    /// clear per capture that reported one).
    pub patches: Vec<Patch>,
    /// Deletes of the changefeed's task keys when it must not run (its processors stop).
    /// Committed after the state group, in groups of their own: they can be many, and they
    /// are re-derived from the state on every tick until they are gone.
    pub cleanup: Vec<Patch>,
    /// An admin job handled this tick that needed no write (for example a resume retried
    /// after its first commit was lost, finding the changefeed already running): it is done.
    pub done_job: Option<AdminJob>,
    /// Whether the changefeed should be replicating now (tables scheduled, processors on).
    pub should_run: bool,
    /// Admin jobs refused, with the reason (for the API's answer and the log).
    pub rejected: Vec<(AdminJob, String)>,
}

/// A queued admin job; `retry` once its first decision's group was dropped. (Recordings made
/// before retries were tracked stored the bare job.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "QueuedJobRepr")]
struct QueuedJob {
    job: AdminJob,
    /// A retried job whose wanted state is already in place is done, not refused: its first
    /// commit may have landed although the worker could not tell (an indeterminate txn).
    #[serde(default)]
    retry: bool,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum QueuedJobRepr {
    Current {
        job: AdminJob,
        #[serde(default)]
        retry: bool,
    },
    Bare(AdminJob),
}

impl From<QueuedJobRepr> for QueuedJob {
    fn from(r: QueuedJobRepr) -> Self {
        match r {
            QueuedJobRepr::Current { job, retry } => QueuedJob { job, retry },
            QueuedJobRepr::Bare(job) => QueuedJob { job, retry: false },
        }
    }
}

/// The timing memory a decision changes; restored when the decision's group is dropped, so
/// the next tick re-decides from where this one started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Timing {
    finish: bool,
    backoff_ms: u64,
    retry_at_ms: Option<u64>,
    failing_since_ms: Option<u64>,
    healthy_since_ms: Option<u64>,
}

/// One-shot inputs a decision consumed, kept until its state group is confirmed
/// (target-design §3: decisions are acknowledged by commit).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Unconfirmed {
    job: Option<AdminJob>,
    errors: Vec<RunningError>,
    before: Timing,
}

/// The state machine of one changefeed. Its memory (the backoff) lives in the owner; after
/// an owner change the backoff starts again from the initial delay.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FeedStateMachine {
    id: ChangefeedId,
    config: FeedStateConfig,
    jobs: std::collections::VecDeque<QueuedJob>,
    owner_errors: Vec<RunningError>,
    #[serde(flatten)]
    timing: Timing,
    /// What the last decision consumed, until its group's outcome is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unconfirmed: Option<Unconfirmed>,
}

impl FeedStateMachine {
    /// A machine for changefeed `id`.
    pub fn new(id: ChangefeedId, config: FeedStateConfig) -> Self {
        let backoff_ms = config.backoff_initial_ms;
        Self {
            id,
            config,
            jobs: Default::default(),
            owner_errors: Vec::new(),
            timing: Timing {
                backoff_ms,
                ..Timing::default()
            },
            unconfirmed: None,
        }
    }

    /// Queues an admin job; one is handled per tick, in order.
    pub fn push_admin_job(&mut self, job: AdminJob) {
        self.jobs.push_back(QueuedJob { job, retry: false });
    }

    /// The changefeed reached its target ts.
    pub fn mark_finished(&mut self) {
        self.timing.finish = true;
    }

    /// Takes every queued admin job (the changefeed is gone).
    pub fn drain_jobs(&mut self) -> Vec<AdminJob> {
        let mut jobs: Vec<AdminJob> = self
            .unconfirmed
            .take()
            .and_then(|u| u.job)
            .into_iter()
            .collect();
        jobs.extend(self.jobs.drain(..).map(|q| q.job));
        jobs
    }

    /// Whether the last decision waits for its group's outcome.
    pub fn awaits_confirmation(&self) -> bool {
        self.unconfirmed.is_some()
    }

    /// The outcome of the last decision's state group. Committed: its admin job, if any, is
    /// done and returned (the operator's answer). Dropped: the job and errors it consumed go
    /// back to the front of their queues and its timing is undone, so the next tick decides
    /// again on fresh state.
    pub fn confirm(&mut self, committed: bool) -> Option<AdminJob> {
        let u = self.unconfirmed.take()?;
        if committed {
            return u.job;
        }
        if let Some(job) = u.job {
            self.jobs.push_front(QueuedJob { job, retry: true });
        }
        let mut errors = u.errors;
        errors.append(&mut self.owner_errors);
        self.owner_errors = errors;
        self.timing = u.before;
        None
    }

    /// An owner-side error for this changefeed (a failed effect, e.g. the sink or GC check).
    pub fn report_error(&mut self, error: RunningError) {
        self.owner_errors.push(error);
    }

    /// The current backoff delay (for the API and tests).
    pub fn backoff_ms(&self) -> u64 {
        self.timing.backoff_ms
    }

    /// Nothing pending: no admin job queued and no retry waiting for its backoff, so the
    /// owner need not visit the changefeed until one of its keys changes.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty() && self.timing.retry_at_ms.is_none()
    }

    /// Decides this tick. `cf` must be this changefeed's state. What the decision consumes
    /// (an admin job, owner errors) is held until [`Self::confirm`] reports its state group's
    /// outcome; the caller must confirm before the next tick.
    pub fn tick(&mut self, layout: &KeyLayout, cf: &ChangefeedState, now_ms: u64) -> FeedDecision {
        let mut d = FeedDecision::default();
        let Some(info) = cf.info.as_ref() else {
            return d; // removed, or not created yet: nothing to decide
        };
        if cf.is_broken() && !only_task_keys_corrupt(layout, cf) {
            // The info or status does not decode: acting on a partial view could destroy
            // data. (Corrupt task keys only stop the changefeed: the owner reports them.)
            return d;
        }
        let state = info.state;
        let before = self.timing.clone();
        let mut job = None;
        // Usually empty: the clone costs nothing then.
        let errors_before = self.owner_errors.clone();

        if let Some(queued) = self.jobs.pop_front() {
            job = Some(queued.job);
            // Removed: the task keys go on the next visit, once the info is gone (the owner's
            // clean-up of a changefeed without info).
            let removed = self.on_admin_job(queued, state, layout, &mut d);
            if d.patches.is_empty() {
                // Refused, or already in place: nothing to wait for.
                if d.rejected.is_empty() {
                    d.done_job = job.take();
                }
            }
            if removed {
                self.hold(job, Vec::new(), before, &d);
                return d;
            }
        } else if self.timing.finish && state == FeedState::Normal {
            self.timing.finish = false;
            self.set_state(FeedState::Finished, state, layout, &mut d);
        } else {
            match state {
                FeedState::Stopped
                | FeedState::Failed
                | FeedState::Removed
                | FeedState::Finished => {
                    self.owner_errors.clear();
                }
                FeedState::Normal | FeedState::Error => {
                    self.on_running(state, layout, cf, now_ms, &mut d)
                }
            }
        }
        if !d.should_run && d.patches.is_empty() {
            // Processors stop when their task keys go (TiCDC's cleanUpInfos); the tables
            // are re-dispatched from the checkpoint when the feed runs again. Not in the tick
            // that changes the state: until that commits, processors keep writing their
            // positions, and a txn deleting their keys would conflict with them over and
            // over (and hold up the state change if packed with it). Once the stopped state
            // is in, processors go quiet and the deletes land.
            d.cleanup = task_key_deletes(layout, &self.id, cf);
        }
        // The errors this decision consumed (recorded in its state group).
        let consumed = if self.owner_errors.is_empty() {
            errors_before
        } else {
            Vec::new()
        };
        self.hold(job, consumed, before, &d);
        d
    }

    /// Keeps what a decision consumed until its state group's outcome is known.
    fn hold(
        &mut self,
        job: Option<AdminJob>,
        errors: Vec<RunningError>,
        before: Timing,
        d: &FeedDecision,
    ) {
        if d.patches.is_empty() {
            // Nothing to commit: whatever was consumed is done.
            self.unconfirmed = None;
            return;
        }
        self.unconfirmed = Some(Unconfirmed {
            job,
            errors,
            before,
        });
    }

    fn on_running(
        &mut self,
        state: FeedState,
        layout: &KeyLayout,
        cf: &ChangefeedState,
        now_ms: u64,
        d: &mut FeedDecision,
    ) {
        let mut errors = std::mem::take(&mut self.owner_errors);
        for (capture, pos) in &cf.task_positions {
            if let Some(e) = &pos.error {
                errors.push(e.clone());
                d.patches.push(Patch::new(
                    layout.task_position(capture, &self.id),
                    Edit::TaskPosition(TaskPositionEdit::SetError { error: None }),
                ));
            }
        }
        if !errors.is_empty() {
            let fast_fail = errors.iter().any(RunningError::is_fast_fail);
            d.patches.push(Patch::new(
                layout.info(&self.id),
                Edit::ChangefeedInfo(InfoEdit::RecordErrors {
                    errors,
                    now_ms: now_ms as i64,
                    window_ms: self.config.history_window_ms as i64,
                }),
            ));
            let t = &mut self.timing;
            let failing_since = *t.failing_since_ms.get_or_insert(now_ms);
            t.healthy_since_ms = None;
            if fast_fail || now_ms.saturating_sub(failing_since) >= self.config.max_retry_ms {
                self.set_state(FeedState::Failed, state, layout, d);
            } else {
                t.retry_at_ms = Some(now_ms + t.backoff_ms);
                t.backoff_ms = (t.backoff_ms * 2).min(self.config.backoff_max_ms);
                self.set_state(FeedState::Error, state, layout, d);
            }
            d.should_run = false;
            return;
        }
        match state {
            FeedState::Error => {
                if self.timing.retry_at_ms.is_none_or(|at| now_ms >= at) {
                    // Backoff elapsed (or unknown after an owner change): try again.
                    self.timing.retry_at_ms = None;
                    self.timing.healthy_since_ms = Some(now_ms);
                    self.set_state(FeedState::Normal, state, layout, d);
                    d.should_run = true;
                }
            }
            _ => {
                let t = &mut self.timing;
                let healthy_since = *t.healthy_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(healthy_since) >= self.config.healthy_reset_ms {
                    t.backoff_ms = self.config.backoff_initial_ms;
                    t.failing_since_ms = None;
                }
                d.should_run = true;
            }
        }
    }

    /// Handles one admin job; returns true when the changefeed is being removed.
    fn on_admin_job(
        &mut self,
        queued: QueuedJob,
        state: FeedState,
        layout: &KeyLayout,
        d: &mut FeedDecision,
    ) -> bool {
        use FeedState::*;
        let job = queued.job;
        match job {
            AdminJob::Pause if matches!(state, Normal | Error) => {
                self.set_state(Stopped, state, layout, d);
            }
            AdminJob::Resume if matches!(state, Stopped | Error | Failed | Finished) => {
                d.patches.push(Patch::new(
                    layout.info(&self.id),
                    Edit::ChangefeedInfo(InfoEdit::ClearErrors),
                ));
                self.reset_retry();
                self.set_state(Normal, state, layout, d);
                d.should_run = true;
            }
            AdminJob::Remove => {
                // The status stays as the removed changefeed's record (see
                // `ChangefeedState::is_removed`); one group, so the record exists exactly
                // when the info is gone.
                d.patches
                    .push(Patch::new(layout.info(&self.id), Edit::Delete));
                d.patches.push(Patch::new(
                    layout.status(&self.id),
                    Edit::ChangefeedStatus(StatusEdit::SetAdminJobType {
                        admin_job_type: AdminJobType::Remove,
                    }),
                ));
                return true;
            }
            // A retry whose first decision landed after all: done, nothing to write.
            AdminJob::Pause if queued.retry && state == Stopped => {}
            AdminJob::Resume if queued.retry && state == Normal => d.should_run = true,
            _ => {
                d.should_run = state == Normal;
                d.rejected.push((
                    job,
                    format!(
                        "changefeed {} is {state}; cannot {}",
                        self.id,
                        format!("{job:?}").to_lowercase()
                    ),
                ));
            }
        }
        false
    }

    fn reset_retry(&mut self) {
        self.timing = Timing {
            finish: self.timing.finish,
            backoff_ms: self.config.backoff_initial_ms,
            ..Timing::default()
        };
    }

    /// Writes `to` into info and status (with its admin job type) if it differs from `from`.
    fn set_state(&self, to: FeedState, from: FeedState, layout: &KeyLayout, d: &mut FeedDecision) {
        if to == from {
            return;
        }
        d.patches.push(Patch::new(
            layout.info(&self.id),
            Edit::ChangefeedInfo(InfoEdit::SetState { state: to }),
        ));
        d.patches.push(Patch::new(
            layout.status(&self.id),
            Edit::ChangefeedStatus(StatusEdit::SetAdminJobType {
                admin_job_type: to.admin_job_type(),
            }),
        ));
    }
}

/// Whether every undecodable key of a broken changefeed is one of its task keys (status,
/// position, workload): those the owner may delete to stop and restart it cleanly.
pub fn only_task_keys_corrupt(layout: &KeyLayout, cf: &ChangefeedState) -> bool {
    cf.corrupt.keys().all(|k| is_task_key(layout, k))
}

fn is_task_key(layout: &KeyLayout, key: &str) -> bool {
    matches!(
        layout.parse(key),
        Some(CdcKey::TaskStatus { .. } | CdcKey::TaskPosition { .. } | CdcKey::TaskWorkload { .. })
    )
}

/// Deletes of every task key of the changefeed (stops its processors), undecodable ones
/// included.
pub fn task_key_deletes(layout: &KeyLayout, id: &ChangefeedId, cf: &ChangefeedState) -> Vec<Patch> {
    let mut out = Vec::new();
    for key in cf.corrupt.keys() {
        if is_task_key(layout, key) {
            out.push(Patch::new(key.clone(), Edit::Delete));
        }
    }
    for c in cf.task_statuses.keys() {
        out.push(Patch::new(layout.task_status(c, id), Edit::Delete));
    }
    for c in cf.task_positions.keys() {
        out.push(Patch::new(layout.task_position(c, id), Edit::Delete));
    }
    for c in cf.workloads.keys() {
        out.push(Patch::new(layout.task_workload(c, id), Edit::Delete));
    }
    out
}

#[cfg(test)]
mod tests;
