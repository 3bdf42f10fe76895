//! `capture_session_done_during_task`: a capture's session ends while it takes up a new
//! changefeed's table; the capture comes back and the data arrives.
//!
//! TiCDC's script starts one capture with a failpoint that delays the processor manager's
//! handling of a new changefeed by 2 s, creates a changefeed over one table with rows, and
//! during that delay revokes the lease of the capture's etcd key (the session is done); it
//! asserts with sync_diff that the rows arrive, inserts more rows and checks again.
//!
//! Here: one capture, one demo table with rows; the changefeed is created and the capture's
//! lease revoked right after (rcdc has no failpoint to hold the processor manager, so the
//! revoke lands while the new changefeed's table is being set up, not inside a fixed delay).
//! The capture registers again under a new id, and `cdc verify` finds 0 mismatches at a ts
//! after the revoke and again at a later one.

use std::time::Duration;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
use crate::common::{wait_until, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_session_done_during_task() {
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream(1, 50),
        "/t/scenario/capture_session_done_during_task",
    );
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.wait_owner().await;
    cluster.create("done", ts_from_now(-2_000), &[]);
    let old_id = cluster.revoke_session(0).await;

    wait_until(DEADLINE, "the capture registers again", || async {
        cluster.capture_id(0).is_some_and(|id| id != old_id)
    })
    .await;
    assert!(cluster.is_running(0), "the capture process lives on");
    let t1 = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("done", t1, Duration::from_secs(20))
        .await;
    cluster.verify("done", t1);
    let t2 = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("done", t2, Duration::from_secs(20))
        .await;
    cluster.verify("done", t2);
}
