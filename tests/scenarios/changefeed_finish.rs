//! `changefeed_finish`: a changefeed with a target-ts stops by itself once it reaches it.
//!
//! TiCDC's script creates a changefeed whose target-ts is 90 s after now, writes rows, checks
//! the downstream with sync_diff, and after the target-ts asserts that the changefeed's state
//! is `finished` and that it has no task status left. Here: a target-ts 4 s ahead on a
//! two-table demo upstream; the changefeed reaches `finished`, `changefeed query` shows no
//! task status, the sink checkpoint is the target-ts, and `cdc verify` at the target-ts finds
//! 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
use crate::common::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changefeed_finish() {
    let mut spec = ClusterSpec::new(1, demo_upstream(2, 50), "/t/scenario/changefeed_finish");
    spec.config_toml = Some(FAST_TOML.to_owned());
    let cluster = Cluster::start(spec).await;
    let target = ts_from_now(4_000);
    let target_arg = target.0.to_string();
    cluster.create("finish", ts_from_now(-2_000), &["--target-ts", &target_arg]);
    // TiCDC's script retries both checks together: the task statuses go just after the
    // state is written.
    wait_until(
        Duration::from_secs(30),
        "finish is finished with no task status left",
        || async {
            let q = cluster.query("finish");
            q["info"]["state"] == "finished"
                && q["task-status"].as_array().is_some_and(Vec::is_empty)
        },
    )
    .await;
    cluster
        .wait_sink_checkpoint("finish", target, Duration::from_secs(10))
        .await;
    assert_eq!(
        cluster.sink_checkpoint("finish"),
        target,
        "the sink checkpoint stops at the target-ts"
    );
    cluster.verify("finish", target);
}
