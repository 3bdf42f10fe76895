//! `Owner::tick` at the tiers of target-design §10 (issue #7): steady state with 1 % of the
//! task positions changed since the last tick, and full churn (every position changed).
//! Only the tick is timed; applying the churn to the snapshot is not (see `snapshot_apply`).
//!
//! `cargo bench --bench owner_tick`; CI smoke: `RCDC_BENCH_QUICK=1 cargo bench --bench owner_tick`.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rcdc::owner::tick::{Owner, OwnerConfig, OwnerEffect, OwnerEffectResult, OwnerInput};
use rcdc_state::GlobalState;

/// An owner that has listed every changefeed's tables and settled on `state`.
fn settled_owner(tier: Tier, state: &mut GlobalState) -> (Owner, u64) {
    let mut owner = Owner::new(OwnerConfig {
        flush_interval_ms: 0,
        ..Default::default()
    });
    let mut now = 1_000;
    let mut results = vec![];
    for _ in 0..6 {
        now += 100;
        let out = owner.tick(
            state,
            &OwnerInput {
                now_ms: now,
                results: std::mem::take(&mut results),
                ..Default::default()
            },
        );
        for e in out.effects {
            match e {
                OwnerEffect::ListTables { changefeed, .. } => {
                    let f: usize = changefeed.as_str()[3..].parse().unwrap_or(0);
                    results.push(OwnerEffectResult::Tables {
                        changefeed,
                        tables: tables_of(tier, f),
                    });
                }
                OwnerEffect::FetchDdl { changefeed, after } => {
                    results.push(OwnerEffectResult::Ddl {
                        changefeed,
                        after,
                        next: None,
                        upto: rcdc_state::Ts(u64::MAX / 2),
                    })
                }
                _ => {}
            }
        }
        state.clear_changes();
    }
    (owner, now)
}

/// What the EtcdWorker would do with the tick's writes (untimed): apply them, so the next
/// tick sees its own status writes like on a real cluster.
fn commit(state: &mut GlobalState, groups: &[rcdc_state::PatchGroup]) {
    for g in groups {
        for p in &g.patches {
            let old = old_value(state, &p.key);
            if let Ok(rcdc_state::PatchOutcome::Put(v)) = p.apply(old.as_deref()) {
                state.apply(&p.key, Some(&v));
            }
        }
    }
}

fn old_value(state: &GlobalState, key: &str) -> Option<Vec<u8>> {
    let id = key.strip_prefix("/tidb/cdc/job/")?;
    let status = state.changefeed(&id.into())?.status.as_ref()?;
    rcdc_state::model::encode(status).ok()
}

/// Times `iters` ticks, each after `changes` position updates (untimed).
#[allow(clippy::disallowed_methods)] // the bench's own stopwatch
fn run(
    owner: &mut Owner,
    state: &mut GlobalState,
    keys: &[String],
    changes: usize,
    now: &mut u64,
    walk: &mut Walk,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        *now += 200;
        let ts = START + *now;
        for _ in 0..changes {
            let k = &keys[walk.next(keys.len())];
            state.apply(k, Some(&position(ts)));
        }
        let input = OwnerInput {
            now_ms: *now,
            ..Default::default()
        };
        let t = Instant::now();
        let out = owner.tick(state, &input);
        total += t.elapsed();
        state.clear_changes();
        commit(state, &out.groups);
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("owner_tick");
    for tier in tiers().into_iter().chain([C1000X10]) {
        let (mut state, keys) = steady(tier);
        let (mut owner, mut now) = settled_owner(tier, &mut state);
        let mut walk = Walk::new(7);
        // 1 % of the task positions; and, separately, the same absolute number of changes as
        // 1 % of tier S (for the L/S ratio at equal churn), and full churn.
        let one_pct = (keys.len() / 100).max(1);
        let cases = [
            ("steady_1pct", one_pct),
            ("equal_churn_30", 30.min(keys.len())),
            ("full_churn", keys.len()),
        ];
        for (case, changes) in cases {
            if tier.name == "L" && case == "full_churn" {
                // A million untimed updates per iteration: keep the sample count minimal.
                g.sample_size(10).measurement_time(Duration::from_secs(1));
            }
            g.bench_with_input(
                BenchmarkId::new(case, tier.name),
                &changes,
                |b, &changes| {
                    b.iter_custom(|iters| {
                        run(
                            &mut owner, &mut state, &keys, changes, &mut now, &mut walk, iters,
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = criterion(); targets = bench }
criterion_main!(benches);
