//! The sorter's disk spill on real processes and a real etcd (issue #14): a table whose slices
//! outgrow `per-table-memory-quota` spills runs under `<data-dir>/tmp/sorter` and still
//! verifies clean; a clean exit removes the files; a capture SIGKILLed mid-spill leaves them,
//! and the next start on the same data dir removes them (saying how many bytes) and loses
//! nothing.
//!
//! The scripted scenario `one_table_at_a_million_rows_per_second` (`scripts/sorter-spill`,
//! ignored here) is the acceptance run: its figures are in `benches/README.md`.
// The demo upstream and the checkpoint are wall-clock times, as an operator sees them.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::Ts;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/sorter";
/// Catching up on a debug build, on a CI machine shared with other tests.
const CATCH_UP: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A capture's files: `data` (its --data-dir), its config and its log.
struct Node {
    data: PathBuf,
    addr: String,
}

impl Node {
    fn new(root: &Path, quota: u64) -> Self {
        let data = root.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::write(
            root.join("cdc.toml"),
            format!("per-table-memory-quota = {quota}\n"),
        )
        .expect("config");
        Node {
            data,
            addr: format!("127.0.0.1:{}", free_port()),
        }
    }

    fn sort_dir(&self) -> PathBuf {
        self.data.join("tmp").join("sorter")
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.data.join(format!("capture-{n}.log"))
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// Start number `n` of a capture on this data dir.
    fn start(&self, pd: &str, upstream: &str, n: usize) -> Child {
        let log = std::fs::File::create(self.log_path(n)).expect("log file");
        let config = self
            .data
            .parent()
            .map(|p| p.join("cdc.toml"))
            .unwrap_or_default();
        Command::new(CDC)
            .args([
                "server",
                "--pd",
                pd,
                "--addr",
                &self.addr,
                "--cluster-prefix",
                PREFIX,
            ])
            .args(["--upstream", upstream, "--log-level", "info"])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cdc server")
    }
}

/// Process directories in the sort dir and the `.run` files (count, bytes) in each.
fn sort_dir_listing(sort_dir: &Path) -> Vec<(String, usize, u64)> {
    let Ok(dirs) = std::fs::read_dir(sort_dir) else {
        return vec![];
    };
    let mut out: Vec<(String, usize, u64)> = dirs
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let runs: Vec<u64> = std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".run"))
                .filter_map(|f| f.metadata().ok().map(|m| m.len()))
                .collect();
            (
                e.file_name().to_string_lossy().into_owned(),
                runs.len(),
                runs.iter().sum(),
            )
        })
        .collect();
    out.sort();
    out
}

fn cli(pd: &str, args: &[&str]) -> Output {
    let mut all = vec!["cli", "--pd", pd, "--cluster-prefix", PREFIX];
    all.extend_from_slice(args);
    Command::new(CDC).args(&all).output().expect("run cdc cli")
}

fn query(pd: &str, id: &str) -> Value {
    let out = cli(pd, &["changefeed", "query", "-c", id]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
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

async fn wait_registered(etcd: &EtcdHarness, captures: usize) {
    let store = etcd.store().await;
    wait_until(DEADLINE, "the capture registered", || async {
        store
            .get_prefix(&format!("{PREFIX}/capture/"))
            .await
            .map(|(kvs, _)| kvs.len() == captures)
            .unwrap_or(false)
    })
    .await;
}

/// The checkpoint the owner recorded in the file sink's `metadata`.
fn sink_checkpoint(root: &Path, id: &str) -> Ts {
    std::fs::read_to_string(root.join(id).join("metadata"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["checkpoint-ts"].as_u64())
        .map_or(Ts(0), Ts)
}

/// `cdc verify` at `t`: 0 mismatches.
fn verify(upstream: &str, sink: &str, t: Ts) -> String {
    let out = Command::new(CDC)
        .args([
            "verify",
            "--upstream",
            upstream,
            "--sink-uri",
            sink,
            "--ts",
            &t.0.to_string(),
        ])
        .output()
        .expect("run cdc verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("verified at ts {}: 0 mismatches", t.0)),
        "verify {sink} at {t:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `rcdc_sorter_spilled_runs_total` of the capture at `addr` (0 while it does not answer).
async fn spilled_runs(addr: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{addr}/metrics")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("rcdc_sorter_spilled_runs_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// One demo table at `rate` rows/s, history from a minute ago, kept forever.
fn demo(rate: u64) -> String {
    format!(
        "demo://?tables=1&rows-per-second={rate}&key-space=50000&seed=11&start={}&retention=none",
        now_ms() - 60_000
    )
}

/// 6 MiB, the smallest quota TiCDC accepts: a 1-second slice of 30,000 rows does not fit.
const SMALL_QUOTA: u64 = 6 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_past_its_quota_spills_and_verifies_and_a_clean_exit_removes_the_files() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let root = tempfile::tempdir().expect("dir");
    let node = Node::new(root.path(), SMALL_QUOTA);
    let upstream = demo(30_000);
    let mut servers = Servers(vec![node.start(&pd, &upstream, 0)]);
    wait_registered(&etcd, 1).await;
    let sink_root = root.path().join("sink");
    let sink = format!(
        "file://{}?protocol=canal-json&enable-tidb-extension=true",
        sink_root.display()
    );
    // Ten seconds behind: the pipeline catches up in 1-second slices of 30,000 rows.
    create(&pd, "spill", &sink, Ts::from_parts(now_ms() - 10_000, 0));
    let t = Ts::from_parts(now_ms() + 2_000, 0);
    wait_until(CATCH_UP, "the changefeed catches up past T", || async {
        sink_checkpoint(&sink_root, "spill") >= t
    })
    .await;
    let runs = spilled_runs(&node.addr).await;
    assert!(
        runs > 0,
        "the catch-up slices spilled: {runs} runs\n{}",
        node.log(0)
    );
    assert_eq!(query(&pd, "spill")["info"]["state"], "normal");
    verify(&upstream, &sink, t);

    let listing = sort_dir_listing(&node.sort_dir());
    assert_eq!(listing.len(), 1, "one process directory: {listing:?}");
    assert!(listing[0].0.starts_with("rcdc-"), "{listing:?}");
    // A clean exit (SIGTERM) removes it.
    let pid = servers.0[0].id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = std::sync::Mutex::new(&mut servers.0[0]);
    wait_until(DEADLINE, "the capture exits", || {
        let done = exited
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(Some(_))))
            .unwrap_or(false);
        async move { done }
    })
    .await;
    assert_eq!(
        sort_dir_listing(&node.sort_dir()),
        vec![],
        "{}",
        node.log(0)
    );
    assert!(
        node.log(0).contains("removed the sorter's files"),
        "{}",
        node.log(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_killed_mid_spill_leaves_files_that_the_next_start_removes() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let root = tempfile::tempdir().expect("dir");
    let node = Node::new(root.path(), SMALL_QUOTA);
    let upstream = demo(30_000);
    let mut servers = Servers(vec![node.start(&pd, &upstream, 0)]);
    wait_registered(&etcd, 1).await;
    let sink_root = root.path().join("sink");
    let sink = format!(
        "file://{}?protocol=canal-json&enable-tidb-extension=true",
        sink_root.display()
    );
    create(&pd, "crash", &sink, Ts::from_parts(now_ms() - 30_000, 0));
    wait_until(CATCH_UP, "a spilled run is on disk", || async {
        sort_dir_listing(&node.sort_dir())
            .iter()
            .any(|(_, runs, _)| *runs > 0)
    })
    .await;
    servers.0[0].kill().expect("SIGKILL");
    let _ = servers.0[0].wait();
    let left = sort_dir_listing(&node.sort_dir());
    let left_bytes: u64 = left.iter().map(|(_, _, b)| b).sum();
    assert!(left_bytes > 0, "SIGKILL left the runs: {left:?}");

    // The next capture on the same data dir removes them, says so, and loses nothing.
    servers.0.push(node.start(&pd, &upstream, 1));
    wait_until(
        DEADLINE,
        "the next start reports the stale files",
        || async { node.log(1).contains("left by 1 stopped process(es)") },
    )
    .await;
    let log = node.log(1);
    assert!(
        log.contains(&format!("removed {left_bytes} bytes of sorter files")),
        "the bytes are named ({left:?}):\n{log}"
    );
    assert!(
        sort_dir_listing(&node.sort_dir())
            .iter()
            .all(|(dir, _, _)| !left.iter().any(|(old, _, _)| old == dir)),
        "the dead process's directory is gone"
    );
    let t = Ts::from_parts(now_ms() + 2_000, 0);
    wait_until(CATCH_UP, "the changefeed catches up past T", || async {
        sink_checkpoint(&sink_root, "crash") >= t
    })
    .await;
    verify(&upstream, &sink, t);
}

/// The acceptance run of issue #14 (`scripts/sorter-spill`): one demo table at 1,000,000
/// rows/s with a 16 MiB quota for `RCDC_SORTER_SECONDS` (60) on the `cdc` at `RCDC_SORTER_CDC`
/// (a release build). The capture keeps running and spills, its RSS stays under quota +
/// 64 MiB, and `cdc verify` finds 0 mismatches at the checkpoint reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a scripted scenario (scripts/sorter-spill): a minute at 1M rows/s on a release build"]
async fn one_table_at_a_million_rows_per_second() {
    let cdc = std::env::var("RCDC_SORTER_CDC").unwrap_or_else(|_| CDC.to_owned());
    let seconds: u64 = std::env::var("RCDC_SORTER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    const QUOTA: u64 = 16 << 20;
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let root = tempfile::tempdir().expect("dir");
    let node = Node::new(root.path(), QUOTA);
    let start_ms = now_ms();
    let upstream = format!(
        "demo://?tables=1&rows-per-second=1000000&key-space=1000000&seed=5&start={}&retention=none",
        start_ms - 1_000
    );
    let log = std::fs::File::create(node.log_path(0)).expect("log");
    let child = Command::new(&cdc)
        .args([
            "server",
            "--pd",
            &pd,
            "--addr",
            &node.addr,
            "--cluster-prefix",
            PREFIX,
        ])
        .args(["--upstream", &upstream, "--log-level", "info", "--data-dir"])
        .arg(&node.data)
        .arg("--config")
        .arg(root.path().join("cdc.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server");
    let pid = child.id();
    let mut servers = Servers(vec![child]);
    wait_registered(&etcd, 1).await;
    let sink_root = root.path().join("sink");
    let sink = format!(
        "file://{}?protocol=canal-json&enable-tidb-extension=true",
        sink_root.display()
    );
    create(&pd, "fast", &sink, Ts::from_parts(now_ms(), 0));
    let mut max_rss_kib = 0u64;
    let began = now_ms();
    while now_ms() < began + seconds * 1_000 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        max_rss_kib = max_rss_kib.max(rss);
        assert!(
            matches!(servers.0[0].try_wait(), Ok(None)),
            "the capture keeps running:\n{}",
            node.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let q = query(&pd, "fast");
    let runs = spilled_runs(&node.addr).await;
    let checkpoint = sink_checkpoint(&sink_root, "fast");
    let lag_ms = now_ms().saturating_sub(checkpoint.physical_ms());
    let replicated_ms = checkpoint.physical_ms().saturating_sub(began);
    println!(
        "sorter-spill: {seconds} s at 1,000,000 rows/s, quota 16 MiB: max RSS {:.1} MiB, {runs} runs spilled, \
         checkpoint {:.1} s of upstream time replicated ({:.0} rows/s), lag {:.1} s at the end, state {}",
        max_rss_kib as f64 / 1024.0,
        replicated_ms as f64 / 1000.0,
        replicated_ms as f64 * 1000.0 / seconds as f64,
        lag_ms as f64 / 1000.0,
        q["info"]["state"]
    );
    assert_eq!(q["info"]["state"], "normal", "{q}");
    assert!(q["info"]["error"].is_null(), "{q}");
    assert!(runs > 0, "it spilled");
    assert!(
        max_rss_kib * 1024 <= QUOTA + (64 << 20),
        "RSS {max_rss_kib} KiB over quota + 64 MiB"
    );
    let verified = verify(&upstream, &sink, checkpoint);
    println!(
        "sorter-spill: {}",
        verified.lines().last().unwrap_or_default()
    );
}
