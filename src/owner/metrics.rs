//! The owner's Prometheus metrics, with TiCDC's names (`ticdc_owner_*`) so existing dashboards
//! and alerts work. Updated by the runtime adapter after a tick, at most once per second: a
//! side effect of the IO side, never of `Owner::tick`.

use std::sync::LazyLock;

use prometheus::{register_gauge_vec, register_int_counter, GaugeVec, IntCounter};
use rcdc_state::model::FeedState;
use rcdc_state::{ChangefeedId, GlobalState};

struct Families {
    checkpoint_ts: GaugeVec,
    checkpoint_lag: GaugeVec,
    resolved_ts: GaugeVec,
    resolved_lag: GaugeVec,
    status: GaugeVec,
    ownership: IntCounter,
}

// Registration fails only on a duplicate name, which is a programming error caught by any
// test that touches the owner; the fallback keeps the process alive regardless.
#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let labels = &["namespace", "changefeed"];
    Families {
        checkpoint_ts: register_gauge_vec!(
            "ticdc_owner_checkpoint_ts",
            "changefeed checkpoint ts (physical part, ms)",
            labels
        )
        .expect("register ticdc_owner_checkpoint_ts"),
        checkpoint_lag: register_gauge_vec!(
            "ticdc_owner_checkpoint_ts_lag",
            "changefeed checkpoint lag in seconds",
            labels
        )
        .expect("register ticdc_owner_checkpoint_ts_lag"),
        resolved_ts: register_gauge_vec!(
            "ticdc_owner_resolved_ts",
            "changefeed resolved ts (physical part, ms)",
            labels
        )
        .expect("register ticdc_owner_resolved_ts"),
        resolved_lag: register_gauge_vec!(
            "ticdc_owner_resolved_ts_lag",
            "changefeed resolved ts lag in seconds",
            labels
        )
        .expect("register ticdc_owner_resolved_ts_lag"),
        status: register_gauge_vec!(
            "ticdc_owner_status",
            "changefeed state: 0 normal, 1 pending, 2 failed, 3 stopped, 4 finished, 5 removed, 6 warning, 7 uninitialized",
            labels
        )
        .expect("register ticdc_owner_status"),
        ownership: register_int_counter!(
            "ticdc_owner_ownership_counter",
            "incremented by the owner every 5 s (alerts: no owner / several owners)"
        )
        .expect("register ticdc_owner_ownership_counter"),
    }
});

/// TiCDC's numeric code of a state for `ticdc_owner_status`.
pub fn state_code(state: FeedState) -> f64 {
    match state {
        FeedState::Normal => 0.0,
        FeedState::Error => 1.0, // TiCDC's "pending"
        FeedState::Failed => 2.0,
        FeedState::Stopped => 3.0,
        FeedState::Finished => 4.0,
        FeedState::Removed => 5.0,
    }
}

/// Per-owner bookkeeping: when metrics were last published and for which changefeeds.
#[derive(Debug, Default)]
pub struct OwnerMetrics {
    last_ms: Option<u64>,
    last_ownership_ms: u64,
    published: Vec<ChangefeedId>,
}

impl OwnerMetrics {
    /// Publishes every changefeed's progress and state, at most once per second.
    pub fn observe(&mut self, state: &GlobalState, now_ms: u64) {
        if self
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < 1_000)
        {
            return;
        }
        self.last_ms = Some(now_ms);
        let f = &*FAMILIES;
        if now_ms.saturating_sub(self.last_ownership_ms) >= 5_000 {
            self.last_ownership_ms = now_ms;
            f.ownership.inc();
        }
        let mut seen = Vec::new();
        for (id, cf) in state.changefeeds() {
            let Some(info) = &cf.info else { continue };
            let labels = ["default", id.as_str()];
            f.status
                .with_label_values(&labels)
                .set(state_code(info.state));
            if let Some(status) = &cf.status {
                let ck = status.checkpoint_ts.physical_ms();
                let rs = status.resolved_ts.physical_ms();
                f.checkpoint_ts.with_label_values(&labels).set(ck as f64);
                f.resolved_ts.with_label_values(&labels).set(rs as f64);
                let lag = |ts: u64| now_ms.saturating_sub(ts) as f64 / 1_000.0;
                f.checkpoint_lag.with_label_values(&labels).set(lag(ck));
                f.resolved_lag.with_label_values(&labels).set(lag(rs));
            }
            seen.push(id.clone());
        }
        // `seen` is sorted: the state's changefeeds are a sorted map.
        for gone in self
            .published
            .iter()
            .filter(|id| seen.binary_search(id).is_err())
        {
            remove(gone);
        }
        self.published = seen;
    }

    /// Drops this owner's series (it is stepping down; the next owner publishes its own).
    pub fn clear(&mut self) {
        for id in std::mem::take(&mut self.published) {
            remove(&id);
        }
        self.last_ms = None;
    }
}

fn remove(id: &ChangefeedId) {
    let f = &*FAMILIES;
    let labels = ["default", id.as_str()];
    for g in [
        &f.checkpoint_ts,
        &f.checkpoint_lag,
        &f.resolved_ts,
        &f.resolved_lag,
        &f.status,
    ] {
        let _ = g.remove_label_values(&labels);
    }
}
