//! A first measurement of `Owner::tick` in steady state: 1,000 changefeeds × 10 captures ×
//! 10 tables each (10,000 tables), everything dispatched, no operations in flight, positions
//! reported. The tiered S/M/L suite with churn is issue #7.
//!
//! `cargo bench --bench owner_tick`

use std::collections::BTreeSet;

use criterion::{criterion_group, criterion_main, Criterion};
use rcdc::owner::tick::{Owner, OwnerConfig, OwnerEffectResult, OwnerInput};
use rcdc_state::{GlobalState, TableId};

const CHANGEFEEDS: usize = 1_000;
const CAPTURES: usize = 10;
const TABLES: i64 = 10;

fn steady_state() -> GlobalState {
    let mut s = GlobalState::default();
    for c in 0..CAPTURES {
        let v = format!(r#"{{"id":"capture-{c}","address":"10.0.0.{c}:8300","version":"v5.1.0"}}"#);
        s.apply(
            &format!("/tidb/cdc/capture/capture-{c}"),
            Some(v.as_bytes()),
        );
    }
    for f in 0..CHANGEFEEDS {
        let info = r#"{"sink-uri":"blackhole://","start-ts":1000,"state":"normal","config":{}}"#;
        s.apply(
            &format!("/tidb/cdc/changefeed/info/cf-{f}"),
            Some(info.as_bytes()),
        );
        s.apply(
            &format!("/tidb/cdc/job/cf-{f}"),
            Some(br#"{"resolved-ts":5000,"checkpoint-ts":5000,"admin-job-type":0}"#),
        );
        for c in 0..CAPTURES {
            let tables: Vec<String> = (1..=TABLES)
                .filter(|t| (*t as usize + f) % CAPTURES == c)
                .map(|t| format!(r#""{t}":{{"start-ts":1000,"mark-table-id":0}}"#))
                .collect();
            if tables.is_empty() {
                continue;
            }
            let status = format!(
                r#"{{"tables":{{{}}},"operation":null,"admin-job-type":0}}"#,
                tables.join(",")
            );
            s.apply(
                &format!("/tidb/cdc/task/status/capture-{c}/cf-{f}"),
                Some(status.as_bytes()),
            );
            s.apply(
                &format!("/tidb/cdc/task/position/capture-{c}/cf-{f}"),
                Some(br#"{"checkpoint-ts":5000,"resolved-ts":5000,"count":0,"error":null}"#),
            );
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let state = steady_state();
    let mut owner = Owner::new(OwnerConfig {
        flush_interval_ms: 200,
        ..Default::default()
    });
    let tables: BTreeSet<TableId> = (1..=TABLES).map(TableId).collect();
    let results = (0..CHANGEFEEDS)
        .map(|f| OwnerEffectResult::Tables {
            changefeed: format!("cf-{f}").into(),
            tables: tables.clone(),
        })
        .collect();
    owner.tick(
        &state,
        &OwnerInput {
            now_ms: 1,
            results,
            ..Default::default()
        },
    );
    let mut now = 2;
    let warm = owner.tick(
        &state,
        &OwnerInput {
            now_ms: now,
            ..Default::default()
        },
    );
    assert!(
        warm.groups.is_empty(),
        "steady state writes nothing: {:?}",
        warm.groups.first()
    );
    c.bench_function("owner_tick/steady/1000cf_10cap_10000tables", |b| {
        b.iter(|| {
            now += 1;
            owner.tick(
                &state,
                &OwnerInput {
                    now_ms: now,
                    ..Default::default()
                },
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
