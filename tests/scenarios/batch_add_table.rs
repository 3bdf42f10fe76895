//! `batch_add_table`: a changefeed that starts over many existing tables adds them all at
//! once, and the data arrives.
//!
//! TiCDC's script creates five tables with a row each before taking the start ts, starts one
//! capture and a changefeed, inserts a second row into every table, creates a `finish_mark`
//! table, waits for it downstream and checks the data with sync_diff. Here: one capture and a
//! changefeed over 24 demo tables that exist before its start ts (all dispatched in the
//! changefeed's first schedule) with rows flowing; a table created afterwards is the finish
//! mark. The test asserts that the capture holds every table, that the finish mark reaches
//! the sink, and that `cdc verify` finds 0 mismatches past it.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

const TABLES: u32 = 24;
const FINISH_MARK: i64 = TABLES as i64 + 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_add_table() {
    let finish = format!("create:{FINISH_MARK}");
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream_ddl(TABLES, 20, &[(&finish, 3_000)]),
        "/t/scenario/batch_add_table",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let cluster = Cluster::start(spec).await;
    cluster.create("batch", ts_from_now(-1_000), &[]);

    cluster
        .wait_sink_table("batch", FINISH_MARK, Duration::from_secs(30))
        .await;
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("batch", t, Duration::from_secs(30))
        .await;
    let held: usize = cluster
        .tables_by_capture("batch")
        .values()
        .map(|t| t.len())
        .sum();
    assert_eq!(
        held,
        TABLES as usize + 1,
        "every table, the finish mark included, is held"
    );
    cluster.verify("batch", t);
}
