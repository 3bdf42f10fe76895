//! `sink_retry`: sink writes that fail at random are retried, and the data arrives exactly.
//!
//! TiCDC's script loads a table, starts one capture with a failpoint that fails 25% of the
//! MySQL sink's transactions, creates a changefeed from before the load, checks the data with
//! sync_diff, loads more rows and checks again. Here: one capture with
//! `sink-write=25%3*return(...)` (each write fails with probability 1/4, at most three
//! times: every failure stops the changefeed for its backoff of 1 s, then 2 s, then 4 s), a
//! changefeed over two demo tables from before the capture started, with rows flowing. The
//! test asserts that `cdc verify` finds 0 mismatches at a first ts and again at a later one,
//! and that the injected error was recorded.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

const MESSAGE: &str = "sink txn injected random error";

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_retry() {
    let mut spec = ClusterSpec::new(1, demo_upstream(2, 50), "/t/scenario/sink_retry");
    spec.config_toml = Some(FAST_TICKS.to_owned());
    spec.failpoints = Some(format!("sink-write=25%3*return({MESSAGE})"));
    let cluster = Cluster::start(spec).await;
    cluster.create("retry", ts_from_now(-5_000), &[]);

    let t1 = ts_from_now(0);
    cluster
        .wait_sink_checkpoint("retry", t1, Duration::from_secs(30))
        .await;
    cluster.verify("retry", t1);
    let t2 = ts_from_now(2_000);
    cluster
        .wait_sink_checkpoint("retry", t2, Duration::from_secs(30))
        .await;
    cluster.verify("retry", t2);

    let q = cluster.query("retry");
    assert!(
        q["info"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(MESSAGE)),
        "the injected error was recorded: {}",
        q["info"]
    );
}
