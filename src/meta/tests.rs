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

/// An upstream whose GC has collected nothing and that records what it was asked.
struct Open;

#[async_trait::async_trait]
impl StartTsGuard for Open {
    async fn current_ts(&self, _: Option<&str>) -> Result<Ts, GuardError> {
        Ok(Ts::from_parts(NOW_MS, 0))
    }
    async fn protect(&self, _: Option<&str>, _: &str, _: u64, _: Ts) -> Result<Ts, GuardError> {
        Ok(Ts(0))
    }
}

/// What a guard was asked: upstream, service, TTL, start-ts.
type Asked = (Option<String>, String, u64, Ts);

/// An upstream with GC at `.0`, recording each protect call; `.1` set: unreachable.
#[derive(Default)]
struct Upstream(u64, bool, parking_lot::Mutex<Vec<Asked>>);

#[async_trait::async_trait]
impl StartTsGuard for Upstream {
    async fn current_ts(&self, _: Option<&str>) -> Result<Ts, GuardError> {
        Ok(Ts::from_parts(NOW_MS, 0))
    }
    async fn protect(
        &self,
        upstream: Option<&str>,
        service: &str,
        ttl: u64,
        start: Ts,
    ) -> Result<Ts, GuardError> {
        self.2
            .lock()
            .push((upstream.map(str::to_owned), service.to_owned(), ttl, start));
        if self.1 {
            return Err(GuardError {
                upstream: "pd at 127.0.0.1:1".into(),
                error: "unreachable".into(),
            });
        }
        Ok(Ts(self.0))
    }
}

#[test]
fn issue_12_create_protects_the_start_ts_and_refuses_one_behind_gc() {
    run(async {
        let (meta, _) = meta();
        let gc = Upstream(5_000, false, Default::default());
        let new = NewChangefeed {
            start_ts: 123,
            ..new_cf("old")
        };
        let err = meta.create_changefeed(new, NOW_MS, &gc).await.unwrap_err();
        assert_eq!(err.code(), "CDC:ErrStartTsBeforeGC");
        assert!(
            err.to_string()
                .contains("start-ts 123 is earlier than GC safepoint at 5000"),
            "{err}"
        );
        assert!(err.is_client_error());
        assert_eq!(
            gc.2.lock().clone(),
            vec![(None, "ticdc-creating-old".to_owned(), 600, Ts(123))],
            "TiCDC's creating service id and TTL, on the default upstream"
        );
        let ok = NewChangefeed {
            start_ts: 5_000,
            upstream: Some("demo://?tables=1".into()),
            ..new_cf("ok")
        };
        meta.create_changefeed(ok, NOW_MS, &gc).await.unwrap();
        assert_eq!(gc.2.lock()[1].0.as_deref(), Some("demo://?tables=1"));

        let down = Upstream(0, true, Default::default());
        let err = meta
            .create_changefeed(new_cf("down"), NOW_MS, &down)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("pd at 127.0.0.1:1: unreachable") && !err.is_client_error(),
            "{err}"
        );
        let keys: Vec<String> = meta
            .raw()
            .await
            .unwrap()
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(
            keys,
            vec!["/tidb/cdc/changefeed/info/ok"],
            "only the accepted one written"
        );
    });
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
        let (id, info) = meta
            .create_changefeed(new_cf("a-1"), NOW_MS, &Open)
            .await
            .unwrap();
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
            .create_changefeed(new_cf("a-1"), NOW_MS, &Open)
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
            .create_changefeed(new_cf("b"), NOW_MS, &Open)
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
            let err = meta
                .create_changefeed(new, NOW_MS, &Open)
                .await
                .unwrap_err();
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
