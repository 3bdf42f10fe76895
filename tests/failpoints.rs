//! Failpoint builds on real processes and a real etcd (README "Failpoints"): the start log
//! lists every point, and TiCDC's `processor_panic` and `sink_retry` scenarios recover with
//! the demo upstream's oracle finding 0 mismatches in the file sink.
//!
//! `CARGO_BIN_EXE_cdc` is built with this test's features, so these run in the
//! `--all-features` suite and not in a default build (see `failpoints_off.rs` for that one).
#![cfg(feature = "failpoints")]
// The demo upstream and the checkpoint are wall-clock times, as an operator sees them.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{now_ms, ts_from_now, Cluster, ClusterSpec, CDC};
use common::wait_until;
use rcdc::failpoints::POINTS;
use rcdc_state::Ts;
use serde_json::Value;

/// Recovery includes the processor's and the owner's backoffs (1 s, 2 s, 4 s ...).
const RECOVERY: Duration = Duration::from_secs(60);

/// One capture with `FAILPOINTS`, on a demo upstream of `tables` tables, under `prefix`.
async fn cluster(prefix: &str, tables: u32, failpoints: &str) -> Cluster {
    let mut spec = ClusterSpec::new(1, demo(tables), prefix);
    spec.failpoints = Some(failpoints.to_owned());
    Cluster::start(spec).await
}

fn demo(tables: u32) -> String {
    format!(
        "demo://?tables={tables}&rows-per-second=50&key-space=100&seed=7&start={}&retention=none",
        now_ms() - 60_000
    )
}

fn checkpoint(q: &Value) -> Ts {
    Ts(q["status"]["checkpoint-ts"].as_u64().unwrap_or(0))
}

/// The message of the changefeed's last error, if any.
fn last_error(q: &Value) -> Option<String> {
    q["info"]["error"]["message"].as_str().map(str::to_owned)
}

/// `cdc verify` of `id` at `t`: 0 mismatches over `tables` tables.
fn verify(cluster: &Cluster, id: &str, t: Ts, tables: usize) {
    let stdout = cluster.verify(id, t);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("table ")).count(),
        tables,
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failpoint_build_lists_every_point_at_start() {
    let cluster = cluster(
        "/t/failpoints/list",
        1,
        "sink-flush=2*return(disk gone);owner-ddl=off",
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the start log lists every failpoint",
        || async {
            POINTS
                .iter()
                .all(|p| cluster.log(0).contains(&format!("failpoint {p}: ")))
        },
    )
    .await;
    let log = cluster.log(0);
    assert!(
        log.contains("failpoint sink-flush: 2*return(disk gone)"),
        "{log}"
    );
    assert!(log.contains("failpoint sink-write: off"), "{log}");
    assert!(log.contains("failpoint owner-ddl: off"), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("failpoint ")).count(),
        POINTS.len(),
        "one line per point:\n{log}"
    );
}

#[test]
fn a_bad_failpoints_value_is_one_error_line() {
    let out = Command::new(CDC)
        .args(["version"])
        .env("FAILPOINTS", "sink-wirte=return")
        .output()
        .expect("run cdc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with("Error: ") && err.contains("sink-wirte") && err.contains("sink-write"),
        "{err}"
    );
}

/// TiCDC's `processor_panic`: one table pipeline panics once. Only its changefeed errors and
/// restarts it; the capture keeps running and both changefeeds verify clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_panic_restarts_only_its_changefeed() {
    let mut cluster = cluster("/t/failpoints/panic", 2, "pipeline-panic=1*panic(boom)").await;
    let start = ts_from_now(0);
    let ids = ["panic-a", "panic-b"];
    for id in ids {
        cluster.create(id, start, &[]);
    }

    let t = ts_from_now(3_000);
    wait_until(
        RECOVERY,
        "both changefeeds pass T in their sinks",
        || async { ids.iter().all(|id| cluster.sink_checkpoint(id) >= t) },
    )
    .await;
    assert!(
        cluster.is_running(0),
        "the capture must survive the panic:\n{}",
        cluster.log(0)
    );
    assert!(
        cluster.log(0).contains("boom"),
        "the point fired:\n{}",
        cluster.log(0)
    );
    let errored: Vec<&str> = ids
        .iter()
        .filter(|id| last_error(&cluster.query(id)).is_some_and(|m| m.contains("boom")))
        .copied()
        .collect();
    assert_eq!(errored.len(), 1, "exactly one changefeed saw the panic");
    for id in ids {
        let q = cluster.query(id);
        assert_eq!(q["info"]["state"], "normal", "{id}: {q}");
        verify(&cluster, id, t, 2);
    }
}

/// TiCDC's `sink_retry`: the sink's write fails three times. The changefeed goes to error,
/// backs off, retries, and replicates again; nothing is lost or duplicated at T.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_write_failures_back_off_and_recover() {
    let cluster = cluster("/t/failpoints/retry", 2, "sink-write=3*return(sink down)").await;
    cluster.create("retry", ts_from_now(0), &[]);

    wait_until(
        RECOVERY,
        "the changefeed records the sink error",
        || async {
            last_error(&cluster.query("retry")).is_some_and(|m| m.contains("failpoint sink-write"))
        },
    )
    .await;
    let t = ts_from_now(3_000);
    wait_until(RECOVERY, "the changefeed recovers past T", || async {
        let q = cluster.query("retry");
        q["info"]["state"] == "normal"
            && checkpoint(&q) >= t
            && cluster.sink_checkpoint("retry") >= t
    })
    .await;
    let q = cluster.query("retry");
    let rounds = q["info"]["history"].as_array().map_or(0, Vec::len);
    println!(
        "sink-write failed in {rounds} error round(s): {}",
        q["info"]["error"]
    );
    assert!((1..=3).contains(&rounds), "one to three error rounds: {q}");
    verify(&cluster, "retry", t, 2);
}

/// Control-plane faults: the first etcd txn (the capture's registration) fails as if its
/// outcome were unknown, and the owner's DDL lookup fails twice. The capture registers again
/// at once with a new id (the reset rate limit's burst of 2 counts the first attempt; a third
/// would wait for its interval, facts §9), the owner retries the lookup, and the changefeed
/// replicates and verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_txn_and_owner_ddl_failures_are_retried() {
    let cluster = cluster(
        "/t/failpoints/ctl",
        1,
        "etcd-txn=1*return(indeterminate);owner-ddl=2*return(ddl lookup down)",
    )
    .await;
    cluster.create("ctl", ts_from_now(0), &[]);
    let t = ts_from_now(3_000);
    cluster.wait_sink_checkpoint("ctl", t, RECOVERY).await;
    let log = cluster.log(0);
    assert!(log.contains("failpoint etcd-txn"), "{log}");
    assert!(
        log.contains("failpoint owner-ddl: ddl lookup down"),
        "{log}"
    );
    verify(&cluster, "ctl", t, 1);
}

/// The sorter's disk faults (issue #14): its first spill write finds the disk full, and a
/// later read of a run finds it corrupt. Each fails only the table's run: the changefeed
/// errors with a message naming the sort dir (or the file), restarts the table from its
/// checkpoint, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sort_dir_and_a_corrupt_run_fail_the_table_and_lose_nothing() {
    let upstream = format!(
        "demo://?tables=1&rows-per-second=30000&key-space=50000&seed=3&start={}&retention=none",
        now_ms() - 60_000
    );
    let mut spec = ClusterSpec::new(1, upstream, "/t/failpoints/spill");
    spec.failpoints =
        Some("sorter-spill-write=1*return(enospc);sorter-spill-read=1*return(bit flip)".into());
    // 6 MiB: a 1-second slice of 30,000 rows spills.
    spec.config_toml = Some("per-table-memory-quota = 6291456\n".into());
    let cluster = Cluster::start(spec).await;
    cluster.create("spill", ts_from_now(-10_000), &[]);
    let sort_dir = cluster.data_dir(0).join("tmp").join("sorter");
    wait_until(RECOVERY, "both faults fired", || async {
        let log = cluster.log(0);
        log.contains(&format!(
            "no space left for the sorter in {}/rcdc-",
            sort_dir.display()
        )) && log.contains("is corrupt at byte")
    })
    .await;
    let t = ts_from_now(2_000);
    wait_until(RECOVERY, "the changefeed recovers past T", || async {
        let q = cluster.query("spill");
        q["info"]["state"] == "normal" && cluster.sink_checkpoint("spill") >= t
    })
    .await;
    let q = cluster.query("spill");
    let history = q["info"]["history"].as_array().map_or(0, Vec::len);
    assert!(history >= 1, "the faults were changefeed errors: {q}");
    verify(&cluster, "spill", t, 1);
}
