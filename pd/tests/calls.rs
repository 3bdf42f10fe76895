//! Stores, regions and GC safe points against the fake PD.

mod fake;

use std::time::Duration;

use fake::FakePd;
use rcdc_pd::{metapb, version, PdClient, PdOptions, RegionInfo};

fn options() -> PdOptions {
    PdOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        member_interval: Duration::from_secs(3600),
        connect_retries: 0,
        ..PdOptions::default()
    }
}

fn store(id: u64, version: &str, state: metapb::StoreState) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:2016{id}"),
        version: version.into(),
        state: state as i32,
        ..Default::default()
    }
}

fn region(id: u64, start: &[u8], end: &[u8], leader_store: u64) -> (metapb::Region, metapb::Peer) {
    let leader = metapb::Peer {
        id: id * 10 + leader_store,
        store_id: leader_store,
        role: 0,
    };
    let region = metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: id,
        }),
        peers: vec![leader],
    };
    (region, leader)
}

#[tokio::test]
async fn stores_with_and_without_tombstones_and_their_version_warnings() {
    let pd = FakePd::start(1).await;
    pd.state.lock().stores = vec![
        store(1, "v5.1.0", metapb::StoreState::Up),
        store(2, "3.0.0", metapb::StoreState::Up),
        store(3, "2.1.0", metapb::StoreState::Tombstone),
    ];
    let client = PdClient::connect(&pd.urls, options())
        .await
        .expect("connect");
    let live = client.get_all_stores(true).await.expect("stores");
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1, 2]);
    let all = client.get_all_stores(false).await.expect("all stores");
    assert_eq!(all.len(), 3);
    let two = client.get_store(2).await.expect("store 2");
    assert_eq!(
        (two.version.as_str(), two.address.as_str()),
        ("3.0.0", "127.0.0.1:20162")
    );

    let warnings = version::check_store_versions(&live);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].to_string(),
        "TiKV store 2 at 127.0.0.1:20162 reports version \"3.0.0\": below the minimum \
         supported TiKV 4.0.0-rc.1"
    );
}

#[tokio::test]
async fn scan_regions_reads_new_and_legacy_answers_and_get_region_by_id() {
    let pd = FakePd::start(1).await;
    pd.state.lock().regions = vec![
        region(1, b"", b"b", 1),
        region(2, b"b", b"d", 2),
        region(3, b"d", b"", 1),
    ];
    let client = PdClient::connect(&pd.urls, options())
        .await
        .expect("connect");
    let ids = |rs: &[RegionInfo]| rs.iter().map(|r| r.region.id).collect::<Vec<_>>();

    let found = client.scan_regions(b"c", b"", 0).await.expect("scan");
    assert_eq!(ids(&found), vec![2, 3]);
    assert_eq!(found[0].leader.as_ref().map(|p| p.store_id), Some(2));
    let limited = client
        .scan_regions(b"", b"", 2)
        .await
        .expect("scan with limit");
    assert_eq!(ids(&limited), vec![1, 2]);
    let bounded = client
        .scan_regions(b"a", b"b", 10)
        .await
        .expect("scan to b");
    assert_eq!(ids(&bounded), vec![1]);

    pd.state.lock().legacy_scan = true;
    let legacy = client
        .scan_regions(b"c", b"", 0)
        .await
        .expect("legacy scan");
    assert_eq!(
        legacy, found,
        "the legacy lists give the same regions and leaders"
    );

    let two = client
        .get_region_by_id(2)
        .await
        .expect("region 2")
        .expect("known");
    assert_eq!(two.region.start_key, b"b".to_vec());
    assert_eq!(two.leader.map(|p| p.store_id), Some(2));
    assert_eq!(
        client.get_region_by_id(99).await.expect("unknown region"),
        None
    );
}

#[tokio::test]
async fn service_gc_safe_points_return_the_cluster_minimum() {
    let pd = FakePd::start(1).await;
    pd.state.lock().gc_safe_point = 7;
    let client = PdClient::connect(&pd.urls, options())
        .await
        .expect("connect");
    assert_eq!(client.get_gc_safe_point().await.expect("gc safe point"), 7);

    let update = |id: &'static str, ttl: i64, sp: u64| {
        let client = client.clone();
        async move {
            client
                .update_service_gc_safe_point(id, ttl, sp)
                .await
                .unwrap_or_else(|e| panic!("{id} {ttl} {sp}: {e}"))
        }
    };
    assert_eq!(update("ticdc", 86_400, 100).await, 100);
    assert_eq!(update("br", 600, 150).await, 100, "ticdc holds the minimum");
    // Below the minimum: PD stores nothing and answers the minimum.
    assert_eq!(update("br", 600, 50).await, 100);
    assert_eq!(update("ticdc", 86_400, 120).await, 120);
    assert_eq!(update("ticdc", 86_400, 40).await, 120);
    {
        let s = pd.state.lock();
        assert_eq!(
            s.service_safe_points.get(b"ticdc".as_slice()),
            Some(&(120, 86_400))
        );
        assert_eq!(
            s.service_safe_points.get(b"br".as_slice()),
            Some(&(150, 600))
        );
    }
    // TTL <= 0 removes the entry (TiCDC's "unsafe delete-service-gc-safepoint" sends 0).
    assert_eq!(update("ticdc", 0, 0).await, 150);
    assert_eq!(update("br", -1, 0).await, 0);
    assert!(pd.state.lock().service_safe_points.is_empty());
}
