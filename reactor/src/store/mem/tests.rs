use super::*;
use futures::FutureExt;
use StoreError::LeaseNotFound;

fn put(key: &str, value: &str) -> TxnOp {
    put_on(key, value, 0)
}
fn put_on(key: &str, value: &str, lease: i64) -> TxnOp {
    let (key, value) = (key.into(), value.into());
    TxnOp::Put { key, value, lease }
}
fn del(key: &str) -> TxnOp {
    TxnOp::Delete { key: key.into() }
}
fn get(key: &str) -> TxnOp {
    TxnOp::Get { key: key.into() }
}
fn ops(success: Vec<TxnOp>) -> Txn {
    let failure = Vec::new();
    Txn {
        compares: Vec::new(),
        success,
        failure,
    }
}
async fn run(s: &MemStore, success: Vec<TxnOp>) -> TxnResponse {
    s.txn(ops(success)).await.unwrap()
}
async fn try_run(s: &MemStore, success: Vec<TxnOp>) -> Result<TxnResponse, StoreError> {
    s.txn(ops(success)).await
}
/// Whether `put k=v` guarded by one compare on `k` succeeds.
async fn guarded(s: &MemStore, target: CompareTarget) -> bool {
    let mut t = ops(vec![put("k", "v")]);
    t.compares.push(Compare {
        key: "k".into(),
        target,
    });
    s.txn(t).await.unwrap().succeeded
}
/// (create, mod) revisions of a live key.
fn revs(s: &MemStore, key: &str) -> Option<(i64, i64)> {
    let kv = s.dump().into_iter().find(|kv| kv.key == key)?;
    Some((kv.create_revision.0, kv.mod_revision.0))
}
fn keys(s: &MemStore) -> Vec<String> {
    s.dump().into_iter().map(|kv| kv.key).collect()
}
/// A watch message in short form, e.g. `"5: put p/a@5 del p/b@5"` (header revision first).
fn brief(msg: WatchMessage) -> String {
    let event = |e: &WatchEvent| match e {
        WatchEvent::Put(kv) => format!(" put {}@{}", kv.key, kv.mod_revision),
        WatchEvent::Delete {
            key,
            mod_revision: r,
        } => format!(" del {key}@{r}"),
    };
    match msg {
        WatchMessage::Events {
            header_revision: h,
            events: e,
        } => {
            format!("{h}:{}", e.iter().map(event).collect::<String>())
        }
        WatchMessage::Progress { header_revision } => format!("progress {header_revision}"),
        WatchMessage::Compacted { compact_revision } => format!("compacted {compact_revision}"),
    }
}
async fn next(w: &mut Box<dyn Watch>) -> String {
    brief(w.next().await.unwrap())
}
/// The messages ready now, without waiting.
fn ready(w: &mut Box<dyn Watch>) -> Vec<String> {
    std::iter::from_fn(|| w.next().now_or_never().map(|m| brief(m.unwrap()))).collect()
}
fn closed(r: Result<WatchMessage, StoreError>) -> bool {
    matches!(r, Err(StoreError::WatchClosed(_)))
}
fn unavailable<T>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Unavailable(_)))
}
fn indeterminate<T>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Indeterminate(_)))
}
fn rejected_with<T>(r: Result<T, StoreError>, what: &str) -> bool {
    matches!(r, Err(StoreError::Rejected(m)) if m.contains(what))
}
fn err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> StoreError {
    r.unwrap_err()
}

#[tokio::test]
async fn revisions_and_create_mod_rules() {
    let s = MemStore::new();
    assert_eq!(s.revision(), Revision(1));
    assert_eq!(run(&s, vec![put("a", "1")]).await.revision, Revision(2));
    assert_eq!((revs(&s, "a"), s.version("a")), (Some((2, 2)), Some(1)));
    // The same value again still writes.
    assert_eq!(run(&s, vec![put("a", "1")]).await.revision, Revision(3));
    assert_eq!((revs(&s, "a"), s.version("a")), (Some((2, 3)), Some(2)));
    // Deleting an absent key, or reading, does not write.
    let r = run(&s, vec![del("zz"), get("a")]).await;
    assert_eq!(r.revision, Revision(3));
    assert_eq!(r.gets[0].as_ref().unwrap().mod_revision, Revision(3));
    // The writes of one txn share its revision; a Get sees the branch's earlier ops.
    let r = run(&s, vec![put("c", "y"), put("b", "x"), get("b")]).await;
    assert_eq!(r.revision, Revision(4));
    let b = r.gets[0].clone().unwrap();
    assert_eq!((b.value, b.mod_revision), (b"x".to_vec(), Revision(4)));
    assert_eq!(revs(&s, "c"), Some((4, 4)));
    // Delete then re-create: a new create revision, version restarts.
    assert_eq!(run(&s, vec![del("a")]).await.revision, Revision(5));
    assert_eq!((revs(&s, "a"), s.version("a")), (None, None));
    run(&s, vec![put("a", "2")]).await;
    assert_eq!((revs(&s, "a"), s.version("a")), (Some((6, 6)), Some(1)));
    let (list, rev) = s.get_prefix("").await.unwrap();
    let listed: Vec<&str> = list.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!((listed, rev), (vec!["a", "b", "c"], Revision(6)));
    assert_eq!(s.get_prefix("b").await.unwrap().0.len(), 1);
    assert_eq!(s.txn_count(), 6);
}

#[tokio::test]
async fn compares_follow_etcd() {
    use CompareTarget::{CreateRevision as Create, ModRevision as Mod, Value};
    let s = MemStore::new();
    // Absent key: mod and create revisions are 0, a value never matches.
    assert!(!guarded(&s, Value(vec![])).await);
    assert!(!guarded(&s, Mod(Revision(1))).await);
    assert_eq!(s.revision(), Revision(1));
    assert!(guarded(&s, Create(Revision(0))).await); // put at 2
    assert!(!guarded(&s, Create(Revision(0))).await);
    assert!(!guarded(&s, Mod(Revision(1))).await);
    assert!(guarded(&s, Mod(Revision(2))).await); // put at 3
    assert!(guarded(&s, Value(b"v".to_vec())).await); // put at 4
    assert!(guarded(&s, Create(Revision(2))).await); // put at 5
    assert_eq!(revs(&s, "k"), Some((2, 5)));
    // Delete and re-create: the old create revision no longer matches.
    run(&s, vec![del("k")]).await;
    run(&s, vec![put("k", "v")]).await;
    assert!(!guarded(&s, Create(Revision(2))).await);
    assert!(guarded(&s, Create(Revision(7))).await);
    assert_eq!(revs(&s, "k"), Some((7, 8)));
}

#[tokio::test]
async fn failure_branch_runs_with_gets() {
    let s = MemStore::new();
    run(&s, vec![put("a", "1")]).await;
    let a = s.dump()[0].clone();
    let mut t = ops(vec![put("a", "2")]);
    let target = CompareTarget::ModRevision(Revision(9));
    t.compares.push(Compare {
        key: "a".into(),
        target,
    });
    t.failure = vec![get("a"), get("zz"), put("f", "1")];
    let r = s.txn(t).await.unwrap();
    assert!(!r.succeeded);
    assert_eq!(
        (r.revision, r.gets),
        (Revision(3), vec![Some(a.clone()), None])
    );
    assert_eq!(
        (s.dump()[0].clone(), keys(&s)),
        (a, vec!["a".into(), "f".into()])
    );
}

#[tokio::test]
async fn limits_reject_without_applying() {
    let s = MemStore::new();
    let many: Vec<TxnOp> = (0..129).map(|i| put(&format!("k{i}"), "v")).collect();
    let too_many = "etcdserver: too many operations in txn request";
    assert!(rejected_with(try_run(&s, many.clone()).await, too_many));
    let mut t = ops(vec![]);
    t.failure = many.clone();
    assert!(rejected_with(s.txn(t).await, too_many));
    let target = || CompareTarget::ModRevision(Revision(0));
    let mut t = ops(vec![]);
    t.compares = (0..129)
        .map(|i| Compare {
            key: format!("c{i}"),
            target: target(),
        })
        .collect();
    assert!(rejected_with(s.txn(t).await, too_many));
    assert_eq!((s.revision(), s.dump().len()), (Revision(1), 0));
    assert_eq!(s.txn_count(), 0);
    run(&s, many[..128].to_vec()).await;
    assert_eq!(s.dump().len(), 128);
    // Over 1.5 MiB of keys and values.
    let big = "x".repeat(800 * 1024);
    let r = try_run(&s, vec![put("b1", &big), put("b2", &big)]).await;
    assert!(rejected_with(r, "request is too large"));
    run(&s, vec![put("b1", &big)]).await;
    // Writing one key twice in a branch.
    let r = try_run(&s, vec![put("d", "1"), del("d")]).await;
    assert!(rejected_with(r, "duplicate key"));
    let r = try_run(&s, vec![put("", "1")]).await;
    assert!(rejected_with(r, "key is not provided"));
    // An unknown lease fails the whole txn.
    let r = try_run(&s, vec![put("e", "1"), put_on("f", "1", 42)]).await;
    assert_eq!(err(r), LeaseNotFound(42));
    assert_eq!((s.revision(), s.dump().len()), (Revision(3), 129));
}

#[tokio::test]
async fn watch_from_past_revision_replays_history() {
    let s = MemStore::new();
    run(&s, vec![put("p/a", "1")]).await; // 2
    run(&s, vec![put("p/b", "1"), put("q/x", "1")]).await; // 3
    run(&s, vec![put("q/y", "1")]).await; // 4
    run(&s, vec![del("p/a"), put("p/c", "1"), del("p/zz")]).await; // 5
    let mut w = s.watch_prefix("p/", Revision(3)).await.unwrap();
    assert_eq!(ready(&mut w), ["5: put p/b@3", "5: del p/a@5 put p/c@5"]);
    let mut w = s.watch_prefix("p/", Revision(1)).await.unwrap();
    let all = ["5: put p/a@2", "5: put p/b@3", "5: del p/a@5 put p/c@5"];
    assert_eq!(ready(&mut w), all);
    // From 0: only what follows; from a future revision: nothing before it.
    let mut now = s.watch_prefix("p/", Revision(0)).await.unwrap();
    let mut future = s.watch_prefix("p/", Revision(7)).await.unwrap();
    assert!(ready(&mut now).is_empty());
    run(&s, vec![put("p/d", "1")]).await; // 6
    run(&s, vec![put("p/e", "1")]).await; // 7
    assert_eq!(ready(&mut now), ["6: put p/d@6", "7: put p/e@7"]);
    assert_eq!(ready(&mut future), ["7: put p/e@7"]);
    assert_eq!(ready(&mut w), ["6: put p/d@6", "7: put p/e@7"]);
}

#[tokio::test]
async fn live_watch_gets_a_txns_events_together() {
    let s = MemStore::new();
    run(&s, vec![put("p/old", "1")]).await;
    let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
    let waiter = tokio::spawn(async move { (next(&mut w).await, w) });
    tokio::task::yield_now().await;
    let t = vec![
        put("p/z", "1"),
        put("other", "1"),
        del("p/old"),
        put("p/a", "2"),
    ];
    run(&s, t).await;
    let (msg, mut w) = waiter.await.unwrap();
    assert_eq!(msg, "3: put p/z@3 del p/old@3 put p/a@3");
    assert!(ready(&mut w).is_empty());
    assert_eq!(s.watch_count(), 1);
    drop(w);
    assert_eq!(s.watch_count(), 0);
}

#[tokio::test]
async fn compaction_and_compacted_watch() {
    let s = MemStore::new();
    for i in 0..4 {
        run(&s, vec![put("p/k", &i.to_string())]).await; // 2..=5
    }
    let mut live = s.watch_prefix("p/", Revision(0)).await.unwrap();
    let r = s.compact(Revision(6)).await;
    assert!(rejected_with(r, "future revision"));
    s.compact(Revision(3)).await.unwrap();
    assert_eq!(s.compact_revision(), Revision(3));
    let (requested, compact_revision) = (Revision(2), Revision(3));
    let again = StoreError::Compacted {
        requested,
        compact_revision,
    };
    assert_eq!(err(s.compact(Revision(2)).await), again);
    for start in [1, 3] {
        let mut w = s.watch_prefix("p/", Revision(start)).await.unwrap();
        assert_eq!(next(&mut w).await, "compacted 3");
        assert!(closed(w.next().await));
        assert!(w.request_progress().await.is_err());
    }
    let mut w = s.watch_prefix("p/", Revision(4)).await.unwrap();
    assert_eq!(ready(&mut w), ["5: put p/k@4", "5: put p/k@5"]);
    // Live watches go on; keys keep their revisions.
    run(&s, vec![put("p/k", "x")]).await;
    assert_eq!(ready(&mut live), ["6: put p/k@6"]);
    assert_eq!(revs(&s, "p/k"), Some((2, 6)));
}

#[tokio::test]
async fn progress_follows_delivered_events() {
    let s = MemStore::new();
    let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
    run(&s, vec![put("p/a", "1")]).await;
    run(&s, vec![put("q/a", "1")]).await;
    w.request_progress().await.unwrap();
    assert_eq!(ready(&mut w), ["2: put p/a@2", "progress 3"]);
}

#[tokio::test]
async fn lease_expiry_on_the_manual_clock() {
    let s = MemStore::new();
    let l = s.grant_lease(10).await.unwrap();
    let short = s.grant_lease(5).await.unwrap();
    assert_eq!((l, short), (FIRST_LEASE_ID, FIRST_LEASE_ID + 1));
    let t = vec![
        put_on("p/b", "1", l),
        put_on("p/a", "1", l),
        put("p/c", "1"),
    ];
    run(&s, t).await;
    assert_eq!(s.dump()[0].lease, l);
    let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
    // The 5 s lease expires; it had no keys, so nothing is written.
    s.advance_clock(Duration::from_secs(6));
    assert_eq!((s.leases(), s.revision()), (vec![l], Revision(2)));
    assert_eq!(s.keep_alive_once(l).await.unwrap(), 10);
    s.advance_clock(Duration::from_secs(9));
    assert_eq!((keys(&s).len(), ready(&mut w).len()), (3, 0));
    s.advance_clock(Duration::from_secs(1));
    assert_eq!(s.now(), Duration::from_secs(16));
    assert_eq!(keys(&s), ["p/c"]);
    assert_eq!(ready(&mut w), ["3: del p/a@3 del p/b@3"]);
    assert_eq!(err(s.keep_alive_once(l).await), LeaseNotFound(l));
    let r = try_run(&s, vec![put_on("p/x", "1", l)]).await;
    assert_eq!(err(r), LeaseNotFound(l));
    // Forced expiry.
    let l2 = s.grant_lease(100).await.unwrap();
    run(&s, vec![put_on("p/d", "1", l2)]).await;
    s.expire_lease(l2).unwrap();
    assert_eq!(ready(&mut w), ["4: put p/d@4", "5: del p/d@5"]);
    assert_eq!(err(s.expire_lease(l2)), LeaseNotFound(l2));
}

#[tokio::test]
async fn revoke_deletes_attached_keys_only() {
    let s = MemStore::new();
    let (l1, l2) = (
        s.grant_lease(10).await.unwrap(),
        s.grant_lease(10).await.unwrap(),
    );
    let t = vec![
        put_on("a", "1", l1),
        put_on("b", "1", l1),
        put_on("c", "1", l2),
    ];
    run(&s, t).await;
    // Re-putting "b" on another lease, and "a" on none, detaches them from l1.
    run(&s, vec![put_on("b", "2", l2), put("a", "2")]).await;
    s.revoke_lease(l1).await.unwrap();
    assert_eq!((s.revision(), keys(&s).len()), (Revision(3), 3)); // no write
    let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
    s.revoke_lease(l2).await.unwrap();
    assert_eq!(ready(&mut w), ["4: del b@4 del c@4"]);
    assert_eq!(keys(&s), ["a"]);
    assert_eq!(err(s.revoke_lease(l2).await), LeaseNotFound(l2));
    assert_eq!(err(s.revoke_lease(7).await), LeaseNotFound(7));
}

#[tokio::test]
async fn injected_txn_failures() {
    let s = MemStore::new();
    let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
    s.fail_next_txns(1, FailMode::Unavailable);
    s.fail_next_txns(1, FailMode::IndeterminateNotApplied);
    s.fail_next_txns(1, FailMode::IndeterminateApplied);
    assert!(unavailable(try_run(&s, vec![put("a", "1")]).await));
    assert!(indeterminate(try_run(&s, vec![put("b", "1")]).await));
    assert_eq!((s.dump().len(), s.revision()), (0, Revision(1)));
    assert_eq!(s.txn_count(), 0);
    assert!(ready(&mut w).is_empty());
    assert!(indeterminate(try_run(&s, vec![put("c", "1")]).await));
    assert_eq!((revs(&s, "c"), s.txn_count()), (Some((2, 2)), 1));
    assert_eq!(ready(&mut w), ["2: put c@2"]);
    assert_eq!(run(&s, vec![put("d", "1")]).await.revision, Revision(3));
}

#[tokio::test]
async fn outage_and_broken_watches() {
    let s = MemStore::new();
    let l = s.grant_lease(10).await.unwrap();
    let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
    let waiter = tokio::spawn(async move { w.next().await });
    tokio::task::yield_now().await;
    s.set_unavailable(true);
    assert!(closed(waiter.await.unwrap()));
    assert!(unavailable(s.get_prefix("").await));
    assert!(unavailable(try_run(&s, vec![put("a", "1")]).await));
    assert!(unavailable(s.watch_prefix("", Revision(0)).await));
    assert!(unavailable(s.grant_lease(1).await));
    assert!(unavailable(s.keep_alive_once(l).await));
    assert!(unavailable(s.revoke_lease(l).await));
    assert!(unavailable(s.compact(Revision(1)).await));
    s.set_unavailable(false);
    assert!(s.dump().is_empty() && s.leases() == [l]);
    // A broken watch fails at once, even with messages pending, and for good.
    let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
    run(&s, vec![put("a", "1")]).await;
    s.break_watches();
    assert!(closed(w.next().await) && closed(w.next().await));
    assert!(w.request_progress().await.is_err());
    let mut w = s.watch_prefix("", Revision(2)).await.unwrap();
    assert_eq!(ready(&mut w), ["2: put a@2"]);
}

#[tokio::test]
async fn held_and_duplicated_watch_messages() {
    let s = MemStore::new();
    let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
    s.set_watch_delivery(WatchDelivery::Hold);
    run(&s, vec![put("p/a", "1")]).await; // 2
    w.request_progress().await.unwrap();
    run(&s, vec![put("p/b", "1")]).await; // 3
    run(&s, vec![put("x", "1")]).await; // 4
    assert!(ready(&mut w).is_empty());
    s.flush_watches();
    let flushed = ["4: put p/a@2", "progress 2", "4: put p/b@3"];
    assert_eq!(ready(&mut w), flushed);
    // Switching back to immediate delivery flushes.
    run(&s, vec![put("p/c", "1")]).await;
    assert!(ready(&mut w).is_empty());
    s.set_watch_delivery(WatchDelivery::Immediate);
    assert_eq!(ready(&mut w), ["5: put p/c@5"]);
    s.duplicate_next_watch_messages(1);
    run(&s, vec![put("p/d", "1")]).await;
    run(&s, vec![put("p/e", "1")]).await;
    let dup = ["6: put p/d@6", "6: put p/d@6", "7: put p/e@7"];
    assert_eq!(ready(&mut w), dup);
    // Breaking drops what is held.
    s.set_watch_delivery(WatchDelivery::Hold);
    run(&s, vec![put("p/f", "1")]).await;
    s.break_watches();
    s.flush_watches();
    assert!(closed(w.next().await));
}
