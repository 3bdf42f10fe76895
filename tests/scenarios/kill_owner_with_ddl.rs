//! `kill_owner_with_ddl`: the only capture, the owner, is stopped and restarted again and
//! again while tables are being created, and no DDL or row is lost.
//!
//! TiCDC's script runs one capture and a changefeed, creates table `t1` and waits for it
//! downstream; then, with a failpoint that delays the sink's DDL execution, it stops the
//! capture (`kill`, SIGTERM), waits until no capture is registered and starts it again;
//! creates `t2` and `t3`, inserts into all three, and stops and restarts the capture three
//! more times; a last restart is without the failpoint. It checks that the three tables
//! exist downstream and the data with sync_diff. Here: the same restarts (SIGTERM, capture
//! count 0, then 1) with `owner-ddl=sleep(300)` (every DDL lookup of the owner takes 300 ms)
//! on all but the last, on demo tables `t1` created at +1 s and `t2`, `t3` created at +3 s and
//! +5 s, during the restarts, with rows flowing. The test asserts the capture counts between
//! restarts, that all three tables reach the sink, and that `cdc verify` finds 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

const DDL_DELAY: &str = "owner-ddl=sleep(300)";

/// SIGTERMs the only capture, waits until none is registered, starts a new one with
/// `failpoints` and waits until it registered (the script's `kill_cdc_and_restart`).
async fn restart(cluster: &mut Cluster, failpoints: Option<&str>) {
    let last = cluster.captures.len() - 1;
    cluster.terminate(last).await;
    cluster.wait_captures(0).await;
    cluster.add_capture_with_failpoints(failpoints);
    cluster.wait_captures(1).await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_owner_with_ddl() {
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream_ddl(
            0,
            20,
            &[
                ("create:1", 1_000),
                ("create:2", 3_000),
                ("create:3", 5_000),
            ],
        ),
        "/t/scenario/kill_owner_with_ddl",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.create("ddl", ts_from_now(-1_000), &[]);
    cluster
        .wait_sink_table("ddl", 1, Duration::from_secs(30))
        .await;

    restart(&mut cluster, Some(DDL_DELAY)).await;
    for _ in 0..3 {
        // Instead of the script's sleeps: let the new owner make some progress first, so
        // each stop interrupts a running changefeed.
        let t = ts_from_now(0);
        cluster
            .wait_sink_checkpoint("ddl", t, Duration::from_secs(30))
            .await;
        restart(&mut cluster, Some(DDL_DELAY)).await;
    }
    restart(&mut cluster, None).await;

    for table in 1..=3 {
        cluster
            .wait_sink_table("ddl", table, Duration::from_secs(30))
            .await;
    }
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("ddl", t, Duration::from_secs(30))
        .await;
    cluster.verify("ddl", t);
}
