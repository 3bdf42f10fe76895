//! The processor's Prometheus metrics, with TiCDC's names. Published by the runtime adapter
//! at most once per second, from the pipelines this capture runs.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use prometheus::{register_int_gauge_vec, IntGaugeVec};
use rcdc_state::{CaptureId, ChangefeedId, GlobalState};

use super::tick::Pipelines;

// Registration fails only on a duplicate name: a programming error any processor test hits.
#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static NUM_OF_TABLES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "ticdc_processor_num_of_tables",
        "number of tables replicated by this capture, per changefeed",
        &["namespace", "changefeed", "capture"]
    )
    .expect("register ticdc_processor_num_of_tables")
});

/// Publishing state of one processor manager.
#[derive(Debug, Default)]
pub struct ProcessorMetrics {
    last_ms: Option<u64>,
    published: Vec<ChangefeedId>,
}

impl ProcessorMetrics {
    /// Publishes table counts per changefeed, at most once per second. The series of a
    /// changefeed that no longer exists go, the data path's row counter included.
    pub fn observe(
        &mut self,
        capture: &CaptureId,
        state: &GlobalState,
        tables: &Pipelines,
        now_ms: u64,
    ) {
        if self
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < 1_000)
        {
            return;
        }
        self.last_ms = Some(now_ms);
        let mut counts: BTreeMap<&ChangefeedId, i64> = BTreeMap::new();
        for (cf, _) in tables.keys() {
            *counts.entry(cf).or_default() += 1;
        }
        for gone in self.published.iter().filter(|c| !counts.contains_key(c)) {
            let _ =
                NUM_OF_TABLES.remove_label_values(&["default", gone.as_str(), capture.as_str()]);
        }
        // A row series goes once its changefeed is gone (not when its tables merely move
        // away, and not while it is only marked removed).
        for cf in crate::pipeline::metrics::counted() {
            let id = ChangefeedId::from(cf.as_str());
            if state.changefeed(&id).is_none_or(|c| c.info.is_none()) {
                crate::pipeline::metrics::forget(&cf);
            }
        }
        for (cf, n) in &counts {
            NUM_OF_TABLES
                .with_label_values(&["default", cf.as_str(), capture.as_str()])
                .set(*n);
        }
        self.published = counts.into_keys().cloned().collect();
    }
}
