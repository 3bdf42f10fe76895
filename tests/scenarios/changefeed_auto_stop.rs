//! `changefeed_auto_stop`: one capture's processor fails once; the changefeed recovers.
//!
//! TiCDC's script starts two captures, the second with a failpoint that fails its
//! processor's resolved-ts sync once (and slows its position updates), creates a changefeed
//! over four databases, and asserts that the changefeed ends up `normal` with the injected
//! error recorded ("processor sync resolved injected error"), then checks with sync_diff.
//!
//! Here: two captures, the second started with `sink-write=1*return(...)` (its first sink
//! write fails once); one changefeed over four demo tables, so the second capture holds some.
//! The changefeed records the injected error, returns to `normal`, its sink checkpoint passes
//! a later ts, and `cdc verify` finds 0 mismatches. TiCDC's position-update delay has no rcdc
//! failpoint and is left out.

#[cfg(feature = "failpoints")]
use std::time::Duration;

#[cfg(feature = "failpoints")]
use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
#[cfg(feature = "failpoints")]
use crate::common::wait_until;

#[cfg(feature = "failpoints")]
const MESSAGE: &str = "processor sync resolved injected error";

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changefeed_auto_stop() {
    let mut spec = ClusterSpec::new(1, demo_upstream(4, 50), "/t/scenario/changefeed_auto_stop");
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.wait_owner().await;
    cluster.spec.failpoints = Some(format!("sink-write=1*return({MESSAGE})"));
    let faulty = cluster.add_capture();
    let faulty_id = cluster.wait_capture_id(faulty).await;

    cluster.create("auto", ts_from_now(-2_000), &[]);
    wait_until(
        Duration::from_secs(30),
        "the changefeed records the injected error",
        || async {
            cluster.query("auto")["info"]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(MESSAGE))
        },
    )
    .await;
    let t = ts_from_now(2_000);
    wait_until(
        Duration::from_secs(30),
        "the changefeed is normal again past T",
        || async {
            cluster.state("auto").as_deref() == Some("normal")
                && cluster.sink_checkpoint("auto") >= t
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the faulty capture holds tables again",
        || async { !cluster.processor_tables("auto", &faulty_id).is_empty() },
    )
    .await;
    cluster.verify("auto", t);
}
