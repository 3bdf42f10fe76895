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

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, Servers};
use common::*;
use rcdc::failpoints::POINTS;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::Ts;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/failpoints";
/// Recovery includes the processor's and the owner's backoffs (1 s, 2 s, 4 s ...).
const RECOVERY: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One `cdc server` with `FAILPOINTS`, logging at info to `<dir>/capture.log`.
fn server(pd: &str, upstream: &str, failpoints: &str, dir: &Path) -> Child {
    server_with(pd, upstream, failpoints, dir, &[])
}

/// [`server`] with more arguments.
fn server_with(pd: &str, upstream: &str, failpoints: &str, dir: &Path, more: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("capture.log")).expect("log file");
    Command::new(CDC)
        .args([
            "server",
            "--pd",
            pd,
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            upstream,
            "--log-level",
            "info",
        ])
        .args(more)
        .env("FAILPOINTS", failpoints)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("capture.log")).unwrap_or_default()
}

fn cdc(args: &[&str]) -> Output {
    Command::new(CDC).args(args).output().expect("run cdc")
}

fn cli(pd: &str, args: &[&str]) -> Output {
    let mut all = vec!["cli", "--pd", pd, "--cluster-prefix", PREFIX];
    all.extend_from_slice(args);
    cdc(&all)
}

/// `changefeed query` as JSON (Null while it does not answer).
fn query(pd: &str, id: &str) -> Value {
    let out = cli(pd, &["changefeed", "query", "-c", id]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn checkpoint(q: &Value) -> Ts {
    Ts(q["status"]["checkpoint-ts"].as_u64().unwrap_or(0))
}

/// The message of the changefeed's last error, if any.
fn last_error(q: &Value) -> Option<String> {
    q["info"]["error"]["message"].as_str().map(str::to_owned)
}

async fn wait_registered(etcd: &EtcdHarness) {
    let store = etcd.store().await;
    wait_until(DEADLINE, "the capture registered", || async {
        store
            .get_prefix(&format!("{PREFIX}/capture/"))
            .await
            .map(|(kvs, _)| kvs.len() == 1)
            .unwrap_or(false)
    })
    .await;
}

fn create(pd: &str, id: &str, sink: &str, start: Ts) {
    let out = cli(
        pd,
        &[
            "changefeed",
            "create",
            "-c",
            id,
            "--sink-uri",
            sink,
            "--start-ts",
            &start.0.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "create {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The checkpoint the owner recorded in the file sink (`<root>/<changefeed>/metadata`), which
/// `cdc verify` needs; it follows the status checkpoint by a flush interval.
fn sink_checkpoint(root: &Path, id: &str) -> Ts {
    std::fs::read_to_string(root.join(id).join("metadata"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["checkpoint-ts"].as_u64())
        .map_or(Ts(0), Ts)
}

/// `cdc verify` at `t`: 0 mismatches over `tables` tables.
fn verify(upstream: &str, sink: &str, t: Ts, tables: usize) {
    let out = cdc(&[
        "verify",
        "--upstream",
        upstream,
        "--sink-uri",
        sink,
        "--ts",
        &t.0.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify {sink} at {t:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("verified at ts {}: 0 mismatches", t.0)),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("table ")).count(),
        tables,
        "{stdout}"
    );
}

fn demo(tables: u32) -> String {
    format!(
        "demo://?tables={tables}&rows-per-second=50&key-space=100&seed=7&start={}&retention=none",
        now_ms() - 60_000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failpoint_build_lists_every_point_at_start() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let _servers = Servers(vec![server(
        &etcd.client_url(),
        &demo(1),
        "sink-flush=2*return(disk gone);owner-ddl=off",
        dir.path(),
    )]);
    wait_until(DEADLINE, "the start log lists every failpoint", || async {
        POINTS
            .iter()
            .all(|p| log(dir.path()).contains(&format!("failpoint {p}: ")))
    })
    .await;
    let log = log(dir.path());
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
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = demo(2);
    let mut servers = Servers(vec![server(
        &pd,
        &upstream,
        "pipeline-panic=1*panic(boom)",
        dir.path(),
    )]);
    wait_registered(&etcd).await;
    let start = Ts::from_parts(now_ms(), 0);
    let sinks: Vec<(&str, String)> = ["panic-a", "panic-b"]
        .into_iter()
        .map(|id| {
            let sink = format!(
                "file://{}/{id}?protocol=canal-json&enable-tidb-extension=true",
                dir.path().display()
            );
            create(&pd, id, &sink, start);
            (id, sink)
        })
        .collect();

    let t = Ts::from_parts(now_ms() + 3_000, 0);
    wait_until(
        RECOVERY,
        "both changefeeds pass T in their sinks",
        || async {
            sinks
                .iter()
                .all(|(id, _)| sink_checkpoint(&dir.path().join(id), id) >= t)
        },
    )
    .await;
    assert!(
        matches!(servers.0[0].try_wait(), Ok(None)),
        "the capture must survive the panic:\n{}",
        log(dir.path())
    );
    assert!(
        log(dir.path()).contains("boom"),
        "the point fired:\n{}",
        log(dir.path())
    );
    let errored: Vec<&str> = sinks
        .iter()
        .filter(|(id, _)| last_error(&query(&pd, id)).is_some_and(|m| m.contains("boom")))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(errored.len(), 1, "exactly one changefeed saw the panic");
    for (id, sink) in &sinks {
        let q = query(&pd, id);
        assert_eq!(q["info"]["state"], "normal", "{id}: {q}");
        verify(&upstream, sink, t, 2);
    }
}

/// TiCDC's `sink_retry`: the sink's write fails three times. The changefeed goes to error,
/// backs off, retries, and replicates again; nothing is lost or duplicated at T.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_write_failures_back_off_and_recover() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = demo(2);
    let _servers = Servers(vec![server(
        &pd,
        &upstream,
        "sink-write=3*return(sink down)",
        dir.path(),
    )]);
    wait_registered(&etcd).await;
    let sink = format!(
        "file://{}/retry?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    let start = Ts::from_parts(now_ms(), 0);
    create(&pd, "retry", &sink, start);

    wait_until(
        RECOVERY,
        "the changefeed records the sink error",
        || async {
            last_error(&query(&pd, "retry")).is_some_and(|m| m.contains("failpoint sink-write"))
        },
    )
    .await;
    let t = Ts::from_parts(now_ms() + 3_000, 0);
    wait_until(RECOVERY, "the changefeed recovers past T", || async {
        let q = query(&pd, "retry");
        q["info"]["state"] == "normal"
            && checkpoint(&q) >= t
            && sink_checkpoint(&dir.path().join("retry"), "retry") >= t
    })
    .await;
    let q = query(&pd, "retry");
    let rounds = q["info"]["history"].as_array().map_or(0, Vec::len);
    println!(
        "sink-write failed in {rounds} error round(s): {}",
        q["info"]["error"]
    );
    assert!((1..=3).contains(&rounds), "one to three error rounds: {q}");
    verify(&upstream, &sink, t, 2);
}

/// Control-plane faults: the first etcd txn (the capture's registration) fails as if its
/// outcome were unknown, and the owner's DDL lookup fails twice. The capture registers again
/// at once with a new id (the reset rate limit's burst of 2 counts the first attempt; a third
/// would wait for its interval, facts §9), the owner retries the lookup, and the changefeed
/// replicates and verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_txn_and_owner_ddl_failures_are_retried() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = demo(1);
    let _servers = Servers(vec![server(
        &pd,
        &upstream,
        "etcd-txn=1*return(indeterminate);owner-ddl=2*return(ddl lookup down)",
        dir.path(),
    )]);
    wait_registered(&etcd).await;
    let sink = format!(
        "file://{}/ctl?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    create(&pd, "ctl", &sink, Ts::from_parts(now_ms(), 0));
    let t = Ts::from_parts(now_ms() + 3_000, 0);
    wait_until(RECOVERY, "the changefeed passes T in its sink", || async {
        sink_checkpoint(&dir.path().join("ctl"), "ctl") >= t
    })
    .await;
    let log = log(dir.path());
    assert!(log.contains("failpoint etcd-txn"), "{log}");
    assert!(
        log.contains("failpoint owner-ddl: ddl lookup down"),
        "{log}"
    );
    verify(&upstream, &sink, t, 1);
}

/// The sorter's disk faults (issue #14): its first spill write finds the disk full, and a
/// later read of a run finds it corrupt. Each fails only the table's run: the changefeed
/// errors with a message naming the sort dir (or the file), restarts the table from its
/// checkpoint, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sort_dir_and_a_corrupt_run_fail_the_table_and_lose_nothing() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let config = dir.path().join("cdc.toml");
    // 6 MiB: a 1-second slice of 30,000 rows spills.
    std::fs::write(&config, "per-table-memory-quota = 6291456\n").expect("config");
    let upstream = format!(
        "demo://?tables=1&rows-per-second=30000&key-space=50000&seed=3&start={}&retention=none",
        now_ms() - 60_000
    );
    let (data_arg, config_arg) = (data.display().to_string(), config.display().to_string());
    let _servers = Servers(vec![server_with(
        &pd,
        &upstream,
        "sorter-spill-write=1*return(enospc);sorter-spill-read=1*return(bit flip)",
        dir.path(),
        &["--data-dir", &data_arg, "--config", &config_arg],
    )]);
    wait_registered(&etcd).await;
    let sink = format!(
        "file://{}/spill?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    create(&pd, "spill", &sink, Ts::from_parts(now_ms() - 10_000, 0));
    let sort_dir = data.join("tmp").join("sorter");
    wait_until(RECOVERY, "both faults fired", || async {
        let log = log(dir.path());
        log.contains(&format!(
            "no space left for the sorter in {}/rcdc-",
            sort_dir.display()
        )) && log.contains("is corrupt at byte")
    })
    .await;
    let t = Ts::from_parts(now_ms() + 2_000, 0);
    wait_until(RECOVERY, "the changefeed recovers past T", || async {
        let q = query(&pd, "spill");
        q["info"]["state"] == "normal" && sink_checkpoint(&dir.path().join("spill"), "spill") >= t
    })
    .await;
    let q = query(&pd, "spill");
    let history = q["info"]["history"].as_array().map_or(0, Vec::len);
    assert!(history >= 1, "the faults were changefeed errors: {q}");
    verify(&upstream, &sink, t, 1);
}
