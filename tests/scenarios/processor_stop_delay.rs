//! `processor_stop_delay`: a changefeed is resumed while its processor is still stopping
//! from the pause, and no row is lost.
//!
//! TiCDC's script starts one capture with a failpoint that delays the processor's stop by
//! 10 s (once), creates a changefeed, creates a table with rows and checks it with sync_diff;
//! then pauses the changefeed, waits 1 s, inserts, resumes, inserts, and checks again. Here:
//! one capture with `sink-flush=sleep(1500)` (every flush of a table's sink takes 1.5 s, so
//! a pipeline asked to stop is still flushing for up to 1.5 s), a changefeed over two demo
//! tables with rows flowing. The test verifies at a first ts, pauses, waits for `stopped`,
//! resumes at once (while the old pipelines are still in their flush), and asserts that the
//! changefeed is `normal` again and that `cdc verify` finds 0 mismatches at a later ts.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_stop_delay() {
    let mut spec = ClusterSpec::new(1, demo_upstream(2, 50), "/t/scenario/processor_stop_delay");
    spec.config_toml = Some(FAST_TICKS.to_owned());
    spec.failpoints = Some("sink-flush=sleep(1500)".to_owned());
    let cluster = Cluster::start(spec).await;
    cluster.create("delay", ts_from_now(-1_000), &[]);
    let t1 = ts_from_now(500);
    cluster
        .wait_sink_checkpoint("delay", t1, Duration::from_secs(30))
        .await;
    cluster.verify("delay", t1);

    cluster.cli_ok(&["changefeed", "pause", "-c", "delay"]);
    cluster
        .wait_state("delay", "stopped", Duration::from_secs(10))
        .await;
    cluster.cli_ok(&["changefeed", "resume", "-c", "delay"]);
    cluster
        .wait_state("delay", "normal", Duration::from_secs(10))
        .await;

    let t2 = ts_from_now(2_000);
    cluster
        .wait_sink_checkpoint("delay", t2, Duration::from_secs(30))
        .await;
    cluster.verify("delay", t2);
}
