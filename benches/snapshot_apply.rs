//! GlobalState::apply throughput (target-design §10: ≥ 1,000,000 updates/s) on TiCDC-shaped
//! values: a steady stream of TaskPosition updates over 1,000 changefeeds × 10 captures, plus
//! a TaskStatus-heavy mix. The full tiered suite is issue #7; this is the first figure.
//!
//! `cargo bench --bench snapshot_apply`; quick smoke: `cargo bench --bench snapshot_apply -- --quick`.

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcdc_state::GlobalState;

fn position(i: u64) -> Vec<u8> {
    format!(
        r#"{{"checkpoint-ts":{},"resolved-ts":{},"count":0,"error":null}}"#,
        425908869000000000u64 + i,
        425908870000000000u64 + i
    )
    .into_bytes()
}

fn task_status(tables: usize) -> Vec<u8> {
    let body: Vec<String> = (0..tables)
        .map(|t| {
            format!(
                r#""{}":{{"start-ts":425908866286305281,"mark-table-id":0}}"#,
                100 + t
            )
        })
        .collect();
    format!(
        r#"{{"tables":{{{}}},"operation":null,"admin-job-type":0}}"#,
        body.join(",")
    )
    .into_bytes()
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("global_state_apply");
    let (changefeeds, captures) = (1_000, 10);
    let keys: Vec<String> = (0..changefeeds * captures)
        .map(|i| {
            format!(
                "/tidb/cdc/task/position/capture-{}/cf-{}",
                i % captures,
                i / captures
            )
        })
        .collect();
    let updates: Vec<(String, Vec<u8>)> = (0..10_000u64)
        .map(|i| (keys[i as usize % keys.len()].clone(), position(i)))
        .collect();
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.bench_function(BenchmarkId::new("task_position", "1000cf_x_10cap"), |b| {
        let mut state = GlobalState::default();
        b.iter(|| {
            for (k, v) in &updates {
                state.apply(k, Some(v));
            }
        })
    });
    let status = task_status(10);
    let status_updates: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|i| {
            (
                format!(
                    "/tidb/cdc/task/status/capture-{}/cf-{}",
                    i % captures,
                    i / captures % changefeeds
                ),
                status.clone(),
            )
        })
        .collect();
    g.bench_function(
        BenchmarkId::new("task_status_10_tables", "1000cf_x_10cap"),
        |b| {
            let mut state = GlobalState::default();
            b.iter(|| {
                for (k, v) in &status_updates {
                    state.apply(k, Some(v));
                }
            })
        },
    );
    g.finish();
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`), 0 if unknown.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Snapshot memory per table at each tier (target ≤ 1 KiB): the RSS growth from building
/// the tier's steady state, divided by its tables. Printed, not timed.
fn memory_per_table(_: &mut Criterion) {
    for tier in common::tiers() {
        let before = rss_bytes();
        let (state, keys) = common::steady(tier);
        let after = rss_bytes();
        let per_table = after.saturating_sub(before) as f64 / tier.tables as f64;
        println!(
            "snapshot memory, tier {} ({} captures, {} changefeeds, {} tables, {} task positions): {:.0} bytes/table (RSS +{} MiB)",
            tier.name,
            tier.captures,
            tier.changefeeds,
            tier.tables,
            keys.len(),
            per_table,
            after.saturating_sub(before) >> 20
        );
        drop(state);
    }
}

criterion_group! { name = benches; config = common::criterion(); targets = bench_apply, memory_per_table }
criterion_main!(benches);
