//! One conformance suite for both `MetaStore` backends: the real etcd (started by the test from
//! `PATH`, Debian's `etcd-server`) and the in-process `MemStore`. If they disagree, unit tests
//! on `MemStore` would prove nothing about production.
//!
//! Every check is written once, generically over `S: MetaStore`, on its own key prefix, and
//! run against both backends. A few etcd-only tests follow (a dead or restarted etcd, keys that
//! are not UTF-8).
//!
//! Needs the crate's `testing` feature (the real-etcd harness):
//!
//! ```text
//! cargo test -p rcdc-reactor --features testing --test store_conformance
//! ```
//!
//! (CI passes `--all-features`). `reactor/Cargo.toml` marks it `required-features =
//! ["testing"]`, so cargo skips it, visibly, without the feature.

use std::time::Duration;

use rcdc_reactor::store::mem::MemStore;
use rcdc_reactor::store::{
    Compare, CompareTarget, MetaStore, StoreError, Txn, TxnOp, Watch, WatchEvent, WatchMessage,
};
use rcdc_reactor::testing::{wait_until, EtcdHarness};
use rcdc_state::Revision;
use tokio::time::Instant;

/// Upper bound for anything a healthy store should answer.
const DEADLINE: Duration = Duration::from_secs(10);

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.into(),
        lease: 0,
    }
}

fn delete(key: &str) -> TxnOp {
    TxnOp::Delete { key: key.into() }
}

/// Runs an unconditional txn and returns its revision.
async fn run<S: MetaStore>(s: &S, ops: Vec<TxnOp>) -> Revision {
    let resp = s
        .txn(Txn {
            success: ops,
            ..Txn::default()
        })
        .await
        .expect("txn");
    assert!(resp.succeeded, "an unconditional txn succeeds");
    resp.revision
}

async fn next_message(w: &mut Box<dyn Watch>) -> Result<WatchMessage, StoreError> {
    tokio::time::timeout(DEADLINE, w.next())
        .await
        .expect("a watch message in time")
}

/// Waits for the next events message, skipping progress notifications.
async fn next_events(w: &mut Box<dyn Watch>) -> (Revision, Vec<WatchEvent>) {
    loop {
        match next_message(w).await.expect("watch ok") {
            WatchMessage::Events {
                header_revision,
                events,
            } => {
                assert!(!events.is_empty(), "an events message carries events");
                return (header_revision, events);
            }
            WatchMessage::Progress { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Listing, exact-revision compares, absent keys, re-creation, failure-branch reads.
async fn check_revisions_and_compares<S: MetaStore>(s: &S, p: &str) {
    let (a, b, none) = (format!("{p}a"), format!("{p}b"), format!("{p}none"));
    let r1 = run(s, vec![put(&b, "1"), put(&a, "1")]).await;
    // Shares the prefix string minus its trailing slash: not under the prefix.
    run(s, vec![put(&format!("{}x", p.trim_end_matches('/')), "x")]).await;
    let (kvs, rev) = s.get_prefix(p).await.expect("list");
    assert!(
        rev > r1,
        "the listing's revision is the store's: {rev:?} vs {r1:?}"
    );
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        [a.as_str(), b.as_str()],
        "sorted by key, only under the prefix"
    );
    for kv in &kvs {
        assert_eq!(
            (kv.mod_revision, kv.create_revision),
            (r1, r1),
            "one txn, one revision"
        );
        assert_eq!((kv.value.as_slice(), kv.lease), (&b"1"[..], 0));
    }

    // Exact mod-revision compare: holds once, then is stale.
    let cas = |rev: Revision, v: &str| Txn {
        compares: vec![Compare {
            key: a.clone(),
            target: CompareTarget::ModRevision(rev),
        }],
        success: vec![put(&a, v)],
        failure: vec![
            TxnOp::Get { key: a.clone() },
            TxnOp::Get { key: none.clone() },
        ],
    };
    let ok = s.txn(cas(r1, "2")).await.expect("txn");
    assert!(ok.succeeded);
    assert!(ok.revision > rev, "a write gets a new revision");
    assert!(ok.gets.is_empty(), "the success branch has no gets");
    let stale = s.txn(cas(r1, "3")).await.expect("txn");
    assert!(!stale.succeeded, "a stale mod revision fails the compare");
    assert_eq!(
        stale.revision, ok.revision,
        "a txn that writes nothing keeps the revision"
    );
    assert_eq!(stale.gets.len(), 2, "one answer per Get, in order");
    let newest = stale.gets[0]
        .as_ref()
        .expect("the failure branch reads the newest value");
    assert_eq!(
        (newest.key.as_str(), newest.value.as_slice()),
        (a.as_str(), &b"2"[..])
    );
    assert_eq!(
        (newest.mod_revision, newest.create_revision),
        (ok.revision, r1)
    );
    assert_eq!(stale.gets[1], None, "an absent key reads as None");
    let (kvs, _) = s.get_prefix(&a).await.expect("list");
    assert_eq!(kvs[0].value, b"2", "the failed txn wrote nothing");

    // A create-revision compare on a present key.
    let create_is = |rev: Revision| Txn {
        compares: vec![Compare {
            key: a.clone(),
            target: CompareTarget::CreateRevision(rev),
        }],
        ..Txn::default()
    };
    assert!(s.txn(create_is(r1)).await.expect("txn").succeeded);
    assert!(!s.txn(create_is(ok.revision)).await.expect("txn").succeeded);

    // Absent keys compare as mod 0 and create 0; a value compare on them never holds.
    let on_absent = |target| Txn {
        compares: vec![Compare {
            key: none.clone(),
            target,
        }],
        ..Txn::default()
    };
    for (target, holds) in [
        (CompareTarget::ModRevision(Revision(0)), true),
        (CompareTarget::CreateRevision(Revision(0)), true),
        (CompareTarget::ModRevision(r1), false),
        (CompareTarget::Value(Vec::new()), false),
    ] {
        let resp = s.txn(on_absent(target.clone())).await.expect("txn");
        assert_eq!(resp.succeeded, holds, "{target:?} on an absent key");
    }
    // A value compare on a present key.
    let value_is = |v: &[u8]| Txn {
        compares: vec![Compare {
            key: a.clone(),
            target: CompareTarget::Value(v.to_vec()),
        }],
        ..Txn::default()
    };
    assert!(s.txn(value_is(b"2")).await.expect("txn").succeeded);
    assert!(!s.txn(value_is(b"1")).await.expect("txn").succeeded);

    // Delete then re-create: a new create revision; a compare on the old one fails.
    let deleted = run(s, vec![delete(&a)]).await;
    let (kvs, _) = s.get_prefix(&a).await.expect("list");
    assert!(kvs.is_empty(), "deleted");
    let recreated = run(s, vec![put(&a, "again")]).await;
    assert!(recreated > deleted);
    let (kvs, _) = s.get_prefix(&a).await.expect("list");
    assert_eq!(
        (kvs[0].create_revision, kvs[0].mod_revision),
        (recreated, recreated)
    );
    assert_ne!(kvs[0].create_revision, r1, "re-creation is a new life");
    assert!(!s.txn(create_is(r1)).await.expect("txn").succeeded);
}

/// Server limits: too many ops, too large, duplicate keys. Nothing of a rejected txn lands.
async fn check_limits_are_rejected<S: MetaStore>(s: &S, p: &str) {
    let before = s.get_prefix(p).await.expect("list").1;
    let too_many: Vec<TxnOp> = (0..129).map(|i| put(&format!("{p}{i}"), "v")).collect();
    let at_limit: Vec<TxnOp> = (0..128).map(|i| put(&format!("{p}{i}"), "v")).collect();
    let big = |n: usize| {
        vec![TxnOp::Put {
            key: format!("{p}big"),
            value: vec![b'x'; n],
            lease: 0,
        }]
    };
    for (what, ops) in [
        ("129 ops", too_many),
        ("1.6 MiB (etcd: request is too large)", big(1600 * 1024)),
        (
            "3 MiB (etcd: over the gRPC message limit)",
            big(3 * 1024 * 1024),
        ),
        (
            "a key put twice",
            vec![put(&format!("{p}d"), "1"), put(&format!("{p}d"), "2")],
        ),
    ] {
        let err = s
            .txn(Txn {
                success: ops,
                ..Txn::default()
            })
            .await
            .expect_err(what);
        assert!(matches!(err, StoreError::Rejected(_)), "{what}: {err:?}");
        assert!(!err.is_retryable(), "{what}");
    }
    let (kvs, rev) = s.get_prefix(p).await.expect("list");
    assert!(kvs.is_empty(), "nothing of a rejected txn lands");
    assert_eq!(rev, before, "rejected txns use no revision");
    // The limit itself is allowed.
    run(s, at_limit).await;
    assert_eq!(s.get_prefix(p).await.expect("list").0.len(), 128);
}

/// History replay from a past revision, then live events of one txn in one message, then a
/// requested progress notification.
async fn check_watch_replays_and_streams<S: MetaStore>(s: &S, p: &str) {
    let (k1, k2) = (format!("{p}1"), format!("{p}2"));
    let r1 = run(s, vec![put(&k1, "a")]).await;
    let r2 = run(s, vec![put(&k2, "b"), put(&k1, "a2")]).await;
    let r3 = run(s, vec![delete(&k1)]).await;
    run(s, vec![put("/conf-elsewhere/x", "no")]).await;

    let mut w = s.watch_prefix(p, r1).await.expect("watch");
    let mut replay = Vec::new();
    while replay.len() < 4 {
        let (header, events) = next_events(&mut w).await;
        for e in &events {
            assert!(e.mod_revision() <= header, "{e:?} after header {header:?}");
        }
        replay.extend(events);
    }
    assert_eq!(replay.len(), 4, "{replay:?}");
    let put_at = |e: &WatchEvent, key: &str, value: &[u8], rev: Revision, create: Revision| {
        matches!(e, WatchEvent::Put(kv)
            if kv.key == key && kv.value == value && kv.mod_revision == rev
                && kv.create_revision == create && kv.lease == 0)
    };
    assert!(put_at(&replay[0], &k1, b"a", r1, r1), "{replay:?}");
    assert!(
        put_at(&replay[1], &k2, b"b", r2, r2),
        "op order within a txn: {replay:?}"
    );
    assert!(put_at(&replay[2], &k1, b"a2", r2, r1), "{replay:?}");
    assert_eq!(
        replay[3],
        WatchEvent::Delete {
            key: k1.clone(),
            mod_revision: r3
        }
    );

    // A live txn's events arrive together, in op order, only the watched prefix.
    let r4 = run(
        s,
        vec![
            put(&format!("{p}x"), "1"),
            put("/conf-elsewhere/z", "3"),
            delete(&k2),
            put(&format!("{p}y"), "2"),
        ],
    )
    .await;
    let (header, live) = next_events(&mut w).await;
    assert!(header >= r4);
    assert_eq!(
        live.iter().map(|e| e.key()).collect::<Vec<_>>(),
        [format!("{p}x"), k2.clone(), format!("{p}y")],
        "one message for the txn: {live:?}"
    );
    assert!(live.iter().all(|e| e.mod_revision() == r4));
    assert!(matches!(&live[1], WatchEvent::Delete { .. }));

    // A progress request is answered, at or past everything delivered.
    w.request_progress().await.expect("request progress");
    match next_message(&mut w).await.expect("watch ok") {
        WatchMessage::Progress { header_revision } => assert!(header_revision >= r4),
        other => panic!("expected progress, got {other:?}"),
    }

    // A watch from "now" (revision 0) sees only later changes.
    let mut now = s.watch_prefix(p, Revision(0)).await.expect("watch");
    let r5 = run(s, vec![put(&format!("{p}later"), "1")]).await;
    let (_, events) = next_events(&mut now).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].key(), events[0].mod_revision()),
        (format!("{p}later").as_str(), r5)
    );
}

/// A watch from a compacted revision reports `Compacted`; compacting again is `Compacted`.
async fn check_compaction<S: MetaStore>(s: &S, p: &str) {
    let k = format!("{p}a");
    let r1 = run(s, vec![put(&k, "1")]).await;
    let r2 = run(s, vec![put(&k, "2")]).await;
    s.compact(r2).await.expect("compact");
    let mut w = s.watch_prefix(p, r1).await.expect("the watch is created");
    match next_message(&mut w).await {
        Ok(WatchMessage::Compacted { compact_revision }) => assert_eq!(compact_revision, r2),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let err = s.compact(r1).await.expect_err("already compacted");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    // History after the compaction revision is still there.
    let r3 = run(s, vec![put(&k, "3")]).await;
    let mut w = s.watch_prefix(p, Revision(r2.0 + 1)).await.expect("watch");
    let (_, events) = next_events(&mut w).await;
    assert_eq!(events[0].mod_revision(), r3);
    let (kvs, _) = s.get_prefix(p).await.expect("list");
    assert_eq!(kvs[0].value, b"3", "compaction keeps the current values");
}

/// Leases: keys carry them, revoking deletes the keys (a watch sees the deletion), unknown
/// leases are `LeaseNotFound` everywhere.
async fn check_leases<S: MetaStore>(s: &S, p: &str) {
    let k = format!("{p}k");
    let lease = s.grant_lease(30).await.expect("grant");
    assert_ne!(lease, 0);
    let ttl = s.keep_alive_once(lease).await.expect("keep alive");
    assert!((1..=30).contains(&ttl), "{ttl}");
    let r1 = run(
        s,
        vec![
            TxnOp::Put {
                key: k.clone(),
                value: b"v".to_vec(),
                lease,
            },
            put(&format!("{p}plain"), "stays"),
        ],
    )
    .await;
    let (kvs, _) = s.get_prefix(&k).await.expect("list");
    assert_eq!((kvs[0].lease, kvs[0].mod_revision), (lease, r1));

    let mut w = s.watch_prefix(p, Revision(r1.0 + 1)).await.expect("watch");
    s.revoke_lease(lease).await.expect("revoke");
    let (kvs, _) = s.get_prefix(p).await.expect("list");
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        [format!("{p}plain")],
        "revoking deletes exactly the lease's keys"
    );
    let (_, events) = next_events(&mut w).await;
    match events.as_slice() {
        [WatchEvent::Delete { key, mod_revision }] => {
            assert_eq!(key, &k);
            assert!(*mod_revision > r1);
        }
        other => panic!("expected the lease key's deletion, got {other:?}"),
    }

    // The revoked lease is gone for every call.
    let ka = s.keep_alive_once(lease).await;
    assert_eq!(ka, Err(StoreError::LeaseNotFound(lease)));
    let revoke = s.revoke_lease(lease).await;
    assert_eq!(revoke, Err(StoreError::LeaseNotFound(lease)));
    let attach = s
        .txn(Txn {
            success: vec![TxnOp::Put {
                key: format!("{p}x"),
                value: vec![],
                lease,
            }],
            ..Txn::default()
        })
        .await;
    assert_eq!(attach, Err(StoreError::LeaseNotFound(lease)));
    assert!(s
        .get_prefix(&format!("{p}x"))
        .await
        .expect("list")
        .0
        .is_empty());
}

async fn suite<S: MetaStore>(s: S) {
    check_revisions_and_compares(&s, "/conf/rev/").await;
    check_limits_are_rejected(&s, "/conf/limit/").await;
    check_watch_replays_and_streams(&s, "/conf/watch/").await;
    check_compaction(&s, "/conf/compact/").await;
    check_leases(&s, "/conf/lease/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_etcd_conforms() {
    let etcd = EtcdHarness::start().await;
    suite(etcd.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_store_conforms() {
    suite(MemStore::new()).await;
}

/// A dead etcd is an error to retry, quickly, never a hang; a refused connection proves a
/// write never happened, so it is `Unavailable`, not `Indeterminate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_is_unavailable_not_a_hang() {
    let mut etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    run(&store, vec![put("/dead/a", "1")]).await;
    let mut w = store
        .watch_prefix("/dead/", Revision(0))
        .await
        .expect("watch");
    etcd.stop();

    let started = Instant::now();
    let err = store.get_prefix("/").await.expect_err("etcd is down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store
        .txn(Txn {
            success: vec![put("/dead/b", "1")],
            ..Txn::default()
        })
        .await
        .expect_err("down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.grant_lease(10).await.expect_err("down");
    assert!(err.is_retryable(), "{err:?}");
    let err = store.watch_prefix("/dead/", Revision(0)).await.err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());

    // The open watch breaks rather than going quiet.
    let msg = next_message(&mut w).await;
    assert!(matches!(msg, Err(StoreError::WatchClosed(_))), "{msg:?}");
}

/// etcd restarted mid-run: the same store works again, the data survived, and a new watch
/// from an old revision replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_etcd_is_usable_again() {
    let mut etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let r1 = run(&store, vec![put("/restart/a", "1")]).await;
    etcd.restart().await;
    wait_until(DEADLINE, "the old store answers again", || async {
        store.get_prefix("/restart/").await.is_ok()
    })
    .await;
    let (kvs, rev) = store.get_prefix("/restart/").await.expect("list");
    assert_eq!(kvs.len(), 1, "data survives a restart");
    assert_eq!((kvs[0].mod_revision, rev), (r1, r1));
    let r2 = run(&store, vec![put("/restart/b", "2")]).await;
    assert_eq!(r2, Revision(r1.0 + 1), "revisions continue");
    let mut w = store.watch_prefix("/restart/", r1).await.expect("watch");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(next_events(&mut w).await.1);
    }
    assert_eq!(
        seen.iter().map(|e| e.mod_revision()).collect::<Vec<_>>(),
        [r1, r2]
    );
}

/// etcd keys are bytes; ours are strings. A key that is not UTF-8 is skipped (with a warning)
/// by listings and watches, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_utf8_are_skipped() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let mut raw = store.client().clone();
    let r0 = run(&store, vec![put("/bytes/ok", "1")]).await;
    let mut w = store
        .watch_prefix("/bytes/", Revision(r0.0 + 1))
        .await
        .expect("watch");
    raw.put(b"/bytes/\xff\xfe".to_vec(), "bad", None)
        .await
        .expect("raw put");
    raw.put(b"/bytes/\xfd".to_vec(), "bad", None)
        .await
        .expect("raw put");
    raw.delete(b"/bytes/\xfd".to_vec(), None)
        .await
        .expect("raw delete");
    let r1 = run(&store, vec![put("/bytes/ok2", "2")]).await;
    let (kvs, _) = store.get_prefix("/bytes/").await.expect("list");
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/bytes/ok", "/bytes/ok2"]
    );
    let (_, events) = next_events(&mut w).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].key(), events[0].mod_revision()),
        ("/bytes/ok2", r1)
    );
}
