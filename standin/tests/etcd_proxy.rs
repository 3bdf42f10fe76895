//! etcd's gRPC and plain HTTP through a stand-in member's port, as through PD's: an etcd client
//! pointed at the stand-in does put/get/txn, watch and lease keep-alive; PD's HTTP API is on
//! the same port.

mod common;

use std::time::Duration;

use common::start;
use etcd_client::{Client, Compare, CompareOp, EventType, Txn, TxnOp};

const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

#[tokio::test]
async fn an_etcd_client_on_the_standin_port_reaches_the_real_etcd() {
    let f = start(2, &[]).await;
    // The follower too: PD's embedded etcd answers on every member.
    let mut etcd = within("connect", Client::connect([f.url(1)], None))
        .await
        .unwrap();

    within("put", etcd.put("/k/a", "1", None)).await.unwrap();
    let direct = f.etcd_direct().await.get("/k/a", None).await.unwrap();
    assert_eq!(
        direct.kvs()[0].value(),
        b"1",
        "the write landed in the real etcd"
    );
    let got = within("get", etcd.get("/k/a", None)).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"1");

    let txn = Txn::new()
        .when([Compare::value("/k/a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("/k/b", "2", None)]);
    assert!(within("txn", etcd.txn(txn)).await.unwrap().succeeded());

    // Watch: a stream that stays open and delivers later events.
    let mut events = within(
        "watch",
        etcd.watch("/w/", Some(etcd_client::WatchOptions::new().with_prefix())),
    )
    .await
    .unwrap();
    for i in 0..3 {
        within("put", etcd.put(format!("/w/{i}"), "v", None))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = within("watch event", events.message())
            .await
            .unwrap()
            .expect("watch open");
        for e in resp.events() {
            assert_eq!(e.event_type(), EventType::Put);
            seen.push(String::from_utf8_lossy(e.kv().unwrap().key()).into_owned());
        }
    }
    assert_eq!(seen, ["/w/0", "/w/1", "/w/2"]);

    // Lease keep-alive: a bidi stream, several round trips.
    let lease = within("grant", etcd.lease_grant(5, None)).await.unwrap();
    let (mut keeper, mut acks) = within("keep_alive", etcd.lease_keep_alive(lease.id()))
        .await
        .unwrap();
    for _ in 0..3 {
        within("keep alive", keeper.keep_alive()).await.unwrap();
        let ack = within("keep alive ack", acks.message())
            .await
            .unwrap()
            .expect("stream open");
        assert_eq!((ack.id(), ack.ttl()), (lease.id(), 5));
    }
    let put = etcd.put(
        "/leased",
        "x",
        Some(etcd_client::PutOptions::new().with_lease(lease.id())),
    );
    within("leased put", put).await.unwrap();
    within("revoke", etcd.lease_revoke(lease.id()))
        .await
        .unwrap();
    let gone = within("get", etcd.get("/leased", None)).await.unwrap();
    assert!(gone.kvs().is_empty(), "revoking the lease deleted its key");

    // Cluster and Maintenance services pass through too.
    let members = within("member list", etcd.member_list()).await.unwrap();
    assert_eq!(members.members().len(), 1, "the real etcd's membership");
    within("status", etcd.status()).await.unwrap();
}

#[tokio::test]
async fn pd_http_api_and_etcd_http_share_the_port() {
    let f = start(2, &["--pd-version", "v5.1.0"]).await;
    let (status, body) = common::control(&f.url(1), "GET", "/pd/api/v1/version", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"version":"v5.1.0"}"#));
    // etcd's own /health, forwarded.
    let (status, body) = common::control(&f.url(0), "GET", "/health", "").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["health"], "true", "{body}");
    let (status, body) = common::control(&f.url(0), "GET", "/pd/api/v1/health", "").await;
    assert_eq!(status, 200);
    let members: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(members[1]["name"], "pd-2");
    assert_eq!(members[1]["health"], true);
    let (status, _) = common::control(&f.url(0), "GET", "/pd/api/v1/nonsense", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_unreachable_etcd_reads_as_unavailable_naming_it() {
    let mut f = start(1, &[]).await;
    f.etcd.stop();
    let mut etcd = Client::connect([f.url(0)], None).await.unwrap();
    let err = within("get", etcd.get("/k", None)).await.unwrap_err();
    let etcd_client::Error::GRpcStatus(status) = err else {
        panic!("a gRPC status, got {err:?}");
    };
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains(&f.etcd.client_url()),
        "{}",
        status.message()
    );
}
