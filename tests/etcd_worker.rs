//! EtcdWorker scenarios (target-design §4), each run on a real etcd started by the test and on
//! the in-process MVCC store. Every scenario polls its condition to a deadline.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use rcdc_reactor::store::{MetaStore, Txn, TxnOp};
use rcdc_reactor::{DropReason, GroupOutcome, TickOutput, WorkerError, WorkerStats};
use rcdc_state::Revision;

/// §4.1: the first tick sees the loaded snapshot; later external writes reach the state.
async fn snapshot_then_watch_stay_consistent<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/consistent/";
    for i in 0..50 {
        put(&store, &format!("{p}k{i:02}"), &i.to_string()).await;
    }
    let seen = shared(Vec::<KvState>::new());
    let seen2 = seen.clone();
    let reactor = FnReactor::new(move |_, s: &KvState, _| {
        seen2.lock().push(s.clone());
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "first tick", || async { !seen.lock().is_empty() }).await;
    assert_eq!(
        seen.lock()[0].kv.len(),
        50,
        "the first tick sees the whole snapshot"
    );

    for i in 0..100 {
        let key = format!("{p}k{:02}", i % 70);
        if i % 3 == 0 {
            store
                .txn(Txn {
                    success: vec![TxnOp::Delete { key }],
                    ..Txn::default()
                })
                .await
                .expect("delete");
        } else {
            put(&store, &key, &format!("v{i}")).await;
        }
    }
    let want = list(&store, p).await;
    wait_until(DEADLINE, "state equals the store", || async {
        seen.lock().last().map(|s| s.kv == want).unwrap_or(false)
    })
    .await;
    w.stop().await.expect("clean stop");
}
on_both_backends!(snapshot_then_watch_stay_consistent);

/// §4.2: every tick sees the worker's own previous write.
async fn own_writes_are_visible_to_the_next_tick<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/own-writes/";
    let violations = shared(Vec::<String>::new());
    let v2 = violations.clone();
    let reactor = FnReactor::new(move |n, s: &KvState, _| {
        if n > 0 && s.int(&format!("{p}k")) != Some(n as i64 - 1) {
            v2.lock()
                .push(format!("tick {n} saw {:?}", s.int(&format!("{p}k"))));
        }
        if n >= 40 {
            return TickOutput {
                groups: vec![],
                finished: true,
            };
        }
        out(vec![group(
            "w",
            vec![TestPatch::Put(format!("{p}k"), n.to_string())],
        )])
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    let exit = tokio::time::timeout(DEADLINE, w.join())
        .await
        .expect("finishes in time");
    assert_eq!(exit, Ok(rcdc_reactor::WorkerExit::Finished));
    assert!(violations.lock().is_empty(), "{:?}", violations.lock());
    assert_eq!(
        get(&store, &format!("{p}k")).await.map(|kv| kv.value),
        Some(b"39".to_vec())
    );
}
on_both_backends!(own_writes_are_visible_to_the_next_tick);

/// §4.3: a conflicting write is detected and the semantic patch re-applied to the newer value.
async fn a_conflict_re_applies_the_patch_to_the_newer_value<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let p = "/t/conflict/";
    put(&store, &format!("{p}n"), "0").await;
    let other = store.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, _| {
        if n == 0 {
            // Another writer lands between this tick's decision and its commit.
            interfere(put(&other, &format!("{p}n"), "100"));
            return out(vec![group(
                "incr",
                vec![TestPatch::Add {
                    key: format!("{p}n"),
                    delta: 1,
                    min: 0,
                }],
            )]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(
        DEADLINE,
        "the increment lands on the newer value",
        || async {
            get(&store, &format!("{p}n")).await.map(|kv| kv.value) == Some(b"101".to_vec())
        },
    )
    .await;
    assert!(
        WorkerStats::get(&w.stats.conflicts) >= 1,
        "the conflict was detected, not overwritten"
    );
    w.stop().await.expect("clean stop");
}
on_both_backends!(a_conflict_re_applies_the_patch_to_the_newer_value);

/// §4.3: a key created and deleted again by another writer between our read and our write
/// has mod revision 0 both times; only the delete counter reveals the race.
async fn a_delete_recreate_race_is_caught_by_the_delete_counter<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let p = "/t/aba/";
    let counter = format!("{p}meta/delete-counter");
    let other = store.clone();
    let c2 = counter.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, _| {
        if n == 0 {
            interfere(async {
                put(&other, &format!("{p}x"), "theirs").await;
                // An rcdc-style delete: bumps the counter in the same txn.
                let txn = Txn {
                    success: vec![
                        TxnOp::Delete {
                            key: format!("{p}x"),
                        },
                        TxnOp::Put {
                            key: c2.clone(),
                            value: b"1".to_vec(),
                            lease: 0,
                        },
                    ],
                    ..Txn::default()
                };
                other.txn(txn).await.expect("delete");
            });
            return out(vec![group(
                "create",
                vec![TestPatch::Create(format!("{p}x"), "mine".into())],
            )]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "our create lands after the race", || async {
        get(&store, &format!("{p}x")).await.map(|kv| kv.value) == Some(b"mine".to_vec())
    })
    .await;
    assert_eq!(
        WorkerStats::get(&w.stats.conflicts),
        1,
        "exactly the counter compare failed once"
    );
    w.stop().await.expect("clean stop");
}
on_both_backends!(a_delete_recreate_race_is_caught_by_the_delete_counter);

/// §4.4: 300 one-key groups go out in 3 txns of at most 128 ops.
async fn groups_are_batched_across_the_128_op_limit<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let p = "/t/batch/";
    let (_, start) = store.get_prefix(p).await.expect("list");
    let reactor = FnReactor::new(move |n, _s: &KvState, _| {
        if n == 0 {
            return out((0..300)
                .map(|i| {
                    group(
                        &format!("g{i}"),
                        vec![TestPatch::Put(format!("{p}k{i:03}"), "v".into())],
                    )
                })
                .collect());
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    // The worker counts a txn once its answer is in, a moment after the keys are visible.
    wait_until(DEADLINE, "all 300 keys written and counted", || async {
        list(&store, p).await.len() == 300 && WorkerStats::get(&w.stats.txns_committed) >= 3
    })
    .await;
    assert_eq!(WorkerStats::get(&w.stats.txns_committed), 3);
    let (_, end) = store.get_prefix(p).await.expect("list");
    assert_eq!(end.0 - start.0, 3, "one revision per txn");
    w.stop().await.expect("clean stop");
}
on_both_backends!(groups_are_batched_across_the_128_op_limit);

/// §4.4: a group over the limits is dropped with an error naming it; others still land.
async fn an_oversize_group_is_reported_by_name<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/oversize/";
    let reported = shared(Vec::<String>::new());
    let r2 = reported.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, ctx| {
        for (index, reason) in ctx.dropped() {
            if let DropReason::TooLarge(msg) = reason {
                r2.lock().push(format!("group {index}: {msg}"));
            }
        }
        if n == 0 {
            let big = (0..200)
                .map(|i| TestPatch::Put(format!("{p}big{i}"), "v".into()))
                .collect();
            return out(vec![
                group("cleanup/cf-huge", big),
                group("fine", vec![TestPatch::Put(format!("{p}fine"), "v".into())]),
            ]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(
        DEADLINE,
        "the drop is reported to the next tick",
        || async { !reported.lock().is_empty() },
    )
    .await;
    let msg = reported.lock()[0].clone();
    assert!(
        msg.starts_with("group 0:") && msg.contains("\"cleanup/cf-huge\""),
        "{msg}"
    );
    let keys = list(&store, p).await;
    assert_eq!(
        keys.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{p}fine")]
    );
    w.stop().await.expect("clean stop");
}
on_both_backends!(an_oversize_group_is_reported_by_name);

/// §3: the next tick learns the outcome of every group of the previous one, in order:
/// committed, dropped by a precondition, nothing to write (committed), committed.
async fn every_group_outcome_reaches_the_next_tick<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let p = "/t/outcomes/";
    put(&store, &format!("{p}taken"), "x").await;
    put(&store, &format!("{p}same"), "v").await;
    let seen = shared(Vec::<Vec<GroupOutcome>>::new());
    let s2 = seen.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, ctx| {
        s2.lock().push(ctx.previous.clone());
        if n == 0 {
            return out(vec![
                group("a", vec![TestPatch::Put(format!("{p}a"), "1".into())]),
                group(
                    "b",
                    vec![TestPatch::Create(format!("{p}taken"), "y".into())],
                ),
                group("c", vec![TestPatch::Put(format!("{p}same"), "v".into())]),
                group("d", vec![]),
            ]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "the second tick", || async {
        seen.lock().len() >= 2
    })
    .await;
    let reported = seen.lock()[1].clone();
    assert_eq!(reported.len(), 4, "{reported:?}");
    assert_eq!(reported[0], GroupOutcome::Committed);
    assert!(
        matches!(
            &reported[1],
            GroupOutcome::Dropped(DropReason::Precondition(_))
        ),
        "{reported:?}"
    );
    assert_eq!(reported[2], GroupOutcome::Committed, "a no-op group");
    assert_eq!(reported[3], GroupOutcome::Committed, "an empty group");
    assert!(seen.lock()[0].is_empty(), "the first tick has no previous");
    w.stop().await.expect("clean stop");
}
on_both_backends!(every_group_outcome_reaches_the_next_tick);

/// Issue #11 item 8: a txn the store refuses drops its front group as `Rejected` (it was
/// labelled `TooLarge`, which it is not: the group fits our limits, the server's are lower);
/// the rest commit.
#[tokio::test]
async fn a_refused_txn_is_reported_as_rejected() {
    let store = rcdc_reactor::store::mem::MemStore::new();
    let p = "/t/rejected/";
    store.fail_next_txns(1, rcdc_reactor::store::mem::FailMode::Rejected);
    let seen = shared(Vec::<Vec<GroupOutcome>>::new());
    let s2 = seen.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, ctx| {
        s2.lock().push(ctx.previous.clone());
        if n == 0 {
            return out(vec![
                group("first", vec![TestPatch::Put(format!("{p}a"), "1".into())]),
                group("second", vec![TestPatch::Put(format!("{p}b"), "1".into())]),
            ]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "the second tick", || async {
        seen.lock().len() >= 2
    })
    .await;
    let reported = seen.lock()[1].clone();
    assert!(
        matches!(&reported[0], GroupOutcome::Dropped(DropReason::Rejected(m)) if m.contains("too large")),
        "{reported:?}"
    );
    assert_eq!(reported[1], GroupOutcome::Committed, "{reported:?}");
    assert!(get(&store, &format!("{p}b")).await.is_some());
    w.stop().await.expect("clean stop");
}

/// Issue #11 item 3: a delete counter written in a non-canonical form (`007`, garbage) by
/// another tool must not make every txn conflict forever.
async fn a_non_canonical_delete_counter_does_not_stall_commits<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let p = "/t/counter-form/";
    put(&store, &format!("{p}meta/delete-counter"), "007").await;
    put(&store, &format!("{p}old"), "x").await;
    let reactor = FnReactor::new(move |n, _s: &KvState, _| match n {
        0 => out(vec![group(
            "del",
            vec![TestPatch::Delete(format!("{p}old"))],
        )]),
        1 => out(vec![group(
            "put",
            vec![TestPatch::Put(format!("{p}new"), "1".into())],
        )]),
        _ => TickOutput::default(),
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "both writes land", || async {
        get(&store, &format!("{p}new")).await.is_some()
            && get(&store, &format!("{p}old")).await.is_none()
    })
    .await;
    assert_eq!(WorkerStats::get(&w.stats.conflicts), 0);
    w.stop().await.expect("clean stop");
}
on_both_backends!(a_non_canonical_delete_counter_does_not_stall_commits);

/// §4.6: a watch whose start revision was compacted makes the worker re-list and converge.
async fn a_compacted_watch_resyncs<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/compact/";
    put(&store, &format!("{p}a"), "1").await;
    let lagging = LaggingStore::new(store.clone(), p);
    let seen = shared(KvState::default());
    let s2 = seen.clone();
    let reactor = FnReactor::new(move |_, s: &KvState, _| {
        *s2.lock() = s.clone();
        TickOutput::default()
    });
    let w = spawn(lagging, reactor, KvState::default(), config(p));
    wait_until(
        DEADLINE,
        "the state has the keys written before the compaction",
        || async { seen.lock().kv.len() == 21 },
    )
    .await;
    assert!(WorkerStats::get(&w.stats.resyncs) >= 1);
    w.stop().await.expect("clean stop");
}
on_both_backends!(a_compacted_watch_resyncs);

/// §4.6: the store goes away (etcd killed; restarted on the same data) and comes back; the
/// worker neither dies nor loses updates, and writes again.
async fn the_worker_survives_a_store_outage<S: MetaStore + Clone>(store: S, faults: &dyn Faults) {
    let p = "/t/outage/";
    put(&store, &format!("{p}before"), "1").await;
    let reactor = FnReactor::new(move |_, s: &KvState, _| {
        if s.kv.contains_key(&format!("{p}after")) && !s.kv.contains_key(&format!("{p}mine")) {
            return out(vec![group(
                "mine",
                vec![TestPatch::Put(format!("{p}mine"), "1".into())],
            )]);
        }
        TickOutput::default()
    });
    let w = spawn(store.clone(), reactor, KvState::default(), config(p));
    wait_until(DEADLINE, "first tick", || async {
        WorkerStats::get(&w.stats.ticks) > 0
    })
    .await;
    faults.outage_begin().await;
    wait_until(DEADLINE, "the worker notices the outage", || async {
        WorkerStats::get(&w.stats.store_errors) > 0
    })
    .await;
    assert!(!w.is_finished(), "a dead store never kills the worker");
    faults.outage_end().await;
    put(&store, &format!("{p}after"), "1").await;
    wait_until(DEADLINE, "the worker writes after the outage", || async {
        get(&store, &format!("{p}mine")).await.is_some()
    })
    .await;
    w.stop().await.expect("clean stop");
}
on_both_backends!(the_worker_survives_a_store_outage);

/// §4.7: once the fence key is gone, the worker stops with `Fenced` and writes nothing more.
async fn a_deposed_owner_cannot_write<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/fence/";
    let election = format!("{p}owner/1234");
    put(&store, &election, "capture-1").await;
    let create_revision = get(&store, &election)
        .await
        .expect("election key")
        .create_revision;
    let deposed = shared(false);
    let d2 = deposed.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, _| {
        if *d2.lock() {
            return out(vec![group(
                "late",
                vec![TestPatch::Put(format!("{p}late"), n.to_string())],
            )]);
        }
        out(vec![group(
            "ok",
            vec![TestPatch::Put(format!("{p}ok"), "1".into())],
        )])
    });
    let mut cfg = config(p);
    cfg.fence = Some(rcdc_reactor::Fence {
        key: election.clone(),
        create_revision,
    });
    let w = spawn(store.clone(), reactor, KvState::default(), cfg);
    wait_until(
        DEADLINE,
        "owner writes while it holds the fence",
        || async { get(&store, &format!("{p}ok")).await.is_some() },
    )
    .await;
    // Another party deletes the election key (session expired, or an operator).
    store
        .txn(Txn {
            success: vec![TxnOp::Delete {
                key: election.clone(),
            }],
            ..Txn::default()
        })
        .await
        .expect("delete");
    *deposed.lock() = true;
    let exit = tokio::time::timeout(DEADLINE, w.join())
        .await
        .expect("worker ends");
    assert_eq!(
        exit,
        Err(WorkerError::Fenced {
            role: "test".into(),
            key: election
        })
    );
    assert!(
        get(&store, &format!("{p}late")).await.is_none(),
        "a deposed owner's write never lands"
    );
}
on_both_backends!(a_deposed_owner_cannot_write);

/// A store whose first watch starts only after more writes and a compaction past its start
/// revision, so the worker's first watch is compacted.
#[derive(Clone)]
struct LaggingStore<S> {
    inner: S,
    prefix: String,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S: MetaStore + Clone> LaggingStore<S> {
    fn new(inner: S, prefix: &str) -> Self {
        Self {
            inner,
            prefix: prefix.to_owned(),
            done: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl<S: MetaStore + Clone> MetaStore for LaggingStore<S> {
    async fn get_prefix(
        &self,
        prefix: &str,
    ) -> Result<(Vec<rcdc_reactor::store::KeyValue>, Revision), rcdc_reactor::store::StoreError>
    {
        self.inner.get_prefix(prefix).await
    }
    async fn watch_prefix(
        &self,
        prefix: &str,
        start: Revision,
    ) -> Result<Box<dyn rcdc_reactor::store::Watch>, rcdc_reactor::store::StoreError> {
        if !self.done.swap(true, Ordering::SeqCst) {
            for i in 0..20 {
                put(&self.inner, &format!("{}late{i}", self.prefix), "x").await;
            }
            let (_, rev) = self.inner.get_prefix(&self.prefix).await?;
            self.inner.compact(rev).await?;
        }
        self.inner.watch_prefix(prefix, start).await
    }
    async fn txn(
        &self,
        txn: Txn,
    ) -> Result<rcdc_reactor::store::TxnResponse, rcdc_reactor::store::StoreError> {
        self.inner.txn(txn).await
    }
    async fn grant_lease(&self, ttl: i64) -> Result<i64, rcdc_reactor::store::StoreError> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive_once(&self, lease: i64) -> Result<i64, rcdc_reactor::store::StoreError> {
        self.inner.keep_alive_once(lease).await
    }
    async fn revoke_lease(&self, lease: i64) -> Result<(), rcdc_reactor::store::StoreError> {
        self.inner.revoke_lease(lease).await
    }
    async fn compact(&self, rev: Revision) -> Result<(), rcdc_reactor::store::StoreError> {
        self.inner.compact(rev).await
    }
}

/// A reactor over the real `GlobalState` that creates a status for every changefeed whose
/// info it can read, like the owner's preflight step, and records what it saw.
struct StatusMaker {
    seen: Shared<Option<rcdc_state::GlobalState>>,
}

impl rcdc_reactor::Reactor for StatusMaker {
    type State = rcdc_state::GlobalState;
    type Patch = rcdc_state::Patch;
    fn tick(
        &mut self,
        state: &Self::State,
        _: &rcdc_reactor::TickContext,
    ) -> TickOutput<rcdc_state::Patch> {
        *self.seen.lock() = Some(state.clone());
        let mut groups = Vec::new();
        for (id, cf) in state.changefeeds() {
            // A broken changefeed is left alone: its info may exist but be unreadable.
            if cf.is_broken() || cf.info.is_none() || cf.status.is_some() {
                continue;
            }
            let mut g = rcdc_state::PatchGroup::new(format!("changefeed/{id}"));
            g.push(
                state.layout().status(id),
                rcdc_state::Edit::ChangefeedStatus(rcdc_state::patch::StatusEdit::Advance {
                    resolved_ts: rcdc_state::Ts(1),
                    checkpoint_ts: rcdc_state::Ts(1),
                }),
            );
            groups.push(g.into());
        }
        TickOutput {
            groups,
            finished: false,
        }
    }
}

/// §4.8: unknown keys are ignored and an undecodable value marks only its changefeed broken;
/// the worker keeps running and serving the other changefeeds.
async fn unknown_keys_and_a_corrupt_value_do_not_stop_the_worker<S: MetaStore + Clone>(
    store: S,
    _f: &dyn Faults,
) {
    let layout = rcdc_state::KeyLayout::new("/t/cdc-corrupt");
    let info = r#"{"sink-uri":"blackhole://","start-ts":5,"config":{},"state":"normal"}"#;
    put(&store, &layout.info(&"good".into()), info).await;
    put(&store, &layout.info(&"bad".into()), "{this is not json").await;
    put(
        &store,
        &format!("{}/meta/__cdc_meta_version", layout.prefix()),
        "1",
    )
    .await;
    put(
        &store,
        &format!("{}/a-key-from-the-future/x", layout.prefix()),
        "?",
    )
    .await;

    let seen = shared(None);
    let reactor = StatusMaker { seen: seen.clone() };
    let cfg = rcdc_reactor::WorkerConfig {
        tick_interval: std::time::Duration::from_millis(5),
        ..rcdc_reactor::WorkerConfig::new("test", &layout.watch_prefix(), &layout.delete_counter())
    };
    let w = spawn(
        store.clone(),
        reactor,
        rcdc_state::GlobalState::new(layout.clone()),
        cfg,
    );
    wait_until(DEADLINE, "the good changefeed gets its status", || async {
        get(&store, &layout.status(&"good".into())).await.is_some()
    })
    .await;

    // More of both while running: the worker must keep serving.
    put(&store, &format!("{}/another/unknown", layout.prefix()), "?").await;
    put(&store, &layout.info(&"late".into()), info).await;
    wait_until(
        DEADLINE,
        "a changefeed created later still gets served",
        || async { get(&store, &layout.status(&"late".into())).await.is_some() },
    )
    .await;

    assert!(
        get(&store, &layout.status(&"bad".into())).await.is_none(),
        "nothing is written for a broken changefeed"
    );
    assert_eq!(
        get(&store, &layout.info(&"bad".into()))
            .await
            .map(|kv| kv.value),
        Some(b"{this is not json".to_vec()),
        "the corrupt value is left as it was: nothing lost"
    );
    let state = seen.lock().clone().expect("ticked");
    let bad = state
        .changefeed(&"bad".into())
        .expect("the broken changefeed stays visible");
    assert!(bad.is_broken());
    assert!(
        bad.corrupt
            .values()
            .any(|c| c.error.contains("changefeed/info/bad")),
        "{:?}",
        bad.corrupt
    );
    assert_eq!(state.unknown_keys().len(), 3, "{:?}", state.unknown_keys());
    assert!(!w.is_finished());
    w.stop().await.expect("clean stop");
}
on_both_backends!(unknown_keys_and_a_corrupt_value_do_not_stop_the_worker);
