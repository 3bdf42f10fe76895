//! Patch application + txn building for a tick's output (issue #7): the owner's writes for
//! a tick in which 1 % of a tier's changefeeds advance (one status patch per group, the
//! semantic edit applied to the cached JSON), and a scheduler burst of 1,000 add-table
//! patches to 10 task statuses, planned into etcd-sized txns as the EtcdWorker does.
//!
//! `cargo bench --bench commit_plan`; CI smoke: `RCDC_BENCH_QUICK=1 cargo bench --bench commit_plan`.

#[path = "common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcdc_reactor::store::KeyValue;
use rcdc_reactor::worker::plan_txns;
use rcdc_reactor::{Group, TxnLimits};
use rcdc_state::patch::{StatusEdit, TaskStatusEdit};
use rcdc_state::{Edit, Patch, Revision, TableId, Ts};

fn kv(key: String, value: Vec<u8>, rev: i64) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: Revision(rev),
        mod_revision: Revision(rev),
        lease: 0,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_plan");
    let limits = TxnLimits::default();
    for tier in tiers() {
        let n = (tier.changefeeds / 100).max(1);
        let listing: Vec<KeyValue> = (0..tier.changefeeds)
            .map(|f| {
                let v = format!(
                    r#"{{"resolved-ts":{0},"checkpoint-ts":{0},"admin-job-type":0}}"#,
                    START + 1
                );
                kv(
                    format!("/tidb/cdc/job/{}", cf(f)),
                    v.into_bytes(),
                    f as i64 + 1,
                )
            })
            .collect();
        let groups = || -> Vec<Group<Patch>> {
            (0..n)
                .map(|f| Group {
                    label: format!("changefeed/{}/progress", cf(f)),
                    patches: vec![Patch::new(
                        format!("/tidb/cdc/job/{}", cf(f)),
                        Edit::ChangefeedStatus(StatusEdit::Advance {
                            resolved_ts: Ts(START + 9),
                            checkpoint_ts: Ts(START + 9),
                        }),
                    )],
                })
                .collect()
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("status_writes_1pct", tier.name),
            &n,
            |b, _| {
                b.iter_batched(
                    groups,
                    |gs| plan_txns(listing.clone(), gs, &limits),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    // A burst: 1,000 add-table patches over 10 task statuses of 100 tables each.
    let listing: Vec<KeyValue> = (0..10)
        .map(|c| {
            let tables: Vec<String> = (0..100)
                .map(|t| {
                    format!(
                        r#""{}":{{"start-ts":{START},"mark-table-id":0}}"#,
                        c * 100 + t
                    )
                })
                .collect();
            let v = format!(
                r#"{{"tables":{{{}}},"operation":null,"admin-job-type":0}}"#,
                tables.join(",")
            );
            kv(
                format!("/tidb/cdc/task/status/{}/cf-0", capture(c)),
                v.into_bytes(),
                c as i64 + 1,
            )
        })
        .collect();
    let burst = || -> Vec<Group<Patch>> {
        vec![Group {
            label: "changefeed/cf-0/schedule".into(),
            patches: (0..1_000)
                .map(|t| {
                    Patch::new(
                        format!("/tidb/cdc/task/status/{}/cf-0", capture(t % 10)),
                        Edit::TaskStatus(TaskStatusEdit::AddTable {
                            table: TableId(10_000 + t as i64),
                            start_ts: Ts(START),
                            boundary_ts: Ts(START),
                        }),
                    )
                })
                .collect(),
        }]
    };
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("add_table_burst_1000", |b| {
        b.iter_batched(
            burst,
            |gs| plan_txns(listing.clone(), gs, &limits),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! { name = benches; config = criterion(); targets = bench }
criterion_main!(benches);
