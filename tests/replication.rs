//! Replication end to end in one test process, on a real etcd: three captures with the real
//! owner and processor, the `demo://` upstream and a `file://` canal-json sink. One capture
//! crashes mid-run and another joins; once the checkpoint passes T, the sink files fold to
//! exactly the demo oracle over (start, T]. (The multi-process version with SIGKILL and the
//! `cdc verify` command comes with `cdc server`, issues #4/#5.)

// The demo upstream plays the wall clock; the test reads it to pick timestamps.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rcdc::data_plane::DataPlane;
use rcdc::verify::verify;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::SystemClock;
use rcdc_state::{ChangefeedId, Ts};

const PREFIX: &str = "/t/replication";
const TTL: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_to_file_survives_a_crash_and_a_join_and_matches_the_oracle() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let dir = tempfile::tempdir().expect("sink dir");
    let epoch = now_ms() - 60_000;
    let upstream_uri = format!(
        "demo://?tables=4&rows-per-second=200&key-space=40&seed=7&start={epoch}&retention=none"
    );
    let plane = || Arc::new(DataPlane::new(upstream_uri.clone(), Arc::new(SystemClock)));
    let mut caps = vec![
        start(etcd.endpoints(), "a", data_roles(plane()), PREFIX, TTL),
        start(etcd.endpoints(), "b", data_roles(plane()), PREFIX, TTL),
        start(etcd.endpoints(), "c", data_roles(plane()), PREFIX, TTL),
    ];
    wait_until(DEADLINE, "captures and an owner", || async {
        caps.iter().all(|c| c.id().is_some()) && caps.iter().any(|c| c.is_owner())
    })
    .await;

    let start_ts = Ts::from_parts(now_ms(), 0);
    let sink_uri = format!(
        "file://{}?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    let info = format!(
        r#"{{"sink-uri":"{sink_uri}","opts":{{}},"start-ts":{},"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{{"enable-old-value":true}},"state":"normal","history":null,"error":null}}"#,
        start_ts.0
    );
    put(&store, &format!("{PREFIX}/changefeed/info/cf"), &info).await;

    let checkpoint = || async {
        get(&store, &format!("{PREFIX}/job/cf"))
            .await
            .and_then(|kv| {
                serde_json::from_slice::<rcdc_state::model::ChangeFeedStatus>(&kv.value).ok()
            })
            .map(|s| s.checkpoint_ts)
    };
    let first = Ts::from_parts(start_ts.physical_ms() + 1_500, 0);
    wait_until(DEADLINE, "checkpoint passes start + 1.5 s", || async {
        checkpoint().await.is_some_and(|c| c >= first)
    })
    .await;

    // A capture crashes (not the owner, so the cluster keeps its owner) and another joins.
    let victim = caps
        .iter()
        .position(|c| !c.is_owner())
        .expect("a non-owner");
    caps[victim].kill();
    caps.push(start(
        etcd.endpoints(),
        "d",
        data_roles(plane()),
        PREFIX,
        TTL,
    ));
    let target = Ts::from_parts(now_ms() + 4_000, 0);
    wait_until(
        DEADLINE,
        "checkpoint passes T, after the crash and the join",
        || async { checkpoint().await.is_some_and(|c| c >= target) },
    )
    .await;

    let plane = plane();
    let upstream = plane.upstream(&upstream_uri).expect("upstream");
    let demo = upstream.as_demo().expect("demo upstream");
    let reports = verify(
        demo,
        dir.path(),
        &ChangefeedId::from("cf"),
        start_ts.prev(),
        target,
        true,
    )
    .expect("verify");
    assert_eq!(reports.len(), 4, "{reports:?}");
    let compared: usize = reports.iter().map(|r| r.compared).sum();
    let mismatches: Vec<&String> = reports.iter().flat_map(|r| &r.mismatches).collect();
    println!(
        "verified {compared} keys over 4 tables at T: {} mismatches",
        mismatches.len()
    );
    assert!(
        compared > 40,
        "the window must contain real traffic: {compared}"
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    let recorded = rcdc::sink::read_checkpoint(dir.path(), &ChangefeedId::from("cf"))
        .expect("metadata")
        .expect("the owner records the checkpoint in the sink");
    assert!(recorded >= start_ts, "{recorded:?}");
    let meta = std::fs::read_to_string(dir.path().join("cf").join("metadata")).expect("metadata");
    assert_eq!(
        rcdc::sink::read_start_ts(dir.path(), &ChangefeedId::from("cf")).expect("read"),
        Some(start_ts),
        "{meta}"
    );

    // Negative control: at a T the sink cannot have reached yet, the same check must fail.
    let future = Ts::from_parts(now_ms() + 60_000, 0);
    let reports = verify(
        demo,
        dir.path(),
        &ChangefeedId::from("cf"),
        start_ts.prev(),
        future,
        true,
    )
    .expect("verify");
    assert!(
        reports.iter().any(|r| !r.mismatches.is_empty()),
        "verify must notice missing writes"
    );
}

/// An unwritable sink directory puts only its changefeed into error, with a message naming
/// the path; another changefeed on the same captures keeps replicating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_sink_fails_only_its_changefeed() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let dir = tempfile::tempdir().expect("dir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a regular file where the sink wants a directory").expect("blocker");
    let upstream_uri = format!(
        "demo://?tables=2&rows-per-second=100&key-space=20&start={}&retention=none",
        now_ms() - 60_000
    );
    let plane = || Arc::new(DataPlane::new(upstream_uri.clone(), Arc::new(SystemClock)));
    let caps = [
        start(etcd.endpoints(), "a", data_roles(plane()), PREFIX, TTL),
        start(etcd.endpoints(), "b", data_roles(plane()), PREFIX, TTL),
    ];
    wait_until(DEADLINE, "captures and an owner", || async {
        caps.iter().all(|c| c.id().is_some()) && caps.iter().any(|c| c.is_owner())
    })
    .await;

    let start_ts = Ts::from_parts(now_ms(), 0);
    for (id, sink) in [
        (
            "good",
            format!(
                "file://{}/good?protocol=canal-json&enable-tidb-extension=true",
                dir.path().display()
            ),
        ),
        (
            "bad",
            format!(
                "file://{}/sink?protocol=canal-json&enable-tidb-extension=true",
                blocker.display()
            ),
        ),
    ] {
        let info = format!(
            r#"{{"sink-uri":"{sink}","start-ts":{},"state":"normal","config":{{}}}}"#,
            start_ts.0
        );
        put(&store, &format!("{PREFIX}/changefeed/info/{id}"), &info).await;
    }
    let info_of = |id: &'static str| {
        let store = store.clone();
        async move {
            get(&store, &format!("{PREFIX}/changefeed/info/{id}"))
                .await
                .and_then(|kv| {
                    serde_json::from_slice::<rcdc_state::model::ChangeFeedInfo>(&kv.value).ok()
                })
        }
    };
    wait_until(
        DEADLINE,
        "the bad changefeed records the sink error",
        || async {
            info_of("bad").await.is_some_and(|i| {
                i.state == rcdc_state::model::FeedState::Error
                    && i.error
                        .as_ref()
                        .is_some_and(|e| e.message.contains("not-a-dir"))
            })
        },
    )
    .await;
    let target = Ts::from_parts(now_ms() + 2_000, 0);
    wait_until(
        DEADLINE,
        "the good changefeed keeps replicating",
        || async {
            get(&store, &format!("{PREFIX}/job/good"))
                .await
                .and_then(|kv| {
                    serde_json::from_slice::<rcdc_state::model::ChangeFeedStatus>(&kv.value).ok()
                })
                .is_some_and(|s| s.checkpoint_ts >= target)
        },
    )
    .await;
    let bad = info_of("bad").await.expect("bad info");
    println!("bad changefeed error: {:?}", bad.error.map(|e| e.message));
    assert_ne!(
        info_of("good").await.map(|i| i.state),
        Some(rcdc_state::model::FeedState::Error)
    );
}

/// The DDL barrier end to end: a table is created and another dropped while the changefeed
/// runs. The checkpoint passes both DDLs, the new table is replicated and the dropped one
/// released, and the sink folds to the oracle for the table set after the DDLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_created_and_dropped_by_ddl_follow_the_upstream() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let dir = tempfile::tempdir().expect("sink dir");
    let epoch = now_ms() - 60_000;
    // 60 s after the epoch is "now": table 9 appears 2 s from now, table 2 goes 3 s from now.
    let upstream_uri = format!(
        "demo://?tables=4&rows-per-second=200&key-space=40&seed=11&start={epoch}&retention=none&ddl=create:9@62s,drop:2@63s"
    );
    let plane = || Arc::new(DataPlane::new(upstream_uri.clone(), Arc::new(SystemClock)));
    let caps = [
        start(etcd.endpoints(), "a", data_roles(plane()), PREFIX, TTL),
        start(etcd.endpoints(), "b", data_roles(plane()), PREFIX, TTL),
    ];
    wait_until(DEADLINE, "captures and an owner", || async {
        caps.iter().all(|c| c.id().is_some()) && caps.iter().any(|c| c.is_owner())
    })
    .await;
    let start_ts = Ts::from_parts(now_ms(), 0);
    let sink_uri = format!(
        "file://{}?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    let info = format!(
        r#"{{"sink-uri":"{sink_uri}","opts":{{}},"start-ts":{},"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{{"enable-old-value":true}},"state":"normal","history":null,"error":null}}"#,
        start_ts.0
    );
    put(&store, &format!("{PREFIX}/changefeed/info/ddl"), &info).await;
    let create_ts = Ts::from_parts(epoch + 62_000, 0);
    let drop_ts = Ts::from_parts(epoch + 63_000, 0);
    let target = Ts::from_parts(epoch + 65_000, 0);
    let held = || async {
        let (kvs, _) =
            rcdc_reactor::store::MetaStore::get_prefix(&store, &format!("{PREFIX}/task/status/"))
                .await
                .unwrap_or_default();
        let mut tables = std::collections::BTreeSet::new();
        for kv in kvs.iter().filter(|kv| kv.key.ends_with("/ddl")) {
            if let Ok(s) = serde_json::from_slice::<rcdc_state::model::TaskStatus>(&kv.value) {
                tables.extend(s.tables.unwrap_or_default().into_keys().map(|t| t.0));
            }
        }
        tables
    };
    let checkpoint = || async {
        get(&store, &format!("{PREFIX}/job/ddl"))
            .await
            .and_then(|kv| {
                serde_json::from_slice::<rcdc_state::model::ChangeFeedStatus>(&kv.value).ok()
            })
            .map(|s| s.checkpoint_ts)
    };
    // The barrier holds the checkpoint just below the DDL (whose ts has logical part 1)
    // until table 9 is in the set.
    wait_until(
        DEADLINE,
        "checkpoint passes the create-table DDL",
        || async { checkpoint().await.is_some_and(|c| c > create_ts) },
    )
    .await;
    assert!(
        held().await.contains(&9),
        "table 9 dispatched once the checkpoint passed its creation"
    );
    wait_until(DEADLINE, "checkpoint passes both DDLs and T", || async {
        checkpoint().await.is_some_and(|c| c >= target)
    })
    .await;
    let tables = held().await;
    assert_eq!(
        tables,
        [1, 3, 4, 9].into_iter().collect(),
        "after drop {drop_ts}"
    );

    let plane = plane();
    let upstream = plane.upstream(&upstream_uri).expect("upstream");
    let reports = verify(
        upstream.as_demo().expect("demo"),
        dir.path(),
        &ChangefeedId::from("ddl"),
        start_ts.prev(),
        target,
        true,
    )
    .expect("verify");
    let checked: Vec<i64> = reports.iter().map(|r| r.table.0).collect();
    // Table 2 is checked too: its files hold its rows up to the drop, which must match.
    assert_eq!(
        checked,
        [1, 2, 3, 4, 9],
        "verify covers every table with files or alive at T"
    );
    let t9 = reports
        .iter()
        .find(|r| r.table.0 == 9)
        .map_or(0, |r| r.compared);
    assert!(t9 > 0, "the created table carried rows");
    let mismatches: Vec<&String> = reports.iter().flat_map(|r| &r.mismatches).collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
