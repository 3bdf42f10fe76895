//! Changefeed progress: the resolved ts and checkpoint the owner writes to the status key
//! (facts §4.10), with two differences from TiCDC v5:
//! - the **checkpoint never goes backwards** and never passes the resolved ts (the
//!   simulation checks both invariants; v5 could move either back when an add operation
//!   carried an older boundary);
//! - the status is written **at most once per flush interval** and only when a value changed
//!   (v5 could rewrite it on every tick, facts §8.18).

use itertools::{EitherOrBoth, Itertools};
use rcdc_state::patch::StatusEdit;
use rcdc_state::{ChangefeedId, ChangefeedState, Edit, KeyLayout, Patch, Ts};

/// The computed progress of a changefeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Every table has received all changes up to here.
    pub resolved_ts: Ts,
    /// Every change up to here is in the sink.
    pub checkpoint_ts: Ts,
}

/// Computes progress from the task keys, or `None` when it cannot be known yet: a capture
/// holds tables of the changefeed but has not reported a position.
///
/// `barrier_ts` caps the resolved ts (DDL barrier, target ts).
pub fn compute(cf: &ChangefeedState, barrier_ts: Ts) -> Option<Progress> {
    let mut resolved = barrier_ts;
    // Min checkpoint over the positions of captures that hold tables or operations.
    let mut reported: Option<Ts> = None;
    // Statuses and positions are both in capture order: one walk pairs them (a lookup per
    // capture was most of a visit at 100 captures per changefeed).
    let pairs = cf
        .task_statuses
        .iter()
        .merge_join_by(&cf.task_positions, |(a, _), (b, _)| a.cmp(b));
    for pair in pairs {
        let status = match pair {
            // A capture that holds nothing of the changefeed (its last table moved or
            // drained away) no longer advances its position: the frozen value would hold the
            // changefeed back forever. The tables it gave up are covered by their new
            // holders' positions and add operations.
            EitherOrBoth::Both((_, status), _) if status.is_empty() => continue,
            EitherOrBoth::Both((_, status), (_, p)) => {
                resolved = resolved.min(p.resolved_ts);
                reported = Some(reported.map_or(p.checkpoint_ts, |c| c.min(p.checkpoint_ts)));
                status
            }
            EitherOrBoth::Left((_, status)) if !status.is_empty() => return None,
            EitherOrBoth::Left((_, status)) => status,
            EitherOrBoth::Right(_) => continue, // a position without a status: ignored
        };
        // An operation in flight caps progress: an added table must catch up first.
        for op in status.operation.iter().flat_map(|ops| ops.values()) {
            resolved = resolved.min(op.boundary_ts);
        }
    }
    let checkpoint = reported.map_or(resolved, |c| c.min(resolved));
    // Never behind what is already recorded (monotonic), never ahead of resolved.
    let stored = cf
        .status
        .as_ref()
        .map(|s| s.checkpoint_ts)
        .unwrap_or_default();
    let checkpoint = checkpoint.max(stored);
    Some(Progress {
        resolved_ts: resolved.max(checkpoint),
        checkpoint_ts: checkpoint,
    })
}

/// Decides when to write a changefeed's progress.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProgressWriter {
    id: ChangefeedId,
    flush_interval_ms: u64,
    last_write_ms: Option<u64>,
    /// Progress moved but the flush interval held the write back: a later tick must write
    /// it even if nothing else changes.
    deferred: bool,
}

impl ProgressWriter {
    /// A writer for changefeed `id`, writing at most once per `flush_interval_ms`
    /// (`owner-flush-interval`, default 200 ms).
    pub fn new(id: ChangefeedId, flush_interval_ms: u64) -> Self {
        Self {
            id,
            flush_interval_ms,
            last_write_ms: None,
            deferred: false,
        }
    }

    /// Whether the last tick held back a write for the flush interval.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// The status patch to write now, if progress changed and the interval has passed.
    pub fn tick(
        &mut self,
        layout: &KeyLayout,
        cf: &ChangefeedState,
        progress: Progress,
        now_ms: u64,
    ) -> Option<Patch> {
        let current = cf.status.as_ref().map(|s| (s.resolved_ts, s.checkpoint_ts));
        self.deferred = false;
        if current == Some((progress.resolved_ts, progress.checkpoint_ts)) {
            return None;
        }
        if self
            .last_write_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.flush_interval_ms)
        {
            self.deferred = true;
            return None;
        }
        self.last_write_ms = Some(now_ms);
        Some(Patch::new(
            layout.status(&self.id),
            Edit::ChangefeedStatus(StatusEdit::Advance {
                resolved_ts: progress.resolved_ts,
                checkpoint_ts: progress.checkpoint_ts,
            }),
        ))
    }
}

#[cfg(test)]
mod tests;
