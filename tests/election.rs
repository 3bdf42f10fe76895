//! Capture session and owner election on a real etcd started by the test (and on MemStore,
//! where the lease clock is manual).

mod common;

use std::time::Duration;

use common::*;
use rcdc::capture::election::{campaign, current_owner, resign, ElectionError};
use rcdc::capture::session::Session;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{TickOutput, WorkerError};
use rcdc_state::CaptureId;

const OWNER: &str = "/t/election/owner";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_candidate_wins_and_the_next_takes_over_when_its_session_ends() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let s1 = Session::open(store.clone(), Duration::from_secs(10))
        .await
        .expect("session 1");
    let s2 = Session::open(store.clone(), Duration::from_secs(10))
        .await
        .expect("session 2");
    let (c1, c2) = (CaptureId::from("capture-1"), CaptureId::from("capture-2"));

    let fence1 = campaign(&store, OWNER, s1.lease(), &c1)
        .await
        .expect("first wins at once");
    assert_eq!(
        current_owner(&store, OWNER).await.expect("owner"),
        Some(c1.clone())
    );

    let store2 = store.clone();
    let lease2 = s2.lease();
    let second = tokio::spawn(async move { campaign(&store2, OWNER, lease2, &c2).await });
    tokio::time::sleep(Duration::from_millis(300)).await; // give it a chance to win wrongly
    assert!(
        !second.is_finished(),
        "the second candidate must wait while the first holds"
    );

    s1.close().await; // revokes the lease: the election key goes with it
    let fence2 = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("takes over in time")
        .expect("join")
        .expect("wins");
    assert!(fence2.create_revision > fence1.create_revision);
    assert_eq!(
        current_owner(&store, OWNER).await.expect("owner"),
        Some(CaptureId::from("capture-2"))
    );

    assert!(
        resign(&store, &fence2).await.expect("resign"),
        "resign deletes our key"
    );
    assert_eq!(current_owner(&store, OWNER).await.expect("owner"), None);
    assert!(
        !resign(&store, &fence2).await.expect("resign twice"),
        "a second resign finds nothing to delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigning_with_a_lost_session_fails_instead_of_hanging() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let holder = Session::open(store.clone(), Duration::from_secs(10))
        .await
        .expect("session");
    campaign(&store, OWNER, holder.lease(), &"holder".into())
        .await
        .expect("holder wins");

    let s = Session::open(store.clone(), Duration::from_secs(10))
        .await
        .expect("session");
    let lease = s.lease();
    let store2 = store.clone();
    let waiting =
        tokio::spawn(async move { campaign(&store2, OWNER, lease, &"loser".into()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .revoke_lease(lease)
        .await
        .expect("revoke the waiting candidate's lease");
    holder.close().await; // a delete wakes the waiter, which must notice its own key is gone
    let r = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("returns")
        .expect("join");
    assert!(matches!(r, Err(ElectionError::SessionLost(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reports_loss_when_its_lease_is_revoked_elsewhere() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let s = Session::open(store.clone(), Duration::from_secs(3))
        .await
        .expect("session");
    assert!(!s.is_lost());
    store.revoke_lease(s.lease()).await.expect("revoke");
    tokio::time::timeout(DEADLINE, s.wait_lost())
        .await
        .expect("loss noticed within a keep-alive period");
    assert!(s.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reports_loss_when_etcd_is_unreachable_for_a_ttl() {
    let mut etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let s = Session::open(store.clone(), Duration::from_secs(2))
        .await
        .expect("session");
    etcd.stop();
    tokio::time::timeout(DEADLINE, s.wait_lost())
        .await
        .expect("loss declared after a TTL without keep-alive");
}

/// End to end: the fence from a won election guards an EtcdWorker; once the session is gone,
/// the deposed owner's next write fails with `Fenced` and never lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_owner_cannot_write_after_its_session_ends() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let s = Session::open(store.clone(), Duration::from_secs(10))
        .await
        .expect("session");
    let fence = campaign(&store, OWNER, s.lease(), &"owner".into())
        .await
        .expect("wins");
    let lost = shared(false);
    let l2 = lost.clone();
    let reactor = FnReactor::new(move |n, _s: &KvState, _| {
        let key = if *l2.lock() {
            "/t/election/late"
        } else {
            "/t/election/ok"
        };
        out(vec![group(
            "owner",
            vec![TestPatch::Put(key.into(), n.to_string())],
        )])
    });
    let mut cfg = config("/t/election/");
    cfg.fence = Some(fence.clone());
    let w = spawn(store.clone(), reactor, KvState::default(), cfg);
    wait_until(DEADLINE, "owner writes", || async {
        get(&store, "/t/election/ok").await.is_some()
    })
    .await;
    store.revoke_lease(s.lease()).await.expect("session ends");
    *lost.lock() = true;
    let exit = tokio::time::timeout(DEADLINE, w.join())
        .await
        .expect("ends");
    assert!(
        matches!(exit, Err(WorkerError::Fenced { ref key, .. }) if *key == fence.key),
        "{exit:?}"
    );
    assert!(get(&store, "/t/election/late").await.is_none());
    let _ = TickOutput::<TestPatch>::default();
}
