//! Leader discovery and the errors of `connect` and the calls, against the fake PD cluster (and
//! a real etcd for NotPd). Everything listens on 127.0.0.1.

mod fake;

use std::time::Duration;

use fake::{dead_url, FakePd, CLUSTER_ID};
use rcdc_pd::{pdpb, PdClient, PdError, PdOptions};
use rcdc_reactor::testing::{wait_until, EtcdHarness};
use tokio::time::Instant;

/// Quick options: the member loop stays out of the way unless a test wants it.
fn options() -> PdOptions {
    PdOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        member_interval: Duration::from_secs(3600),
        connect_retries: 0,
        ..PdOptions::default()
    }
}

async fn connect(urls: &[String], options: PdOptions) -> PdClient {
    PdClient::connect(urls, options)
        .await
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"))
}

#[tokio::test]
async fn connect_discovers_cluster_id_leader_and_members() {
    let pd = FakePd::start(3).await;
    pd.set_leader(Some(1));
    // Only member 0 is given; it names member 1 as leader.
    let client = connect(&pd.urls[..1], options()).await;
    assert_eq!(client.cluster_id(), CLUSTER_ID);
    assert_eq!(client.leader_url(), pd.urls[1]);
    let names: Vec<String> = client.members().into_iter().map(|m| m.name).collect();
    assert_eq!(names, vec!["pd-0", "pd-1", "pd-2"]);
    // Calls go to the leader, with the cluster id in their header.
    client.get_gc_safe_point().await.expect("GetGCSafePoint");
    let s = pd.state.lock();
    assert_eq!(s.calls_to(1, "GetGCSafePoint"), 1);
    assert_eq!(s.calls_to(0, "GetGCSafePoint"), 0);
    assert_eq!(s.bad_headers, 0, "every request carried the cluster id");
}

#[tokio::test]
async fn bare_host_port_endpoints_work_like_pd_flags() {
    let pd = FakePd::start(1).await;
    let bare = pd.urls[0].trim_start_matches("http://").to_string();
    let client = connect(&[bare], options()).await;
    assert_eq!(client.leader_url(), pd.urls[0]);
}

#[tokio::test]
async fn unavailable_members_are_skipped() {
    let pd = FakePd::start(3).await;
    pd.set_leader(Some(2));
    pd.state.lock().down.insert(0);
    // A URL where nothing listens, a member that answers Unavailable, then a healthy one.
    let urls = vec![dead_url().await, pd.urls[0].clone(), pd.urls[1].clone()];
    let client = connect(&urls, options()).await;
    assert_eq!(client.leader_url(), pd.urls[2]);
    assert_eq!(pd.state.lock().calls_to(1, "GetMembers"), 1);
}

#[tokio::test]
async fn leader_changes_are_followed_without_error_to_callers() {
    let pd = FakePd::start(3).await;
    let client = connect(&pd.urls[..1], options()).await;
    let first = client.get_ts().await.expect("ts on the first leader");

    // The leader moves; the old one answers "not leader". The member loop is an hour away,
    // so the calls themselves must find the new leader.
    pd.set_leader(Some(1));
    let stores = client.get_all_stores(false).await;
    assert!(
        stores.is_ok(),
        "GetAllStores across a leader move: {stores:?}"
    );
    assert_eq!(client.leader_url(), pd.urls[1]);
    let second = client.get_ts().await.expect("ts after the move");
    assert!(second > first);

    // The new leader goes down and member 2 takes over: GetMembers skips the down member.
    pd.state.lock().down.insert(1);
    pd.set_leader(Some(2));
    let third = client.get_ts().await.expect("ts after a second move");
    assert!(third > second);
    client
        .get_gc_safe_point()
        .await
        .expect("a unary call after the second move");
    assert_eq!(client.leader_url(), pd.urls[2]);
    let s = pd.state.lock();
    assert!(
        s.calls_to(0, "GetAllStores") >= 1,
        "the first try went to the old leader"
    );
    assert!(s.calls_to(1, "Tso") >= 1, "the stream moved to member 1");
    assert!(s.calls_to(2, "Tso") >= 1, "and then to member 2");
    assert_eq!(s.bad_headers, 0);
}

#[tokio::test]
async fn the_member_loop_follows_a_leader_change_without_calls() {
    let pd = FakePd::start(3).await;
    let options = PdOptions {
        member_interval: Duration::from_millis(100),
        ..options()
    };
    let client = connect(&pd.urls, options).await;
    assert_eq!(client.leader_url(), pd.urls[0]);
    pd.set_leader(Some(2));
    let url = pd.urls[2].clone();
    wait_until(
        Duration::from_secs(5),
        "the client follows the leader to member 2",
        || {
            let client = client.clone();
            let url = url.clone();
            async move { client.leader_url() == url }
        },
    )
    .await;
}

#[tokio::test]
async fn a_foreign_cluster_id_is_a_mismatch_naming_both_ids_and_the_endpoint() {
    let pd = FakePd::start(2).await;
    let client = connect(&pd.urls, options()).await;
    pd.state.lock().answer_cluster_id.insert(0, 42);
    let err = client.get_gc_safe_point().await.expect_err("mismatch");
    match &err {
        PdError::ClusterIdMismatch {
            endpoint,
            method,
            expected,
            got,
        } => {
            assert_eq!(endpoint, &pd.urls[0]);
            assert_eq!(*method, "GetGCSafePoint");
            assert_eq!((*expected, *got), (CLUSTER_ID, 42));
        }
        other => panic!("expected ClusterIdMismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&pd.urls[0]) && text.contains("42") && text.contains(&CLUSTER_ID.to_string())
    );
    // The TSO answer is checked too.
    let err = client.get_ts().await.expect_err("mismatch on Tso");
    assert!(
        matches!(
            err,
            PdError::ClusterIdMismatch {
                method: "Tso",
                got: 42,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_header_error_becomes_a_server_error_with_its_type_and_message() {
    let pd = FakePd::start(1).await;
    let client = connect(&pd.urls, options()).await;
    // PD's answer for an unknown store.
    let err = client.get_store(77).await.expect_err("unknown store");
    assert_eq!(
        err.to_string(),
        format!(
            "PD at {} refused GetStore: UNKNOWN: invalid store ID 77, not found",
            pd.urls[0]
        )
    );
    pd.state.lock().header_error = Some((
        pdpb::ErrorType::NotBootstrapped,
        "TiKV cluster not bootstrapped, please start TiKV first".into(),
    ));
    let err = client
        .update_service_gc_safe_point("ticdc", 60, 1)
        .await
        .expect_err("not bootstrapped");
    match err {
        PdError::Server {
            endpoint,
            method,
            kind,
            message,
        } => {
            assert_eq!(endpoint, pd.urls[0]);
            assert_eq!(method, "UpdateServiceGCSafePoint");
            assert_eq!(kind, "NOT_BOOTSTRAPPED");
            assert!(message.starts_with("TiKV cluster not bootstrapped"));
        }
        other => panic!("expected Server, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pd_that_never_answers_times_out_within_the_timeout() {
    let pd = FakePd::start(1).await;
    let timeout = Duration::from_millis(400);
    let options = PdOptions {
        request_timeout: timeout,
        ..options()
    };
    let client = connect(&pd.urls, options.clone()).await;
    pd.state.lock().silent.insert(0);

    let started = Instant::now();
    let err = client.get_all_stores(true).await.expect_err("silent PD");
    let took = started.elapsed();
    assert!(
        matches!(&err, PdError::Timeout { method: "GetAllStores", endpoint, .. } if *endpoint == pd.urls[0]),
        "{err:?}"
    );
    assert!(took >= timeout && took < timeout * 3, "took {took:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "PD at {} did not answer GetAllStores within 400ms",
            pd.urls[0]
        )
    );

    let started = Instant::now();
    let err = client.get_ts().await.expect_err("silent TSO");
    assert!(
        matches!(err, PdError::Timeout { method: "Tso", .. }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );

    // connect itself: GetMembers never answers.
    let started = Instant::now();
    let err = PdClient::connect(&pd.urls, options)
        .await
        .err()
        .expect("silent connect");
    assert!(
        matches!(
            err,
            PdError::Timeout {
                method: "GetMembers",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_pd_is_named() {
    let url = dead_url().await;
    let err = PdClient::connect(std::slice::from_ref(&url), options())
        .await
        .err()
        .expect("nobody there");
    assert!(
        matches!(&err, PdError::Unreachable { endpoint, .. } if *endpoint == url),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("PD at {url} is unreachable: ")),
        "{text}"
    );
}

#[tokio::test]
async fn a_grpc_server_without_pd_is_not_pd() {
    // A tonic server with no service: every path is Unimplemented.
    let listener = fake::bind("127.0.0.1:0").await;
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::default())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);
    let err = PdClient::connect(std::slice::from_ref(&url), options())
        .await
        .err()
        .expect("not a PD");
    assert!(
        matches!(&err, PdError::NotPd { endpoint } if *endpoint == url),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("not a PD: {url} answered GetMembers with Unimplemented (a plain etcd?)")
    );
    server.abort();
}

#[tokio::test]
async fn not_pd_is_final_and_wins_over_other_failures() {
    let pd = FakePd::start(2).await;
    pd.state.lock().unimplemented.insert(1);
    pd.state.lock().down.insert(0);
    let options = PdOptions {
        connect_retries: 10,
        ..options()
    };
    let err = PdClient::connect(&pd.urls, options)
        .await
        .err()
        .expect("not a PD");
    assert!(
        matches!(&err, PdError::NotPd { endpoint } if *endpoint == pd.urls[1]),
        "{err:?}"
    );
    // Retrying cannot turn a server into a PD: each member was asked once.
    let s = pd.state.lock();
    assert_eq!(
        (s.calls_to(0, "GetMembers"), s.calls_to(1, "GetMembers")),
        (1, 1)
    );
}

#[tokio::test]
async fn a_plain_etcd_is_not_pd() {
    let etcd = EtcdHarness::start().await;
    // A dead endpoint first: NotPd wins over the other endpoint's failure.
    let urls = vec![dead_url().await, etcd.client_url()];
    let err = PdClient::connect(&urls, options())
        .await
        .err()
        .expect("etcd is not PD");
    assert!(
        matches!(&err, PdError::NotPd { endpoint } if *endpoint == etcd.client_url()),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_retries_with_backoff_until_pd_comes_up() {
    // A port that first only accepts and drops connections, then serves PD.
    let listener = fake::bind("127.0.0.1:0").await;
    let addr = listener.local_addr().expect("addr");
    let url = format!("http://{addr}");
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let refuser = tokio::spawn(async move {
        loop {
            if let Ok((conn, _)) = listener.accept().await {
                drop(conn);
                let _ = accepted_tx.send(());
            }
        }
    });
    let options = PdOptions {
        connect_retries: 10,
        ..options()
    };
    let connecting = tokio::spawn({
        let url = url.clone();
        async move { PdClient::connect(&[url], options).await }
    });
    // The first attempt reached the port and failed.
    tokio::time::timeout(Duration::from_secs(5), accepted.recv())
        .await
        .expect("the client dialled the port")
        .expect("refuser alive");
    refuser.abort();
    let _ = refuser.await;
    let pd = FakePd::start_on(vec![fake::bind(&addr.to_string()).await]).await;
    let client = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("connect finished within its backoff")
        .expect("connect task")
        .expect("connected once PD came up");
    assert_eq!(client.leader_url(), url);
    assert_eq!(pd.state.lock().calls_to(0, "GetMembers"), 1);
}

#[tokio::test]
async fn bad_endpoints_fail_before_dialling() {
    let err = PdClient::connect(&["https://127.0.0.1:1".into()], options())
        .await
        .err()
        .expect("https without TLS");
    assert!(matches!(err, PdError::BadEndpoint { .. }), "{err:?}");
    let err = PdClient::connect(&[], options()).await.err().expect("none");
    assert!(matches!(err, PdError::NoEndpoints));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_member_loop() {
    let pd = FakePd::start(1).await;
    let options = PdOptions {
        member_interval: Duration::from_millis(20),
        ..options()
    };
    let client = connect(&pd.urls, options).await;
    let state = pd.state.clone();
    let asked = move || state.lock().calls_to(0, "GetMembers");
    let start = asked();
    let probe = asked.clone();
    wait_until(Duration::from_secs(5), "the member loop asks again", || {
        let n = probe();
        async move { n >= start + 2 }
    })
    .await;
    let clone = client.clone();
    drop(client);
    let still = asked();
    // A clone keeps the loop alive.
    let probe = asked.clone();
    wait_until(
        Duration::from_secs(5),
        "the loop runs while a clone lives",
        || {
            let n = probe();
            async move { n >= still + 2 }
        },
    )
    .await;
    drop(clone);
    // A negative property needs a window: the loop would ask ~15 times in 300 ms; at most the
    // one already in flight may still land.
    let at_drop = asked();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        asked() <= at_drop + 1,
        "{} GetMembers after the last handle was dropped",
        asked() - at_drop
    );
}
