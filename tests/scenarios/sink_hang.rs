//! `sink_hang`: a sink that hangs and then fails puts the changefeed in `error`; a resume
//! brings it back and nothing is lost.
//!
//! TiCDC's script starts one capture with failpoints that make the MySQL sink hang once for
//! a long time and fail its DML nine times, creates a changefeed and two tables written in
//! one transaction, waits until the changefeed's state is `error`, resumes it, waits for
//! `normal`, checks that both tables exist downstream and the data with sync_diff. Here: one
//! capture with `sink-flush=1*sleep(3000)` (one flush hangs for 3 s) and
//! `sink-write=3*return(...)` (three writes fail), a changefeed over two demo tables. The
//! test asserts the state `error`, resumes with the CLI, asserts `normal`, that both tables
//! are in the sink and that `cdc verify` finds 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_hang() {
    let mut spec = ClusterSpec::new(1, demo_upstream(2, 50), "/t/scenario/sink_hang");
    spec.config_toml = Some(FAST_TICKS.to_owned());
    spec.failpoints = Some(
        "sink-flush=1*sleep(3000);sink-write=3*return(sink exec DML injected error)".to_owned(),
    );
    let cluster = Cluster::start(spec).await;
    cluster.create("hang", ts_from_now(-1_000), &[]);

    cluster
        .wait_state("hang", "error", Duration::from_secs(30))
        .await;
    cluster.cli_ok(&["changefeed", "resume", "-c", "hang"]);
    cluster
        .wait_state("hang", "normal", Duration::from_secs(30))
        .await;

    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("hang", t, Duration::from_secs(30))
        .await;
    for table in [1, 2] {
        assert!(
            cluster.sink_has_table("hang", table),
            "t{table} in the sink"
        );
    }
    cluster.verify("hang", t);
}
