//! Service GC safe points with PD v5.1's rules (tikv-pd-protocol.md §5), through the gRPC
//! stubs, with etcd read directly to see what the stand-in stored where PD stores it.

mod common;

use common::{start, Fixture};
use rcdc_proto::pdpb;
use serde_json::{json, Value};
use tonic::Code;

const MAX: i64 = i64::MAX;

async fn update(
    f: &Fixture,
    service: &str,
    ttl: i64,
    safe_point: u64,
) -> Result<pdpb::UpdateServiceGcSafePointResponse, tonic::Status> {
    let req = pdpb::UpdateServiceGcSafePointRequest {
        header: f.header(),
        service_id: service.as_bytes().to_vec(),
        ttl,
        safe_point,
    };
    f.pd(0)
        .await
        .update_service_gc_safe_point(req)
        .await
        .map(|r| r.into_inner())
}

fn service_key(f: &Fixture, service: &str) -> String {
    format!("/pd/{}/gc/safe_point/service/{service}", f.cluster_id)
}

/// The stored entry of `service`, as JSON, or None.
async fn stored(f: &Fixture, service: &str) -> Option<Value> {
    let mut etcd = f.etcd_direct().await;
    let resp = etcd
        .get(service_key(f, service), None)
        .await
        .expect("etcd get");
    resp.kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).expect("PD's JSON"))
}

fn reply_of(r: &pdpb::UpdateServiceGcSafePointResponse) -> (String, u64) {
    (
        String::from_utf8_lossy(&r.service_id).into_owned(),
        r.min_safe_point,
    )
}

#[tokio::test]
async fn service_safe_points_follow_pd_5_1() {
    let f = start(1, &[]).await;

    // 1. The first update on an empty cluster creates gc_worker = 0, which is the minimum; the
    //    caller's entry is stored since 10 >= 0, and the reply names gc_worker.
    let r = update(&f, "ticdc", 100, 10).await.unwrap();
    assert_eq!(reply_of(&r), ("gc_worker".into(), 0));
    assert!(r.ttl > MAX / 2, "gc_worker never expires: TTL {}", r.ttl);
    assert_eq!(
        stored(&f, "gc_worker").await,
        Some(json!({"service_id": "gc_worker", "expired_at": MAX, "safe_point": 0}))
    );
    let ticdc = stored(&f, "ticdc").await.expect("ticdc stored");
    assert_eq!(ticdc["safe_point"], 10);

    // 2. TiDB's GC worker moves gc_worker up; it held the minimum, so the minimum is reloaded
    //    and the reply names ticdc with its remaining TTL (from a fresh TSO's seconds).
    let r = update(&f, "gc_worker", MAX, 20).await.unwrap();
    assert_eq!(reply_of(&r), ("ticdc".into(), 10));
    assert!((98..=100).contains(&r.ttl), "ticdc's TTL left: {}", r.ttl);
    // TTL = expired_at - now, with "now" a fresh TSO's seconds.
    let expired_at = ticdc["expired_at"].as_i64().unwrap();
    let now = now_of(&f).await;
    assert!(
        (expired_at - r.ttl - now).abs() <= 1,
        "{expired_at} - {} vs now {now}",
        r.ttl
    );

    // 3. A request below the minimum is silently not stored.
    let r = update(&f, "late", 100, 5).await.unwrap();
    assert_eq!(reply_of(&r), ("ticdc".into(), 10));
    assert_eq!(stored(&f, "late").await, None);

    // 4. Moving up is stored; the same service holding the minimum gets the next minimum.
    let r = update(&f, "ticdc", 100, 30).await.unwrap();
    assert_eq!(reply_of(&r), ("gc_worker".into(), 20));

    // 5. TTL <= 0 removes the entry; removing gc_worker is an error.
    let r = update(&f, "ticdc", 0, 0).await.unwrap();
    assert_eq!(reply_of(&r), ("gc_worker".into(), 20));
    assert_eq!(stored(&f, "ticdc").await, None);
    let err = update(&f, "gc_worker", -1, 0).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Unknown,
            "cannot remove service safe point of gc_worker"
        )
    );
    let err = update(&f, "gc_worker", 100, 25).await.unwrap_err();
    assert_eq!(
        err.message(),
        "TTL of gc_worker's service safe point must be infinity"
    );
    let err = update(&f, "", 100, 25).await.unwrap_err();
    assert_eq!(
        err.message(),
        "service id of service safepoint cannot be empty"
    );
}

/// The physical seconds of a fresh TSO ("now" as PD sees it).
async fn now_of(f: &Fixture) -> i64 {
    let ts = common::tso(&mut f.pd(0).await, f.cluster_id, 1)
        .await
        .unwrap();
    ts.physical / 1000
}

#[tokio::test]
async fn expired_entries_are_deleted_and_a_missing_gc_worker_is_recreated_at_the_min() {
    let f = start(1, &[]).await;
    let now = now_of(&f).await;
    let mut etcd = f.etcd_direct().await;
    // Entries as PD would have left them: one expired a second ago, one live, no gc_worker.
    let put = |id: &str, expired_at: i64, sp: u64| {
        (
            service_key(&f, id),
            json!({"service_id": id, "expired_at": expired_at, "safe_point": sp}).to_string(),
        )
    };
    for (k, v) in [put("old", now - 1, 1), put("live", now + 1000, 30)] {
        etcd.put(k, v, None).await.unwrap();
    }
    let r = update(&f, "other", 100, 50).await.unwrap();
    // The expired entry is gone, gc_worker is created at the live minimum (30) and answers.
    assert_eq!(stored(&f, "old").await, None);
    assert_eq!(reply_of(&r), ("gc_worker".into(), 30));
    assert_eq!(stored(&f, "gc_worker").await.unwrap()["safe_point"], 30);
    assert_eq!(stored(&f, "other").await.unwrap()["safe_point"], 50);

    // A gc_worker with a finite expiry is made infinite.
    let gc_worker = json!({"service_id": "gc_worker", "expired_at": 5, "safe_point": 30});
    etcd.put(service_key(&f, "gc_worker"), gc_worker.to_string(), None)
        .await
        .unwrap();
    update(&f, "other", 100, 50).await.unwrap();
    assert_eq!(stored(&f, "gc_worker").await.unwrap()["expired_at"], MAX);

    // An undecodable entry fails the request, as in PD.
    etcd.put(service_key(&f, "broken"), "{", None)
        .await
        .unwrap();
    let err = update(&f, "other", 100, 50).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.message().contains("broken"), "{}", err.message());
}

#[tokio::test]
async fn get_gc_safe_point_reads_the_gc_workers_value_and_followers_refuse() {
    let f = start(2, &[]).await;
    let req = || pdpb::GetGcSafePointRequest { header: f.header() };
    let sp = f
        .pd(0)
        .await
        .get_gc_safe_point(req())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sp.safe_point, 0, "nothing set yet");
    let key = format!("/pd/{}/gc/safe_point", f.cluster_id);
    f.etcd_direct().await.put(key, "1f", None).await.unwrap();
    let sp = f
        .pd(0)
        .await
        .get_gc_safe_point(req())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sp.safe_point, 31, "PD stores it in hex");

    let err = f.pd(1).await.get_gc_safe_point(req()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let r = pdpb::UpdateServiceGcSafePointRequest {
        header: f.header(),
        service_id: b"ticdc".to_vec(),
        ttl: 10,
        safe_point: 1,
    };
    let err = f
        .pd(1)
        .await
        .update_service_gc_safe_point(r)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "not leader")
    );
}
