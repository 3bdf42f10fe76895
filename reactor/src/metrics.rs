//! EtcdWorker metrics, registered once in the process-wide default registry.
//!
//! Names follow TiCDC where it has them (`ticdc_etcd_worker_*`, facts/surface §metrics) and
//! `rcdc_etcd_worker_*` for ours. Every series carries the worker's `role` label.

// prometheus's registration macros expand to HashMap; no iteration order leaks from them.
#![allow(clippy::disallowed_types)]

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, Histogram, HistogramVec, IntCounter,
    IntCounterVec,
};

struct Families {
    tick: HistogramVec,
    txn_size: HistogramVec,
    txn_duration: HistogramVec,
    txn_ops: HistogramVec,
    conflicts: IntCounterVec,
    resyncs: IntCounterVec,
    updates: IntCounterVec,
    store_errors: IntCounterVec,
    dropped: IntCounterVec,
}

fn exp(start: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, n).unwrap_or_default()
}

static FAMILIES: LazyLock<Option<Families>> = LazyLock::new(|| {
    let families = Families {
        tick: register_histogram_vec!(
            "ticdc_etcd_worker_tick_reactor_duration",
            "Time spent in one reactor tick, seconds.",
            &["role"],
            exp(0.00001, 2.0, 20)
        )
        .ok()?,
        txn_size: register_histogram_vec!(
            "ticdc_etcd_worker_etcd_txn_size_bytes",
            "Estimated size of committed etcd txns, bytes.",
            &["role"],
            exp(64.0, 2.0, 16)
        )
        .ok()?,
        txn_duration: register_histogram_vec!(
            "ticdc_etcd_worker_etcd_txn_exec_duration",
            "Round trip of one etcd txn, seconds.",
            &["role"],
            exp(0.0001, 2.0, 18)
        )
        .ok()?,
        txn_ops: register_histogram_vec!(
            "rcdc_etcd_worker_txn_ops",
            "Ops in committed etcd txns.",
            &["role"],
            exp(1.0, 2.0, 8)
        )
        .ok()?,
        conflicts: register_int_counter_vec!(
            "rcdc_etcd_worker_txn_conflicts_total",
            "Txns whose compares failed.",
            &["role"]
        )
        .ok()?,
        resyncs: register_int_counter_vec!(
            "rcdc_etcd_worker_resyncs_total",
            "Full re-lists after compaction or a broken watch.",
            &["role"]
        )
        .ok()?,
        updates: register_int_counter_vec!(
            "rcdc_etcd_worker_updates_applied_total",
            "Watched key updates applied to the state.",
            &["role"]
        )
        .ok()?,
        store_errors: register_int_counter_vec!(
            "rcdc_etcd_worker_store_errors_total",
            "Meta-store errors (each followed by backoff and resync).",
            &["role"]
        )
        .ok()?,
        dropped: register_int_counter_vec!(
            "rcdc_etcd_worker_dropped_groups_total",
            "Patch groups not committed, by reason.",
            &["role", "reason"]
        )
        .ok()?,
    };
    Some(families)
});

/// One worker's handles into the metric families.
pub(crate) struct WorkerMetrics {
    pub tick_duration: Histogram,
    pub txn_size: Histogram,
    pub txn_duration: Histogram,
    pub txn_ops: Histogram,
    pub conflicts: IntCounter,
    pub resyncs: IntCounter,
    pub updates_applied: IntCounter,
    pub store_errors: IntCounter,
    pub dropped: IntCounterVec,
}

impl WorkerMetrics {
    pub fn new(role: &str) -> Self {
        match FAMILIES.as_ref() {
            Some(f) => Self {
                tick_duration: f.tick.with_label_values(&[role]),
                txn_size: f.txn_size.with_label_values(&[role]),
                txn_duration: f.txn_duration.with_label_values(&[role]),
                txn_ops: f.txn_ops.with_label_values(&[role]),
                conflicts: f.conflicts.with_label_values(&[role]),
                resyncs: f.resyncs.with_label_values(&[role]),
                updates_applied: f.updates.with_label_values(&[role]),
                store_errors: f.store_errors.with_label_values(&[role]),
                dropped: f.dropped.clone(),
            },
            // Registration can only fail on a name clash; metrics must never stop the worker,
            // so fall back to unregistered collectors.
            None => Self::unregistered(),
        }
    }

    fn unregistered() -> Self {
        let h = || Histogram::with_opts(prometheus::HistogramOpts::new("unregistered", "-"));
        let c = || IntCounter::new("unregistered", "-");
        let hist = h().unwrap_or_else(|_| unreachable_metric());
        let ctr = c().unwrap_or_else(|_| unreachable_metric());
        Self {
            tick_duration: hist.clone(),
            txn_size: hist.clone(),
            txn_duration: hist.clone(),
            txn_ops: hist,
            conflicts: ctr.clone(),
            resyncs: ctr.clone(),
            updates_applied: ctr.clone(),
            store_errors: ctr,
            dropped: IntCounterVec::new(
                prometheus::Opts::new("unregistered", "-"),
                &["role", "reason"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
        }
    }
}

/// Constructing a collector with a constant, valid name and help cannot fail.
fn unreachable_metric<T>() -> T {
    unreachable!("constant metric options are valid")
}
