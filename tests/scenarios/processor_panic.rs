//! `processor_panic`: a processor panics on one of two captures, and the data still arrives
//! complete.
//!
//! TiCDC's script starts two captures, the first with a failpoint that panics its processor
//! (the process dies and is restarted), creates a changefeed, creates ten tables of 200 rows
//! each and an `end_mark_table`, waits for the mark downstream and checks the data with
//! sync_diff, then checks the logs. Here: two captures, the first with
//! `pipeline-panic=1*panic(...)` (in rcdc a pipeline panic fails that table's run, not the
//! process), a changefeed, ten demo tables created at +1 s with rows flowing and an end mark
//! at +4 s. The test asserts that the panic fired on the first capture and not the second,
//! that both captures still run, that the end mark reaches the sink, and that `cdc verify`
//! finds 0 mismatches.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

const PANIC: &str = "processor sync resolved injected panic";
const END_MARK: i64 = 11;

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_panic() {
    let end_mark = format!("create:{END_MARK}");
    let mut spec = ClusterSpec::new(
        0,
        demo_upstream_ddl(0, 20, &[("create:1-10", 1_000), (&end_mark, 4_000)]),
        "/t/scenario/processor_panic",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let mut cluster = Cluster::start(spec).await;
    let panicking =
        cluster.add_capture_with_failpoints(Some(&format!("pipeline-panic=1*panic({PANIC})")));
    let healthy = cluster.add_capture();
    cluster.wait_captures(2).await;
    cluster.create("panic", ts_from_now(-1_000), &[]);

    cluster
        .wait_sink_table("panic", END_MARK, Duration::from_secs(30))
        .await;
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("panic", t, Duration::from_secs(30))
        .await;
    assert!(
        cluster.log(panicking).contains(PANIC),
        "the failpoint fired:\n{}",
        cluster.logs()
    );
    assert!(
        !cluster.log(healthy).contains("panicked"),
        "{}",
        cluster.logs()
    );
    assert!(
        cluster.is_running(panicking) && cluster.is_running(healthy),
        "a pipeline panic does not take its capture down:\n{}",
        cluster.logs()
    );
    cluster.verify("panic", t);
}
