//! `ProcessorManager::tick` for one capture holding 1,000 / 10,000 / 100,000 tables (issue
//! #7; target ≤ 1 ms at 10,000): steady (every pipeline running and reported, positions
//! moving), and a burst of 1,000 add-table operations arriving in one tick.
//!
//! `cargo bench --bench processor_tick`; CI smoke: `RCDC_BENCH_QUICK=1 cargo bench --bench processor_tick`.

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rcdc::processor::tick::{Pipelines, ProcessorInput, TablePipelineState, TableProgress};
use rcdc::processor::{ProcessorConfig, ProcessorManager};
use rcdc_state::{CaptureId, ChangefeedId, GlobalState, TableId, Ts};

const CHANGEFEEDS: usize = 10;

/// One capture holding `tables` tables over 10 changefeeds, all running.
fn state(tables: usize, with_adds: usize) -> (GlobalState, Pipelines) {
    let mut s = GlobalState::default();
    s.apply(
        "/tidb/cdc/capture/me",
        Some(br#"{"id":"me","address":"me:8300","version":"v"}"#),
    );
    let per_cf = tables / CHANGEFEEDS;
    let mut pipelines = Pipelines::new();
    for f in 0..CHANGEFEEDS {
        let info = format!(
            r#"{{"sink-uri":"blackhole://","start-ts":{START},"state":"normal","config":{{}}}}"#
        );
        s.apply(
            &format!("/tidb/cdc/changefeed/info/{}", cf(f)),
            Some(info.as_bytes()),
        );
        // Without its status a changefeed is not active and the processor only cancels.
        let status = format!(
            r#"{{"resolved-ts":{},"checkpoint-ts":{},"admin-job-type":0}}"#,
            START + 1,
            START + 1
        );
        s.apply(&format!("/tidb/cdc/job/{}", cf(f)), Some(status.as_bytes()));
        let mut body: Vec<String> = (0..per_cf)
            .map(|t| {
                format!(
                    r#""{}":{{"start-ts":{START},"mark-table-id":0}}"#,
                    f * per_cf + t + 1
                )
            })
            .collect();
        let mut ops = vec![];
        if f == 0 {
            for a in 0..with_adds {
                let t = tables + a + 1;
                body.push(format!(r#""{t}":{{"start-ts":{START},"mark-table-id":0}}"#));
                ops.push(format!(
                    r#""{t}":{{"delete":false,"boundary_ts":{START},"status":0}}"#
                ));
            }
        }
        let status = format!(
            r#"{{"tables":{{{}}},"operation":{{{}}},"admin-job-type":0}}"#,
            body.join(","),
            ops.join(",")
        );
        s.apply(
            &format!("/tidb/cdc/task/status/me/{}", cf(f)),
            Some(status.as_bytes()),
        );
        s.apply(
            &format!("/tidb/cdc/task/position/me/{}", cf(f)),
            Some(&position(START + 1)),
        );
        for t in 0..per_cf {
            pipelines.insert(
                (
                    ChangefeedId::from(cf(f).as_str()),
                    TableId((f * per_cf + t + 1) as i64),
                ),
                TableProgress {
                    resolved_ts: Ts(START + 2),
                    checkpoint_ts: Ts(START + 2),
                    state: TablePipelineState::Running,
                    rows: 0,
                },
            );
        }
    }
    s.clear_changes();
    (s, pipelines)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("processor_tick");
    let sizes: &[usize] = if quick() {
        &[1_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for &tables in sizes {
        let (s, mut pipelines) = state(tables, 0);
        let mut pm = ProcessorManager::new(CaptureId::new("me"), ProcessorConfig::default());
        let mut now = 1_000u64;
        let first = pm.tick(
            &s,
            &ProcessorInput {
                now_ms: now,
                tables: &pipelines,
            },
        );
        // Guard the scenario: a steady capture neither starts nor stops anything.
        assert!(
            first.commands.is_empty(),
            "steady state issues commands: {:?}",
            &first.commands[..first.commands.len().min(3)]
        );
        g.bench_with_input(BenchmarkId::new("steady", tables), &tables, |b, _| {
            b.iter(|| {
                now += 100;
                // Pipelines advanced since the last tick (the runtime's report).
                if let Some(p) = pipelines.values_mut().next() {
                    p.checkpoint_ts = Ts(START + now);
                    p.resolved_ts = Ts(START + now);
                }
                pm.tick(
                    &s,
                    &ProcessorInput {
                        now_ms: now,
                        tables: &pipelines,
                    },
                )
            })
        });
        // The same with rows flowing: every pipeline reports rows written, so the visited
        // changefeed also sums its row count (`TaskPosition.count`) over its tables.
        let mut with_rows = pipelines.clone();
        for (i, p) in with_rows.values_mut().enumerate() {
            p.rows = 1_000 + i as u64;
        }
        let mut pm = ProcessorManager::new(CaptureId::new("me"), ProcessorConfig::default());
        pm.tick(
            &s,
            &ProcessorInput {
                now_ms: now,
                tables: &with_rows,
            },
        );
        g.bench_with_input(
            BenchmarkId::new("steady_with_rows", tables),
            &tables,
            |b, _| {
                b.iter(|| {
                    now += 100;
                    if let Some(p) = with_rows.values_mut().next() {
                        p.checkpoint_ts = Ts(START + now);
                        p.resolved_ts = Ts(START + now);
                        p.rows += 10;
                    }
                    pm.tick(
                        &s,
                        &ProcessorInput {
                            now_ms: now,
                            tables: &with_rows,
                        },
                    )
                })
            },
        );
        let (s, pipelines) = state(tables, 1_000);
        g.bench_with_input(
            BenchmarkId::new("burst_1000_adds", tables),
            &tables,
            |b, _| {
                b.iter_batched(
                    || ProcessorManager::new(CaptureId::new("me"), ProcessorConfig::default()),
                    |mut pm| {
                        let out = pm.tick(
                            &s,
                            &ProcessorInput {
                                now_ms: 2_000,
                                tables: &pipelines,
                            },
                        );
                        debug_assert_eq!(out.commands.len(), 1_000, "every add starts");
                        out
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group! { name = benches; config = criterion(); targets = bench }
criterion_main!(benches);
