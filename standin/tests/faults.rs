//! Each fault switch of the control surface, seen through the gRPC stubs and raw TCP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, tso};
use rcdc_proto::pdpb;
use rcdc_reactor::testing::wait_until;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn tso_failure_switch() {
    let f = start(1, &[]).await;
    let mut pd = f.pd(0).await;
    tso(&mut pd, f.cluster_id, 1).await.expect("TSO works");
    let (status, _) = f.control("PUT", "/standin/tso", r#"{"fail":true}"#).await;
    assert_eq!(status, 200);
    let err = tso(&mut pd, f.cluster_id, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // UpdateServiceGCSafePoint takes a TSO, so it fails too.
    let req = pdpb::UpdateServiceGcSafePointRequest {
        header: f.header(),
        service_id: b"ticdc".to_vec(),
        ttl: 10,
        safe_point: 1,
    };
    let err = pd
        .update_service_gc_safe_point(req.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // Other calls are unaffected.
    let members = pd
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    members.expect("GetMembers still answers");

    let (status, body) = f.control("PUT", "/standin/tso", r#"{"fail":false}"#).await;
    assert_eq!((status, body.trim()), (200, r#"{"tso_failing":false}"#));
    tso(&mut pd, f.cluster_id, 1).await.expect("TSO back");
    pd.update_service_gc_safe_point(req).await.expect("GC back");
    let (status, _) = f.control("PUT", "/standin/tso", r#"{"fial":true}"#).await;
    assert_eq!(status, 400, "a misspelt body is refused");
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn a_member_taken_down_refuses_connections_and_hands_over_leadership() {
    let f = start(3, &[]).await;
    let addr0 = f.standin.cluster.members[0].addr;
    // A connection opened before the fault.
    let mut old = f.pd(0).await;
    old.get_members(pdpb::GetMembersRequest { header: None })
        .await
        .unwrap();

    let (status, _) = f
        .control("PUT", "/standin/members/pd-1", r#"{"up":false}"#)
        .await;
    assert_eq!(status, 200);
    wait_until(DEADLINE, "pd-1 refuses connections", || refused(addr0)).await;
    let err = old
        .get_members(pdpb::GetMembersRequest { header: None })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "the old connection is gone: {err}"
    );

    // The leader was pd-1: the next live member took over, and the survivors still list pd-1.
    let members = f
        .pd(1)
        .await
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    let members = members.unwrap().into_inner();
    assert_eq!(members.leader.unwrap().name, "pd-2");
    assert_eq!(members.members.len(), 3);
    let (_, health) = common::control(&f.url(1), "GET", "/pd/api/v1/health", "").await;
    assert!(health.contains(r#""health":false"#), "{health}");

    // A down member cannot be made leader.
    let (status, body) =
        common::control(&f.url(1), "POST", "/standin/leader", r#"{"to":"pd-1"}"#).await;
    assert_eq!(status, 409, "{body}");

    let (status, _) =
        common::control(&f.url(2), "PUT", "/standin/members/pd-1", r#"{"up":true}"#).await;
    assert_eq!(status, 200);
    wait_until(DEADLINE, "pd-1 serves again", || async {
        !refused(addr0).await
    })
    .await;
    let mut back = f.pd(0).await;
    let members = back
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    assert_eq!(
        members.unwrap().into_inner().leader.unwrap().name,
        "pd-2",
        "leadership stays"
    );
    let req = pdpb::GetAllStoresRequest {
        header: f.header(),
        exclude_tombstone_stores: true,
    };
    let err = back.get_all_stores(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "pd-1 is a follower now");
}

#[tokio::test]
async fn store_switches_change_versions_and_add_stores() {
    let f = start(1, &[]).await;
    let mut pd = f.pd(0).await;
    let (status, body) = f
        .control("PUT", "/standin/stores/1", r#"{"version":"3.0.0"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let store = pd
        .get_store(pdpb::GetStoreRequest {
            header: f.header(),
            store_id: 1,
        })
        .await;
    assert_eq!(store.unwrap().into_inner().store.unwrap().version, "3.0.0");

    let (status, body) = f
        .control("PUT", "/standin/stores/7", r#"{"version":"5.1.0"}"#)
        .await;
    assert_eq!(status, 404, "adding needs an address: {body}");
    let add = r#"{"address":"127.0.0.1:20170","version":"4.0.0-rc.1"}"#;
    let (status, body) = f.control("PUT", "/standin/stores/7", add).await;
    assert_eq!(status, 200, "{body}");
    let all = |exclude| pdpb::GetAllStoresRequest {
        header: f.header(),
        exclude_tombstone_stores: exclude,
    };
    let stores = pd
        .get_all_stores(all(true))
        .await
        .unwrap()
        .into_inner()
        .stores;
    let ids: Vec<_> = stores.iter().map(|s| (s.id, s.version.as_str())).collect();
    assert_eq!(ids, [(1, "3.0.0"), (7, "4.0.0-rc.1")]);

    let (status, _) = f
        .control("PUT", "/standin/stores/7", r#"{"state":"Tombstone"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        pd.get_all_stores(all(true))
            .await
            .unwrap()
            .into_inner()
            .stores
            .len(),
        1
    );
    assert_eq!(
        pd.get_all_stores(all(false))
            .await
            .unwrap()
            .into_inner()
            .stores
            .len(),
        2
    );

    let (status, state) = f.control("GET", "/standin/state", "").await;
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["stores"][1]["state"], "Tombstone");
    assert_eq!(state["leader"], "pd-1");
}
