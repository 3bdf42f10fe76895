//! The EtcdWorker end to end against a real etcd started by the bench, versus raw
//! `etcd-client` txns of the same size in the same run (issue #7; target: the worker commits
//! at least 80 % of the raw throughput). Each round writes 16 keys in one txn: raw awaits
//! the txn; the worker ticks, commits the reactor's group (compares included) and waits for
//! its watch to deliver the write before the next tick.
//!
//! `cargo bench --bench etcd_txn`; CI smoke: `RCDC_BENCH_QUICK=1 cargo bench --bench etcd_txn`.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{EtcdWorker, Group, Reactor, TickContext, TickOutput, WorkerConfig};
use rcdc_state::{Edit, GlobalState, Patch};

const KEYS_PER_TXN: usize = 16;

/// Writes one group of `KEYS_PER_TXN` puts per tick until `target` rounds are done.
struct Writer {
    rounds: Arc<AtomicU64>,
    target: u64,
}

impl Reactor for Writer {
    type State = GlobalState;
    type Patch = Patch;
    fn tick(&mut self, _: &GlobalState, _: &TickContext) -> TickOutput<Patch> {
        let n = self.rounds.fetch_add(1, Ordering::SeqCst);
        if n >= self.target {
            return TickOutput {
                groups: vec![],
                finished: true,
            };
        }
        let patches = (0..KEYS_PER_TXN)
            .map(|k| {
                Patch::new(
                    format!("/bench/worker/k{k}"),
                    Edit::Put {
                        value: format!("{n}"),
                    },
                )
            })
            .collect();
        TickOutput {
            groups: vec![Group {
                label: "bench".into(),
                patches,
            }],
            finished: false,
        }
    }
}

#[allow(clippy::disallowed_methods)] // the bench's own stopwatch
fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let etcd = rt.block_on(EtcdHarness::start());
    let store = rt.block_on(etcd.store());
    let mut g = c.benchmark_group("etcd_txn");
    g.throughput(Throughput::Elements(KEYS_PER_TXN as u64));
    g.bench_function(BenchmarkId::new("raw_etcd_client", KEYS_PER_TXN), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for n in 0..iters {
                    let txn = rcdc_reactor::store::Txn {
                        success: (0..KEYS_PER_TXN)
                            .map(|k| rcdc_reactor::store::TxnOp::Put {
                                key: format!("/bench/raw/k{k}"),
                                value: format!("{n}").into_bytes(),
                                lease: 0,
                            })
                            .collect(),
                        ..Default::default()
                    };
                    store.txn(txn).await.expect("txn");
                }
                t.elapsed()
            })
        })
    });
    // The worker rate-limits ticks to one per `tick_interval`: at 1 ms (above the ~0.7 ms
    // round trip) a round waits for the interval, which measures the limiter; at 10 µs the
    // round is the worker's own path (tick, txn with compares, wait for the watch echo).
    for (name, interval) in [
        ("etcd_worker", Duration::from_millis(1)),
        ("etcd_worker_unthrottled", Duration::from_micros(10)),
    ] {
        g.bench_function(BenchmarkId::new(name, KEYS_PER_TXN), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let rounds = Arc::new(AtomicU64::new(0));
                    let mut config =
                        WorkerConfig::new("bench", "/bench/worker", "/bench/worker/meta/counter");
                    config.tick_interval = interval;
                    let worker = EtcdWorker::new(
                        store.clone(),
                        Writer {
                            rounds: rounds.clone(),
                            target: iters,
                        },
                        GlobalState::default(),
                        config,
                    );
                    let t = Instant::now();
                    worker.run(std::future::pending()).await.expect("worker");
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
    drop(etcd);
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
