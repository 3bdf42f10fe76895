//! `multi_capture`: several captures share one changefeed's tables, and the data arrives.
//!
//! TiCDC's script starts four captures, creates a changefeed over several tables, writes rows
//! upstream and checks the downstream with sync_diff. Here: three captures, one changefeed of
//! six demo tables; every capture holds tables, and `cdc verify` finds 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_capture() {
    let cluster = Cluster::start(ClusterSpec::new(
        3,
        demo_upstream(6, 50),
        "/t/scenario/multi_capture",
    ))
    .await;
    cluster.create("multi", ts_from_now(-2_000), &[]);
    let t = ts_from_now(3_000);
    cluster
        .wait_sink_checkpoint("multi", t, Duration::from_secs(60))
        .await;
    let processors = cluster.cli_ok(&["processor", "list"]);
    let holders = processors.as_array().map_or(0, Vec::len);
    assert_eq!(holders, 3, "every capture runs a processor: {processors}");
    cluster.verify("multi", t);
}
