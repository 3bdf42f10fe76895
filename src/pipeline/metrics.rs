//! The data path's Prometheus metrics, with TiCDC's names.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use parking_lot::Mutex;
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge, IntCounter, IntCounterVec,
    IntGauge,
};

// Registration fails only on a duplicate name: a programming error any pipeline test hits.
#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "ticdc_sink_table_sink_total_rows_count",
        "rows written and flushed to sinks, per changefeed",
        &["namespace", "changefeed"]
    )
    .expect("register ticdc_sink_table_sink_total_rows_count")
});

/// The changefeeds with a row series, so that the series of a removed one can be found
/// however briefly its tables ran here.
static COUNTED: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Default::default);

/// The changefeeds whose rows this process counted.
pub fn counted() -> Vec<String> {
    COUNTED.lock().iter().cloned().collect()
}

/// Drops the series of a changefeed that was removed.
pub fn forget(changefeed: &str) {
    let mut counted = COUNTED.lock();
    counted.remove(changefeed);
    // Under the lock: a concurrent first count cannot slip between the two.
    let _ = ROWS.remove_label_values(&["default", changefeed]);
}

/// Counts `rows` flushed rows of `changefeed`.
pub fn rows_flushed(changefeed: &str, rows: u64) {
    if rows > 0 {
        let mut counted = COUNTED.lock();
        if !counted.contains(changefeed) {
            counted.insert(changefeed.to_owned());
        }
        ROWS.with_label_values(&["default", changefeed])
            .inc_by(rows);
    }
}

// Registration fails only on a duplicate name: a programming error any sorter test hits.
#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static SORTER_IN_MEMORY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "ticdc_sorter_in_memory_data_size_gauge",
        "bytes of rows held in the sorters' memory (estimated heap), this process"
    )
    .expect("register ticdc_sorter_in_memory_data_size_gauge")
});

#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static SORTER_ON_DISK: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "ticdc_sorter_on_disk_data_size_gauge",
        "bytes of the sorters' spilled runs on disk, this process"
    )
    .expect("register ticdc_sorter_on_disk_data_size_gauge")
});

/// Publishes the process's sorter sizes.
pub fn sorter_sizes(in_memory: usize, on_disk: u64) {
    SORTER_IN_MEMORY.set(i64::try_from(in_memory).unwrap_or(i64::MAX));
    SORTER_ON_DISK.set(i64::try_from(on_disk).unwrap_or(i64::MAX));
}

#[allow(clippy::expect_used, clippy::disallowed_types)] // prometheus macros build HashMaps inside
static SORTER_SPILLS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "rcdc_sorter_spilled_runs_total",
        "sorted runs the sorters spilled to disk, this process"
    )
    .expect("register rcdc_sorter_spilled_runs_total")
});

/// Counts a run spilled to disk.
pub fn sorter_spilled() {
    SORTER_SPILLS.inc();
}
