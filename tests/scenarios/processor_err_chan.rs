//! `processor_err_chan`: an error a processor reports while adding tables reaches the
//! changefeed, which recovers by itself and replicates everything.
//!
//! TiCDC's script creates ten tables up- and downstream, starts one capture with a failpoint
//! that fails the processor's first table add once, creates a changefeed, waits until
//! `changefeed query -s` shows state `normal` with the injected error's message, inserts
//! rows into every table and checks the data with sync_diff. Here: one capture with
//! `sink-write=1*return(...)` (the first write of the first table started fails: the
//! table's pipeline fails and the processor reports the error), a changefeed over ten demo
//! tables with rows flowing. The test asserts the same state and message, then that the
//! changefeed passes a later ts and `cdc verify` finds 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};
use crate::common::wait_until;

const MESSAGE: &str = "processor add table injected error";

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_err_chan() {
    let mut spec = ClusterSpec::new(1, demo_upstream(10, 20), "/t/scenario/processor_err_chan");
    spec.config_toml = Some(FAST_TICKS.to_owned());
    spec.failpoints = Some(format!("sink-write=1*return({MESSAGE})"));
    let cluster = Cluster::start(spec).await;
    cluster.create("errchan", ts_from_now(-1_000), &[]);

    wait_until(
        Duration::from_secs(30),
        "the changefeed is normal and shows the injected error",
        || async {
            let out = cluster.cli(&["changefeed", "query", "-s", "-c", "errchan"]);
            let q: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            q["state"] == "normal"
                && q["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(MESSAGE))
        },
    )
    .await;

    let t = ts_from_now(2_000);
    cluster
        .wait_sink_checkpoint("errchan", t, Duration::from_secs(30))
        .await;
    cluster.verify("errchan", t);
}
