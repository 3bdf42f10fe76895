//! One conformance suite for both `MetaStore` backends: the real etcd (started by the test)
//! and the in-process `MemStore`. If they disagree, unit tests on `MemStore` would prove
//! nothing about production. Needs `--features testing` (the test command passes
//! `--all-features`).
#![cfg(feature = "testing")]
// Measures that a dead etcd answers quickly.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use rcdc_reactor::store::mem::MemStore;
use rcdc_reactor::store::{
    Compare, CompareTarget, MetaStore, StoreError, Txn, TxnOp, WatchEvent, WatchMessage,
};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::Revision;

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.into(),
        lease: 0,
    }
}

async fn run(store: &impl MetaStore, ops: Vec<TxnOp>) -> Revision {
    store
        .txn(Txn {
            success: ops,
            ..Txn::default()
        })
        .await
        .expect("txn")
        .revision
}

/// Waits for the next events message, skipping progress notifications.
async fn next_events(w: &mut Box<dyn rcdc_reactor::store::Watch>) -> Vec<WatchEvent> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch message in time")
            .expect("watch ok");
        match msg {
            WatchMessage::Events { events, .. } => return events,
            WatchMessage::Progress { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn revisions_and_compares(s: &impl MetaStore) {
    let p = "/conf/rev/";
    let r1 = run(
        s,
        vec![put(&format!("{p}b"), "1"), put(&format!("{p}a"), "1")],
    )
    .await;
    let (kvs, rev) = s.get_prefix(p).await.expect("list");
    assert_eq!(rev, r1);
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        [format!("{p}a"), format!("{p}b")],
        "sorted by key"
    );
    assert!(
        kvs.iter()
            .all(|kv| kv.mod_revision == r1 && kv.create_revision == r1),
        "one txn, one revision"
    );

    // Exact mod-revision compare: holds once, then is stale.
    let cas = |rev: Revision, v: &str| Txn {
        compares: vec![Compare {
            key: format!("{p}a"),
            target: CompareTarget::ModRevision(rev),
        }],
        success: vec![put(&format!("{p}a"), v)],
        failure: vec![
            TxnOp::Get {
                key: format!("{p}a"),
            },
            TxnOp::Get {
                key: format!("{p}none"),
            },
        ],
    };
    let ok = s.txn(cas(r1, "2")).await.expect("txn");
    assert!(ok.succeeded && ok.revision.0 == r1.0 + 1);
    let stale = s.txn(cas(r1, "3")).await.expect("txn");
    assert!(!stale.succeeded);
    assert_eq!(stale.gets.len(), 2);
    let newest = stale.gets[0]
        .as_ref()
        .expect("failure branch reads the newest value");
    assert_eq!(
        (newest.value.as_slice(), newest.mod_revision),
        (&b"2"[..], ok.revision)
    );
    assert!(stale.gets[1].is_none());

    // Absent keys compare as mod 0 and create 0; a value compare on them fails.
    let absent = |target| Txn {
        compares: vec![Compare {
            key: format!("{p}none"),
            target,
        }],
        success: vec![],
        failure: vec![],
    };
    assert!(
        s.txn(absent(CompareTarget::ModRevision(Revision(0))))
            .await
            .expect("txn")
            .succeeded
    );
    assert!(
        s.txn(absent(CompareTarget::CreateRevision(Revision(0))))
            .await
            .expect("txn")
            .succeeded
    );
    assert!(
        !s.txn(absent(CompareTarget::Value(Vec::new())))
            .await
            .expect("txn")
            .succeeded
    );

    // Delete then re-create: a new create revision.
    run(
        s,
        vec![TxnOp::Delete {
            key: format!("{p}a"),
        }],
    )
    .await;
    let r = run(s, vec![put(&format!("{p}a"), "again")]).await;
    let (kvs, _) = s.get_prefix(&format!("{p}a")).await.expect("list");
    assert_eq!(kvs[0].create_revision, r);
}

async fn limits_are_rejected(s: &impl MetaStore) {
    let ops: Vec<TxnOp> = (0..129)
        .map(|i| put(&format!("/conf/limit/{i}"), "v"))
        .collect();
    let err = s
        .txn(Txn {
            success: ops,
            ..Txn::default()
        })
        .await
        .expect_err("129 ops");
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    let (kvs, _) = s.get_prefix("/conf/limit/").await.expect("list");
    assert!(kvs.is_empty(), "nothing of a rejected txn lands");
}

async fn watches_replay_and_stream(s: &impl MetaStore) {
    let p = "/conf/watch/";
    let r1 = run(s, vec![put(&format!("{p}1"), "a")]).await;
    let r2 = run(
        s,
        vec![TxnOp::Delete {
            key: format!("{p}1"),
        }],
    )
    .await;
    let mut w = s.watch_prefix(p, r1).await.expect("watch");
    let mut replay = Vec::new();
    while replay.len() < 2 {
        replay.extend(next_events(&mut w).await);
    }
    assert!(matches!(&replay[0], WatchEvent::Put(kv) if kv.mod_revision == r1 && kv.value == b"a"));
    assert_eq!(
        replay[1],
        WatchEvent::Delete {
            key: format!("{p}1"),
            mod_revision: r2
        }
    );

    // A live txn's events arrive together, in op order.
    let r3 = run(
        s,
        vec![
            put(&format!("{p}x"), "1"),
            put(&format!("{p}y"), "2"),
            put("/conf/other/z", "3"),
        ],
    )
    .await;
    let live = next_events(&mut w).await;
    assert_eq!(live.len(), 2, "only the watched prefix: {live:?}");
    assert!(live.iter().all(|e| e.mod_revision() == r3));
    assert_eq!(live[0].key(), format!("{p}x"));

    // A progress request is answered.
    w.request_progress().await.expect("request progress");
    let msg = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(
        matches!(msg, WatchMessage::Progress { header_revision } if header_revision >= r3),
        "{msg:?}"
    );
}

async fn compacted_watch(s: &impl MetaStore) {
    let p = "/conf/compact/";
    let r1 = run(s, vec![put(&format!("{p}a"), "1")]).await;
    let r2 = run(s, vec![put(&format!("{p}a"), "2")]).await;
    s.compact(r2).await.expect("compact");
    let mut w = s.watch_prefix(p, r1).await.expect("watch is created");
    let msg = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("in time");
    assert!(
        matches!(msg, Ok(WatchMessage::Compacted { compact_revision }) if compact_revision == r2),
        "{msg:?}"
    );
}

async fn leases(s: &impl MetaStore) {
    let p = "/conf/lease/";
    let lease = s.grant_lease(30).await.expect("grant");
    assert!(s.keep_alive_once(lease).await.expect("keep alive") > 0);
    run(
        s,
        vec![TxnOp::Put {
            key: format!("{p}k"),
            value: b"v".to_vec(),
            lease,
        }],
    )
    .await;
    let (kvs, _) = s.get_prefix(p).await.expect("list");
    assert_eq!(kvs[0].lease, lease);
    s.revoke_lease(lease).await.expect("revoke");
    let (kvs, _) = s.get_prefix(p).await.expect("list");
    assert!(kvs.is_empty(), "revoking deletes the lease's keys");
    let ka = s.keep_alive_once(lease).await;
    assert!(matches!(ka, Err(StoreError::LeaseNotFound(_))), "{ka:?}");
    let err = s
        .txn(Txn {
            success: vec![TxnOp::Put {
                key: format!("{p}x"),
                value: vec![],
                lease,
            }],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(
            err,
            Err(StoreError::LeaseNotFound(_)) | Err(StoreError::Rejected(_))
        ),
        "{err:?}"
    );
}

async fn suite(s: impl MetaStore) {
    revisions_and_compares(&s).await;
    limits_are_rejected(&s).await;
    watches_replay_and_stream(&s).await;
    compacted_watch(&s).await;
    leases(&s).await;
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

/// A dead etcd is an error to retry, quickly, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_is_unavailable_not_a_hang() {
    let mut etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    etcd.stop();
    let started = std::time::Instant::now();
    let err = store.get_prefix("/").await.expect_err("etcd is down");
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = store
        .txn(Txn {
            success: vec![put("/x", "1")],
            ..Txn::default()
        })
        .await
        .expect_err("down");
    assert!(
        matches!(
            err,
            StoreError::Unavailable(_) | StoreError::Indeterminate(_)
        ),
        "{err:?}"
    );
}
