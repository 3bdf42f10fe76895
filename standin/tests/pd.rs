//! `pdpb.PD` on a 3-member stand-in in front of a real etcd, through the generated client
//! stubs: members, leadership and "not leader", cluster id checks, TSO, stores and regions.

mod common;

use common::{compose, start, tso};
use rcdc_proto::pdpb;
use tonic::Code;

#[tokio::test]
async fn every_member_lists_all_members_and_the_leader() {
    let f = start(3, &[]).await;
    for member in 0..3 {
        let resp = f
            .pd(member)
            .await
            .get_members(pdpb::GetMembersRequest { header: None })
            .await
            .unwrap_or_else(|e| panic!("GetMembers on member {member}: {e}"))
            .into_inner();
        assert_eq!(resp.header.unwrap().cluster_id, f.cluster_id);
        let names: Vec<_> = resp.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pd-1", "pd-2", "pd-3"]);
        for (i, m) in resp.members.iter().enumerate() {
            assert_eq!(m.client_urls, vec![f.url(i)], "client_urls of {}", m.name);
            assert_ne!(m.member_id, 0);
        }
        assert_eq!(resp.leader.as_ref().unwrap().name, "pd-1");
        assert_eq!(resp.etcd_leader.as_ref().unwrap().name, "pd-1");
    }
}

#[tokio::test]
async fn after_a_leader_move_a_follower_answers_not_leader() {
    let f = start(3, &[]).await;
    let before = tso(&mut f.pd(0).await, f.cluster_id, 1)
        .await
        .expect("TSO on pd-1");
    let (status, body) = f
        .control("POST", "/standin/leader", r#"{"to":"pd-2"}"#)
        .await;
    assert_eq!((status, body.trim()), (200, r#"{"leader":"pd-2"}"#));

    let members = f
        .pd(2)
        .await
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    assert_eq!(members.unwrap().into_inner().leader.unwrap().name, "pd-2");

    let req = pdpb::GetAllStoresRequest {
        header: f.header(),
        exclude_tombstone_stores: false,
    };
    let err = f.pd(0).await.get_all_stores(req).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "not leader")
    );
    f.pd(1)
        .await
        .get_all_stores(req)
        .await
        .expect("the new leader answers");

    // TSO on a follower: PD's allocator refuses (Unknown), and the stream ends.
    let err = tso(&mut f.pd(0).await, f.cluster_id, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.message().contains("not leader"), "{}", err.message());
    let after = tso(&mut f.pd(1).await, f.cluster_id, 1)
        .await
        .expect("TSO on pd-2");
    assert!(
        compose(&after) > compose(&before),
        "{after:?} after {before:?}"
    );
    // The new leader synced past the saved window, as a new PD leader does.
    assert!(
        after.physical > before.physical + 1_000,
        "{after:?} vs {before:?}"
    );

    // Without a target, the next member after the leader.
    let (status, body) = f.control("POST", "/standin/leader", "").await;
    assert_eq!((status, body.trim()), (200, r#"{"leader":"pd-3"}"#));
    let (status, body) = f
        .control("POST", "/standin/leader", r#"{"to":"pd-9"}"#)
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_wrong_cluster_id_is_refused() {
    let f = start(2, &["--cluster-id", "4242"]).await;
    assert_eq!(f.cluster_id, 4242);
    let wrong = common::header(7);
    let err = f
        .pd(0)
        .await
        .get_store(pdpb::GetStoreRequest {
            header: wrong,
            store_id: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "mismatch cluster id, need 4242 but got 7");
    let err = tso(&mut f.pd(0).await, 7, 1).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::FailedPrecondition,
            "mismatch cluster id, need 4242 but got 7"
        )
    );
    // PD checks leadership before the cluster id.
    let err = f
        .pd(1)
        .await
        .get_store(pdpb::GetStoreRequest {
            header: common::header(7),
            store_id: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn tso_is_monotonic_and_answers_the_last_of_a_batch() {
    let f = start(1, &[]).await;
    let mut pd = f.pd(0).await;
    let mut last = 0;
    for count in [1, 10, 1, 1000, 3] {
        let ts = tso(&mut pd, f.cluster_id, count).await.unwrap();
        let first = compose(&ts) - u64::from(count) + 1;
        assert!(
            first > last,
            "batch of {count} starts at {first}, after {last}"
        );
        last = compose(&ts);
    }
    let err = tso(&mut pd, f.cluster_id, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(
        err.message().contains("tso count should be positive"),
        "{}",
        err.message()
    );

    // Many requests on one stream, each answered in order.
    let reqs: Vec<_> = (0..50)
        .map(|_| pdpb::TsoRequest {
            header: f.header(),
            count: 2,
            dc_location: String::new(),
        })
        .collect();
    let mut stream = pd
        .tso(futures::stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(resp) = stream.message().await.unwrap() {
        let ts = compose(&resp.timestamp.unwrap());
        assert!(ts - 1 > last, "{ts} after {last}");
        last = ts;
        n += 1;
    }
    assert_eq!(n, 50);
}

#[tokio::test]
async fn stores_and_regions_are_served_like_pd() {
    let f = start(
        1,
        &[
            "--store",
            "id=1,address=127.0.0.1:20160",
            "--store",
            "id=4,address=127.0.0.1:20161,version=4.0.0,state=Tombstone",
        ],
    )
    .await;
    let mut pd = f.pd(0).await;
    let all = |exclude| pdpb::GetAllStoresRequest {
        header: f.header(),
        exclude_tombstone_stores: exclude,
    };
    let stores = pd
        .get_all_stores(all(false))
        .await
        .unwrap()
        .into_inner()
        .stores;
    assert_eq!(stores.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 4]);
    assert_eq!(stores[0].version, "5.1.0");
    let live = pd
        .get_all_stores(all(true))
        .await
        .unwrap()
        .into_inner()
        .stores;
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), [1]);

    let store = pd
        .get_store(pdpb::GetStoreRequest {
            header: f.header(),
            store_id: 4,
        })
        .await;
    let store = store.unwrap().into_inner().store.unwrap();
    assert_eq!(
        (store.address.as_str(), store.version.as_str()),
        ("127.0.0.1:20161", "4.0.0")
    );
    let err = pd
        .get_store(pdpb::GetStoreRequest {
            header: f.header(),
            store_id: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "invalid store ID 9, not found")
    );

    let scan = pd
        .scan_regions(pdpb::ScanRegionsRequest {
            header: f.header(),
            start_key: b"t\x80".to_vec(),
            limit: 20,
            end_key: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.regions.len(), 1);
    assert_eq!(scan.region_metas.len(), 1, "the legacy list is filled too");
    assert_eq!(scan.leaders.len(), 1);
    let region = scan.regions[0].region.clone().unwrap();
    assert_eq!(
        (region.id, region.start_key.len(), region.end_key.len()),
        (2, 0, 0)
    );
    assert_eq!(scan.regions[0].leader.unwrap().store_id, 1);
    assert_eq!(scan.region_metas[0], region);

    let by_key = pd.get_region(pdpb::GetRegionRequest {
        header: f.header(),
        region_key: b"zzz".to_vec(),
    });
    assert_eq!(by_key.await.unwrap().into_inner().region.unwrap().id, 2);
    let by_id = pd.get_region_by_id(pdpb::GetRegionByIdRequest {
        header: f.header(),
        region_id: 2,
    });
    assert_eq!(by_id.await.unwrap().into_inner().leader.unwrap().id, 3);
    let missing = pd.get_region_by_id(pdpb::GetRegionByIdRequest {
        header: f.header(),
        region_id: 99,
    });
    let missing = missing.await.unwrap().into_inner();
    assert!(
        missing.region.is_none() && missing.header.is_some(),
        "PD answers just the header"
    );
}
