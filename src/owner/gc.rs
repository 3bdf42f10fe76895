//! The GC safe point (facts §4.12): the owner keeps the upstream from garbage-collecting
//! data a changefeed still needs, by pushing `min checkpoint − 1` over live changefeeds as an
//! effect to the upstream's GC interface, and fails a changefeed whose checkpoint fell behind
//! the upstream's safe point (its data is gone).
//!
//! Fixed TiCDC v5 behaviour: the safe point is checkpoint − 1, not the checkpoint (§8.13);
//! with no live changefeed nothing is pushed (v5 sent u64::MAX); the lost-snapshot check
//! applies only to changefeeds that should run (a stopped one is never flipped to error,
//! §8.12).

use rcdc_state::model::{FeedState, RunningError};
use rcdc_state::{GlobalState, Ts};

/// TiCDC's service id for the safe point.
pub const SERVICE_ID: &str = "ticdc";

/// GC settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcConfig {
    /// Service safe point TTL (`gc-ttl`, default 86,400 s).
    pub ttl_secs: u64,
    /// How often to push (TiCDC: 1 min; the first tick always pushes).
    pub update_interval_ms: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            update_interval_ms: 60_000,
        }
    }
}

/// The effect the runtime executes against the upstream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdateSafePoint {
    /// Always [`SERVICE_ID`].
    pub service_id: String,
    /// TTL of the service safe point.
    pub ttl_secs: u64,
    /// The safe point to set.
    pub safe_point: Ts,
}

/// The upstream's answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SafePointResult {
    /// Accepted; the upstream's current minimum service safe point.
    Updated {
        /// GC will not pass this ts.
        min_safe_point: Ts,
    },
    /// The call failed.
    Failed(String),
}

/// Tracks the safe point for the owner.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GcManager {
    config: GcConfig,
    last_push_ms: Option<u64>,
    last_success_ms: Option<u64>,
    upstream_min: Option<Ts>,
}

/// Whether a changefeed in this state holds back GC.
fn holds_gc(state: FeedState) -> bool {
    matches!(
        state,
        FeedState::Normal | FeedState::Stopped | FeedState::Error
    )
}

impl GcManager {
    /// A manager with `config`.
    pub fn new(config: GcConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// The push to make this tick, if it is time and a live changefeed exists.
    pub fn tick(&mut self, state: &GlobalState, now_ms: u64) -> Option<UpdateSafePoint> {
        if self
            .last_push_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.config.update_interval_ms)
        {
            return None;
        }
        let min = state
            .changefeeds()
            .values()
            .filter_map(|cf| {
                let info = cf.info.as_ref()?;
                holds_gc(info.state).then(|| info.checkpoint_ts(cf.status.as_ref()))
            })
            .min()?;
        self.last_push_ms = Some(now_ms);
        Some(UpdateSafePoint {
            service_id: SERVICE_ID.to_owned(),
            ttl_secs: self.config.ttl_secs,
            safe_point: min.prev(),
        })
    }

    /// Feeds back the result of the last push. Returns an error for the owner to surface
    /// when pushes have failed for longer than the TTL (the safe point may have lapsed).
    pub fn on_result(&mut self, result: SafePointResult, now_ms: u64) -> Option<String> {
        match result {
            SafePointResult::Updated { min_safe_point } => {
                self.last_success_ms = Some(now_ms);
                self.upstream_min = Some(min_safe_point);
                None
            }
            SafePointResult::Failed(e) => {
                let since = self.last_success_ms.unwrap_or(0);
                (now_ms.saturating_sub(since) >= self.config.ttl_secs * 1_000).then(|| {
                    format!(
                        "GC safe point not updated for over {} s: {e}",
                        self.config.ttl_secs
                    )
                })
            }
        }
    }

    /// The error for a running changefeed whose checkpoint is already behind the upstream's
    /// safe point: its snapshot is lost (a fast-fail error).
    pub fn check_checkpoint(&self, checkpoint: Ts, addr: &str) -> Option<RunningError> {
        let min = self.upstream_min?;
        (checkpoint < min).then(|| RunningError {
            addr: addr.to_owned(),
            code: "CDC:ErrSnapshotLostByGC".to_owned(),
            message: format!(
                "checkpoint {checkpoint} is behind the GC safe point {min}; the data is gone"
            ),
            extra: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests;
