//! `owner_remove_table_error`: a table with rows is dropped, the owner removes it from the
//! changefeed, and replication of the tables created after it goes on.
//!
//! TiCDC's script runs one capture with a failpoint that makes the owner's first removal of
//! a table fail, creates `t1`, inserts rows, drops `t1`, creates `t2` with rows and a
//! `finished_mark` table, waits for the mark downstream and checks the data with sync_diff.
//! Here: one capture and demo tables `t1` (created at +1 s, dropped at +3 s), `t2` (+3.5 s)
//! and the finish mark `t3` (+5 s), with rows flowing. The test asserts that the mark
//! reaches the sink, that the capture no longer holds `t1`, and that `cdc verify` finds 0
//! mismatches. rcdc has no failpoint in the owner's table removal, so the injected error is
//! the ignored gap `owner_remove_table_error_injected`.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_remove_table_error() {
    let ddl = [
        ("create:1", 1_000),
        ("drop:1", 3_000),
        ("create:2", 3_500),
        ("create:3", 5_000),
    ];
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream_ddl(0, 50, &ddl),
        "/t/scenario/owner_remove_table_error",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let cluster = Cluster::start(spec).await;
    cluster.create("remove", ts_from_now(-1_000), &[]);

    cluster
        .wait_sink_table("remove", 3, Duration::from_secs(30))
        .await;
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("remove", t, Duration::from_secs(30))
        .await;
    assert!(
        cluster.sink_has_table("remove", 1),
        "t1 replicated before its drop"
    );
    let held: Vec<i64> = cluster
        .tables_by_capture("remove")
        .into_values()
        .flatten()
        .collect();
    assert_eq!(
        held,
        [2, 3],
        "the dropped t1 is removed from the changefeed"
    );
    cluster.verify("remove", t);
}

/// TiCDC's failpoint `OwnerRemoveTableError` fails the owner's first removal of the dropped
/// table; rcdc's failpoints cover sinks, etcd txns, pipelines, the owner's DDL lookup and
/// the sorter, not the owner's table removal.
#[tokio::test]
#[ignore = "gap: no failpoint in the owner's removal of a dropped table (rcdc has sink-write, sink-flush, etcd-txn, pipeline-panic, owner-ddl, sorter-spill-*)"]
async fn owner_remove_table_error_injected() {
    // Fails when run with --ignored: there is nothing to run until the failpoint exists.
    unimplemented!("rcdc has no failpoint in the owner's table removal");
}
