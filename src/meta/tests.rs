use std::sync::Arc;

use rcdc_reactor::store::mem::MemStore;
use rcdc_reactor::store::{MetaStore, Txn, TxnOp};
use rcdc_state::model::{encode, ChangeFeedInfo, FeedState};
use rcdc_state::{ChangefeedId, KeyLayout, Ts};

use super::*;

const NOW_MS: u64 = 1_700_000_000_000;

fn meta() -> (Meta, Arc<MemStore>) {
    let store = Arc::new(MemStore::new());
    (Meta::new(store.clone(), KeyLayout::default()), store)
}

fn new_cf(id: &str) -> NewChangefeed {
    NewChangefeed {
        id: id.into(),
        sink_uri: "blackhole://".into(),
        ..Default::default()
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

#[test]
fn create_writes_info_once_and_refuses_a_duplicate() {
    run(async {
        let (meta, _) = meta();
        let (id, info) = meta.create_changefeed(new_cf("a-1"), NOW_MS).await.unwrap();
        assert_eq!(id.as_str(), "a-1");
        assert_eq!(info.start_ts, Ts::from_parts(NOW_MS, 0));
        assert_eq!(info.state, FeedState::Normal);
        assert!(info.config.case_sensitive, "TiCDC's default replica config");
        let state = meta.load().await.unwrap();
        assert!(state
            .changefeed(&id)
            .and_then(|c| c.info.as_ref())
            .is_some());
        let err = meta
            .create_changefeed(new_cf("a-1"), NOW_MS)
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::AlreadyExists(_)), "{err}");
        assert_eq!(err.code(), "CDC:ErrChangeFeedAlreadyExists");
    });
}

#[test]
fn create_refuses_when_only_the_status_key_is_left() {
    run(async {
        let (meta, store) = meta();
        let id = ChangefeedId::from("b");
        let put = Txn {
            success: vec![TxnOp::Put {
                key: meta.layout().status(&id),
                value: br#"{"resolved-ts":1,"checkpoint-ts":1,"admin-job-type":0}"#.to_vec(),
                lease: 0,
            }],
            ..Txn::default()
        };
        store.txn(put).await.unwrap();
        let err = meta
            .create_changefeed(new_cf("b"), NOW_MS)
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::AlreadyExists(_)), "{err}");
    });
}

#[test]
fn create_validation_names_what_is_wrong_and_writes_nothing() {
    run(async {
        let (meta, _) = meta();
        let cases: Vec<(NewChangefeed, &str)> = vec![
            (new_cf("bad_id"), "invalid changefeed id \"bad_id\""),
            (
                NewChangefeed {
                    sink_uri: "kafka://x".into(),
                    ..new_cf("c")
                },
                "invalid sink URI",
            ),
            (
                NewChangefeed {
                    upstream: Some("nope".into()),
                    ..new_cf("c")
                },
                "invalid upstream URI",
            ),
            (
                NewChangefeed {
                    start_ts: Ts::from_parts(NOW_MS + 60_000, 0).0,
                    ..new_cf("c")
                },
                "is later than the current ts",
            ),
            (
                NewChangefeed {
                    start_ts: 100,
                    target_ts: 100,
                    ..new_cf("c")
                },
                "target-ts 100 must be larger than start-ts 100",
            ),
        ];
        for (new, want) in cases {
            let err = meta.create_changefeed(new, NOW_MS).await.unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
            assert!(err.is_client_error());
        }
        assert!(meta.raw().await.unwrap().is_empty(), "nothing written");
    });
}

async fn put_info(store: &MemStore, meta: &Meta, id: &ChangefeedId, state: FeedState) {
    let info = ChangeFeedInfo {
        sink_uri: "blackhole://".into(),
        start_ts: Ts(10),
        state,
        ..Default::default()
    };
    let put = Txn {
        success: vec![TxnOp::Put {
            key: meta.layout().info(id),
            value: encode(&info).unwrap(),
            lease: 0,
        }],
        ..Txn::default()
    };
    store.txn(put).await.unwrap();
}

#[test]
fn update_only_when_stopped_and_only_operator_fields() {
    run(async {
        let (meta, store) = meta();
        let id = ChangefeedId::from("u");
        let err = meta
            .update_changefeed(&id, ChangefeedUpdate::default())
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::NotFound(_)));
        put_info(&store, &meta, &id, FeedState::Normal).await;
        let up = ChangefeedUpdate {
            target_ts: Some(99),
            ..Default::default()
        };
        let err = meta.update_changefeed(&id, up.clone()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "changefeed u is normal; it can be updated only when stopped (pause it first)"
        );
        put_info(&store, &meta, &id, FeedState::Stopped).await;
        let err = meta
            .update_changefeed(
                &id,
                ChangefeedUpdate {
                    target_ts: Some(5),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("target-ts 5 must be larger"),
            "{err}"
        );
        let info = meta.update_changefeed(&id, up).await.unwrap();
        assert_eq!(info.target_ts, Ts(99));
        assert_eq!(info.state, FeedState::Stopped, "owner fields untouched");
    });
}

#[test]
fn replica_config_toml_takes_defaults_and_refuses_unknown_keys() {
    let c =
        replica_config_from_toml("force-replicate = true\n[filter]\nrules = ['test.*']\n").unwrap();
    assert!(c.force_replicate);
    assert!(c.case_sensitive, "unset keys keep TiCDC's defaults");
    let err = replica_config_from_toml("[filter]\nrulez = ['x']\n").unwrap_err();
    assert_eq!(err, "unknown key \"filter.rulez\" in the changefeed config");
    assert!(replica_config_from_toml("= broken").is_err());
}

#[test]
fn go_time_is_rfc3339() {
    let t = go_time(NOW_MS);
    assert!(t.starts_with("2023-11-1"), "{t}");
    assert!(t.contains('T'));
}

#[tokio::test(start_paused = true)]
async fn owner_within_waits_out_an_election_and_then_says_none() {
    let (meta, store) = meta();
    let grace = Duration::from_secs(2);
    // No owner and none coming: `None`, after the grace.
    let started = tokio::time::Instant::now();
    assert_eq!(meta.owner_within(grace).await.unwrap(), None);
    assert!(started.elapsed() >= grace, "waited the grace out");

    // An owner elected during the grace is found.
    let owner_key = format!("{}/1234", meta.layout().owner_prefix());
    let elect = {
        let store = store.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let put = TxnOp::Put {
                key: owner_key,
                value: b"capture-1".to_vec(),
                lease: 0,
            };
            store
                .txn(Txn {
                    success: vec![put],
                    ..Txn::default()
                })
                .await
                .unwrap();
        }
    };
    let (found, ()) = tokio::join!(meta.owner_within(grace), elect);
    assert_eq!(
        found.unwrap().map(|c| c.to_string()),
        Some("capture-1".into())
    );
}
