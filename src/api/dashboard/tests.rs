use std::sync::atomic::{AtomicU64, Ordering};

use rcdc_reactor::store::mem::MemStore;
use rcdc_reactor::store::{MetaStore, Txn, TxnOp};
use rcdc_state::model::{
    encode, CaptureInfo, ChangeFeedInfo, ChangeFeedStatus, FeedState, RunningError,
    TableReplicaInfo, TaskStatus,
};
use rcdc_state::{CaptureId, KeyLayout, TableId};

use super::view::{dashboard_data, lag_view, TABLE_IDS_SHOWN};
use super::*;
use crate::api::views::TimeZone;

const T0: u64 = 1_700_000_000_000;

fn info(state: FeedState, sink: &str) -> ChangeFeedInfo {
    ChangeFeedInfo {
        sink_uri: sink.into(),
        start_ts: Ts::from_parts(T0 - 60_000, 0),
        state,
        ..Default::default()
    }
}

fn tables(ids: std::ops::Range<i64>) -> TaskStatus {
    TaskStatus {
        tables: Some(
            ids.map(|t| (TableId(t), TableReplicaInfo::default()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Two captures; `alpha` replicating on both, `beta` in error, `gamma` removed (with an old
/// error), and `broken` whose status does not decode.
fn state() -> GlobalState {
    let layout = KeyLayout::default();
    let mut s = GlobalState::new(layout.clone());
    let mut put = |k: String, v: Vec<u8>| {
        s.apply(&k, Some(&v));
    };
    for (id, addr) in [("cap-a", "127.0.0.1:8300"), ("cap-b", "127.0.0.1:8301")] {
        let c = CaptureInfo {
            id: CaptureId::new(id),
            address: addr.into(),
            version: "v0.1.0".into(),
            extra: Default::default(),
        };
        put(layout.capture(&c.id), encode(&c).unwrap());
    }
    let (alpha, beta, gamma) = (
        ChangefeedId::from("alpha"),
        ChangefeedId::from("beta"),
        ChangefeedId::from("gamma"),
    );
    put(
        layout.info(&alpha),
        encode(&info(FeedState::Normal, "mysql://root:hunter2@db:3306/")).unwrap(),
    );
    let status = ChangeFeedStatus {
        checkpoint_ts: Ts::from_parts(T0 - 1_500, 3),
        ..Default::default()
    };
    put(layout.status(&alpha), encode(&status).unwrap());
    let (a, b) = (CaptureId::new("cap-a"), CaptureId::new("cap-b"));
    put(
        layout.task_status(&a, &alpha),
        encode(&tables(1..4)).unwrap(),
    );
    put(
        layout.task_status(&b, &alpha),
        encode(&tables(100..140)).unwrap(),
    );
    // Tables left on a capture that is gone are not held by anyone.
    let gone = CaptureId::new("cap-gone");
    put(
        layout.task_status(&gone, &alpha),
        encode(&tables(9..10)).unwrap(),
    );

    let mut failing = info(FeedState::Error, "file:///tmp/x/sink");
    failing.error = Some(RunningError {
        addr: "127.0.0.1:8301".into(),
        code: "CDC:ErrSinkUnwritable".into(),
        message: "cannot create /tmp/x/sink: Not a directory".into(),
        extra: Default::default(),
    });
    failing.history = Some(vec![(T0 - 9_000) as i64, (T0 - 4_000) as i64]);
    put(layout.info(&beta), encode(&failing).unwrap());
    let mut removed = failing.clone();
    removed.state = FeedState::Removed;
    put(layout.info(&gamma), encode(&removed).unwrap());
    put(
        layout.info(&ChangefeedId::from("broken")),
        encode(&info(FeedState::Normal, "blackhole://")).unwrap(),
    );
    put(
        layout.status(&ChangefeedId::from("broken")),
        b"{not json".to_vec(),
    );
    s
}

fn utc() -> TimeZone {
    TimeZone::Named(chrono_tz::UTC)
}

fn data(owner: &str) -> view::DashboardData {
    let lag = lag_view(BTreeMap::new(), 2_000, 900_000);
    dashboard_data(
        &state(),
        Some(&CaptureId::new(owner)),
        "cap-a".into(),
        T0,
        utc(),
        lag,
    )
}

#[test]
fn captures_mark_the_owner_and_list_their_tables() {
    let d = data("cap-b");
    let owners: Vec<&str> = d
        .captures
        .iter()
        .filter(|c| c.is_owner)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(owners, ["cap-b"]);
    let a = &d.captures[0];
    assert_eq!((a.id.as_str(), a.tables), ("cap-a", 3));
    assert_eq!(a.changefeeds[0].table_ids, [1, 2, 3]);
    let b = &d.captures[1];
    assert_eq!(b.tables, 40);
    assert_eq!(b.changefeeds[0].count, 40);
    assert_eq!(b.changefeeds[0].table_ids.len(), TABLE_IDS_SHOWN);
    assert_eq!(d.served_by, "cap-a");
}

#[test]
fn changefeeds_show_state_checkpoint_lag_and_held_tables() {
    let d = data("cap-b");
    let ids: Vec<&str> = d.changefeeds.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "broken"], "removed ones are gone");
    let alpha = &d.changefeeds[0];
    assert_eq!(alpha.state, "normal");
    assert_eq!(
        alpha.checkpoint_tso,
        Ts::from_parts(T0 - 1_500, 3).0.to_string()
    );
    assert_eq!(alpha.checkpoint_time, "2023-11-14 22:13:18.500");
    assert_eq!(alpha.lag_ms, 1_500);
    assert_eq!(alpha.tables, 43, "not the table on the gone capture");
    assert!(!alpha.sink_uri.contains("hunter2"), "{}", alpha.sink_uri);
    let beta = &d.changefeeds[1];
    assert_eq!(
        (beta.state, beta.lag_ms),
        ("error", 60_000),
        "no status: start-ts"
    );
}

#[test]
fn errors_carry_their_last_history_time_and_corrupt_values_show() {
    let d = data("cap-b");
    assert_eq!(d.errors.len(), 2, "{:?}", d.errors);
    let beta = &d.errors[0];
    assert_eq!(beta.changefeed, "beta");
    assert_eq!(beta.time_ms, Some((T0 - 4_000) as i64));
    assert_eq!(beta.time.as_deref(), Some("2023-11-14 22:13:16.000"));
    assert!(beta.message.contains("Not a directory"));
    let broken = &d.errors[1];
    assert_eq!(
        (broken.changefeed.as_str(), broken.code.as_str()),
        ("broken", "CDC:ErrDecodeFailed")
    );
    assert_eq!(broken.time_ms, None);
}

#[test]
fn sampled_checkpoints_are_those_of_shown_changefeeds() {
    let cps = view::checkpoints(&state());
    let ids: Vec<String> = cps.keys().map(ToString::to_string).collect();
    assert_eq!(ids, ["alpha", "beta", "broken"]);
    assert_eq!(
        cps[&ChangefeedId::from("beta")],
        Ts::from_parts(T0 - 60_000, 0)
    );
}

#[test]
fn the_lag_series_are_pairs_and_list_every_sampled_changefeed() {
    let mut h = LagHistory::new(900_000, 2_000);
    let cps = view::checkpoints(&state());
    h.record(T0, &cps);
    let v = serde_json::to_value(lag_view(h.since(None), 2_000, 900_000)).unwrap();
    assert_eq!(v["series"]["alpha"], serde_json::json!([[T0, 1_500]]));
    let newer = serde_json::to_value(lag_view(h.since(Some(T0)), 2_000, 900_000)).unwrap();
    assert_eq!(newer["series"]["alpha"], serde_json::json!([]));
    assert_eq!(newer["window_ms"], 900_000);
}

#[test]
fn since_is_unix_milliseconds_or_absent() {
    assert_eq!(since_param(None), Ok(None));
    assert_eq!(since_param(Some("since=12&x=y")), Ok(Some(12)));
    let err = since_param(Some("since=yesterday")).unwrap_err();
    assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
    assert!(err.message.contains("\"yesterday\""), "{}", err.message);
}

struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn put(store: &MemStore, key: String, value: Vec<u8>) {
    let txn = Txn {
        success: vec![TxnOp::Put {
            key,
            value,
            lease: 0,
        }],
        ..Txn::default()
    };
    store.txn(txn).await.unwrap();
}

/// The sampler on an in-memory store in paused time: one sample per period on the injected
/// clock, a removed changefeed dropped, and the task ends once the routes' history is gone.
#[tokio::test(start_paused = true)]
async fn the_sampler_follows_the_clock_and_stops_with_its_routes() {
    let store = Arc::new(MemStore::new());
    let layout = KeyLayout::default();
    let meta = Meta::new(store.clone(), layout.clone());
    let id = ChangefeedId::from("a");
    put(
        &store,
        layout.info(&id),
        encode(&info(FeedState::Normal, "blackhole://")).unwrap(),
    )
    .await;
    let status = ChangeFeedStatus {
        checkpoint_ts: Ts::from_parts(T0 - 700, 0),
        ..Default::default()
    };
    put(&store, layout.status(&id), encode(&status).unwrap()).await;
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let history = Arc::new(Mutex::new(LagHistory::new(900_000, 2_000)));
    let task = tokio::spawn(sample(Arc::downgrade(&history), meta, clock.clone()));

    for i in 1..=3 {
        tokio::time::sleep(SAMPLE_PERIOD / 2).await;
        let got = history.lock().since(None);
        assert_eq!(got[&id].len(), i, "{got:?}");
        assert_eq!(
            got[&id].last().map(|s| s.lag_ms),
            Some(700 + 2_000 * (i as u64 - 1))
        );
        clock.0.fetch_add(2_000, Ordering::SeqCst);
        tokio::time::sleep(SAMPLE_PERIOD / 2).await;
    }
    let mut removed = info(FeedState::Removed, "blackhole://");
    removed.start_ts = Ts(1);
    put(&store, layout.info(&id), encode(&removed).unwrap()).await;
    tokio::time::sleep(SAMPLE_PERIOD + SAMPLE_PERIOD / 2).await;
    assert!(history.lock().since(None).is_empty());

    drop(history);
    tokio::time::timeout(SAMPLE_PERIOD * 2, task)
        .await
        .expect("the sampler stops")
        .expect("no panic");
}
