//! A cluster of real `cdc server` processes on a real etcd, for end-to-end scenarios: start N
//! captures (with `FAILPOINTS`, a server TOML, extra flags), drive them with `cdc cli`, kill
//! and add captures, read a changefeed's file sink checkpoint and run `cdc verify`.
//!
//! Every capture has its own `--data-dir` and log under the cluster's temp dir; every address
//! is a free loopback port. Dropping the cluster SIGKILLs what is still running.
// The demo upstream and the checkpoint are wall-clock times, as an operator sees them.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::Ts;
use serde_json::Value;

use super::procs::free_port;
use super::{wait_until, DEADLINE};

/// The `cdc` binary built for this test crate.
pub const CDC: &str = env!("CARGO_BIN_EXE_cdc");

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The TSO of the wall clock `offset_ms` from now (negative: in the past).
pub fn ts_from_now(offset_ms: i64) -> Ts {
    Ts::from_parts(now_ms().saturating_add_signed(offset_ms), 0)
}

/// A `demo://` upstream of `tables` tables at `rate` rows/s each, history from a minute ago,
/// kept forever (so a late `cdc verify` still has its oracle's snapshot).
pub fn demo_upstream(tables: u32, rate: u64) -> String {
    demo_upstream_at(now_ms() - 60_000, tables, rate, "")
}

/// How a [`Cluster`] starts.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Captures started at once.
    pub captures: usize,
    /// `--upstream` of every capture.
    pub upstream: String,
    /// `--cluster-prefix`.
    pub prefix: String,
    /// `FAILPOINTS` of every capture (a failpoint build only).
    pub failpoints: Option<String>,
    /// The server TOML every capture gets with `--config`.
    pub config_toml: Option<String>,
    /// `--log-level`.
    pub log_level: String,
    /// The `cdc` binary of the captures (default: this test crate's).
    pub cdc: PathBuf,
}

impl ClusterSpec {
    /// `captures` captures on `upstream`, under `prefix`.
    pub fn new(captures: usize, upstream: String, prefix: &str) -> Self {
        Self {
            captures,
            upstream,
            prefix: prefix.to_owned(),
            failpoints: None,
            config_toml: None,
            log_level: "info".to_owned(),
            cdc: PathBuf::from(CDC),
        }
    }
}

/// One capture process of the cluster.
pub struct CaptureProc {
    /// The process, until it is killed or exits.
    pub child: Child,
    /// `--addr`.
    pub addr: String,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
    log: PathBuf,
}

/// etcd and the captures (see the module docs).
pub struct Cluster {
    /// The etcd.
    pub etcd: EtcdHarness,
    /// Logs, data dirs and sinks live here.
    pub dir: tempfile::TempDir,
    /// How it was started (later captures start the same way).
    pub spec: ClusterSpec,
    /// Every capture ever started, in order (dead ones included).
    pub captures: Vec<CaptureProc>,
    /// `--pd` for captures and the CLI when not etcd itself (e.g. the PD stand-in's members
    /// in front of it); set before adding captures.
    pub pd_override: Option<String>,
}

impl Cluster {
    /// Starts etcd and `spec.captures` captures, and waits until they registered.
    pub async fn start(spec: ClusterSpec) -> Self {
        let etcd = EtcdHarness::start().await;
        let dir = tempfile::tempdir().expect("cluster dir");
        if let Some(toml) = &spec.config_toml {
            std::fs::write(dir.path().join("cdc.toml"), toml).expect("server config");
        }
        let n = spec.captures;
        let mut cluster = Cluster {
            etcd,
            dir,
            spec,
            captures: Vec::new(),
            pd_override: None,
        };
        for _ in 0..n {
            cluster.add_capture();
        }
        cluster.wait_captures(n).await;
        cluster
    }

    /// The etcd endpoint (`--pd`).
    pub fn pd(&self) -> String {
        self.pd_override
            .clone()
            .unwrap_or_else(|| self.etcd.client_url())
    }

    /// Starts one more capture with a data dir of its own; returns its index.
    pub fn add_capture(&mut self) -> usize {
        let data_dir = self
            .dir
            .path()
            .join(format!("capture-{}", self.captures.len()));
        self.add_capture_on(data_dir)
    }

    /// Starts one more capture on `data_dir` (a dead capture's, to restart it); returns its
    /// index.
    pub fn add_capture_on(&mut self, data_dir: PathBuf) -> usize {
        let i = self.captures.len();
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log = self.dir.path().join(format!("capture-{i}.log"));
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(&self.spec.cdc);
        cmd.args(["server", "--pd", &self.pd(), "--addr", &addr])
            .args(["--cluster-prefix", &self.spec.prefix])
            .args(["--upstream", &self.spec.upstream])
            .args(["--log-level", &self.spec.log_level])
            .arg("--data-dir")
            .arg(&data_dir);
        if self.spec.config_toml.is_some() {
            cmd.arg("--config").arg(self.dir.path().join("cdc.toml"));
        }
        if let Some(fp) = &self.spec.failpoints {
            cmd.env("FAILPOINTS", fp);
        }
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn cdc server");
        self.captures.push(CaptureProc {
            child,
            addr,
            data_dir,
            log,
        });
        i
    }

    /// Capture `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.captures[i].log).unwrap_or_default()
    }

    /// Every capture's log, each under a heading (for failure messages).
    pub fn logs(&self) -> String {
        (0..self.captures.len())
            .map(|i| format!("--- capture {i} ---\n{}", self.log(i)))
            .collect()
    }

    /// Whether capture `i`'s process still runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        matches!(self.captures[i].child.try_wait(), Ok(None))
    }

    /// SIGKILLs capture `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let c = &mut self.captures[i].child;
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERMs capture `i` (the graceful path: drain, resign, leave) and waits for its exit.
    pub async fn terminate(&mut self, i: usize) {
        if !self.is_running(i) {
            return;
        }
        let pid = self.captures[i].child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.is_running(i) {
            assert!(
                tokio::time::Instant::now() < end,
                "capture {i} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until exactly `n` captures are registered in etcd.
    pub async fn wait_captures(&self, n: usize) {
        let store = self.etcd.store().await;
        let prefix = format!("{}/capture/", self.spec.prefix);
        wait_until(DEADLINE, &format!("{n} captures registered"), || async {
            store
                .get_prefix(&prefix)
                .await
                .map(|(kvs, _)| kvs.len() == n)
                .unwrap_or(false)
        })
        .await;
    }

    /// `cdc cli --pd … --cluster-prefix … ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(CDC)
            .args([
                "cli",
                "--pd",
                &self.pd(),
                "--cluster-prefix",
                &self.spec.prefix,
            ])
            .args(args)
            .output()
            .expect("run cdc cli")
    }

    /// A CLI call that must succeed; its stdout as JSON (`Null` if it is not JSON).
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cdc cli {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `changefeed query -c ID` as JSON (`Null` while it does not answer).
    pub fn query(&self, id: &str) -> Value {
        let out = self.cli(&["changefeed", "query", "-c", id]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The index of the capture that is the owner now, if one is.
    pub fn owner(&self) -> Option<usize> {
        let list = serde_json::from_slice::<Value>(&self.cli(&["capture", "list"]).stdout).ok()?;
        let addr = list.as_array()?.iter().find(|c| c["is-owner"] == true)?["address"]
            .as_str()?
            .to_owned();
        self.captures.iter().rposition(|c| c.addr == addr)
    }

    /// Waits until a capture is the owner; returns its index.
    pub async fn wait_owner(&self) -> usize {
        wait_until(DEADLINE, "an owner", || async { self.owner().is_some() }).await;
        self.owner().unwrap_or_default()
    }

    /// The file sink URI of changefeed `id` (canal-json with the commit ts, for `cdc verify`).
    pub fn sink_uri(&self, id: &str) -> String {
        format!(
            "file://{}?protocol=canal-json&enable-tidb-extension=true",
            self.sink_root(id).display()
        )
    }

    fn sink_root(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("sink-{id}"))
    }

    /// `changefeed create -c ID --sink-uri <its file sink> --start-ts START [MORE]`.
    pub fn create(&self, id: &str, start: Ts, more: &[&str]) {
        let sink = self.sink_uri(id);
        let start = start.0.to_string();
        let mut args = vec!["changefeed", "create", "-c", id, "--sink-uri", &sink];
        args.extend(["--start-ts", &start]);
        args.extend_from_slice(more);
        self.cli_ok(&args);
    }

    /// The checkpoint the owner recorded in `id`'s file sink (0 before the first).
    pub fn sink_checkpoint(&self, id: &str) -> Ts {
        std::fs::read_to_string(self.sink_root(id).join(id).join("metadata"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["checkpoint-ts"].as_u64())
            .map_or(Ts(0), Ts)
    }

    /// Waits until `id`'s sink checkpoint reaches `t`.
    pub async fn wait_sink_checkpoint(&self, id: &str, t: Ts, within: Duration) {
        wait_until(
            within,
            &format!("{id}'s sink checkpoint reaches {t:?}"),
            || async { self.sink_checkpoint(id) >= t },
        )
        .await;
    }

    /// `cdc verify` of `id`'s sink at `t`: asserts 0 mismatches; returns its output.
    pub fn verify(&self, id: &str, t: Ts) -> String {
        self.verify_with(id, t, &[])
    }

    /// [`Cluster::verify`] with more `cdc verify` flags (e.g. `--enable-old-value false`).
    pub fn verify_with(&self, id: &str, t: Ts, more: &[&str]) -> String {
        let out = Command::new(CDC)
            .args(["verify", "--upstream", &self.spec.upstream])
            .args([
                "--sink-uri",
                &self.sink_uri(id),
                "-c",
                id,
                "--ts",
                &t.0.to_string(),
            ])
            .args(more)
            .output()
            .expect("run cdc verify");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success()
                && stdout.contains(&format!("verified at ts {}: 0 mismatches", t.0)),
            "verify {id} at {t:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Capture `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.captures[i].data_dir
    }

    /// Capture `i`'s `/metrics` text (empty while it does not answer).
    pub async fn metrics(&self, i: usize) -> String {
        let url = format!("http://{}/metrics", self.captures[i].addr);
        match reqwest::get(url).await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    // ---- Helpers for the second half of the scenarios (wt-scen-b). ----

    /// Starts one more capture whose `FAILPOINTS` is `failpoints` instead of the spec's (a
    /// fault on one capture only); returns its index.
    pub fn add_capture_with_failpoints(&mut self, failpoints: Option<&str>) -> usize {
        let spec = std::mem::replace(&mut self.spec.failpoints, failpoints.map(str::to_owned));
        let i = self.add_capture();
        self.spec.failpoints = spec;
        i
    }

    /// The tables of changefeed `id` each capture holds, from `changefeed query`'s task
    /// statuses (captures without a task status are absent).
    pub fn tables_by_capture(&self, id: &str) -> BTreeMap<String, BTreeSet<i64>> {
        let q = self.query(id);
        let mut held = BTreeMap::new();
        for task in q["task-status"].as_array().into_iter().flatten() {
            let Some(capture) = task["capture-id"].as_str() else {
                continue;
            };
            let tables = task["status"]["tables"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.keys().filter_map(|k| k.parse().ok()))
                .collect();
            held.insert(capture.to_owned(), tables);
        }
        held
    }

    /// A form-encoded POST to capture `i`'s API (TiCDC v5's `/capture/owner/...` routes):
    /// the status code and the body.
    pub async fn post_form(&self, i: usize, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let resp = reqwest::Client::new()
            .post(format!("http://{}{path}", self.captures[i].addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST to the capture's API");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Writes `contents` to `name` in the cluster's dir (a changefeed `--config`, say);
    /// returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write a file in the cluster dir");
        path
    }

    /// Whether `id`'s file sink has a directory for demo table `t<table>`.
    pub fn sink_has_table(&self, id: &str, table: i64) -> bool {
        self.sink_root(id)
            .join(id)
            .join("demo")
            .join(format!("t{table}"))
            .is_dir()
    }

    /// Waits until `id`'s file sink has demo table `t<table>` (TiCDC's `check_table_exists`).
    pub async fn wait_sink_table(&self, id: &str, table: i64, within: Duration) {
        wait_until(
            within,
            &format!("{id}'s sink has table t{table}"),
            || async { self.sink_has_table(id, table) },
        )
        .await;
    }

    /// Every canal-json message in `id`'s file sink, file by file in path order.
    pub fn sink_messages(&self, id: &str) -> Vec<Value> {
        let mut files = Vec::new();
        let mut dirs = vec![self.sink_root(id).join(id)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("CDC") && n.ends_with(".json"))
                {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }
}

/// Server TOML with fast owner and processor ticks, so scenarios move in tens of ms.
pub const FAST_TICKS: &str = "owner-flush-interval = '50ms'\nprocessor-flush-interval = '50ms'\n";

/// [`demo_upstream`] with scheduled DDL: each `(op, at_ms)` is `create:<id>` or `drop:<id>`
/// (ids may be ranges `a-b`) at `at_ms` from now.
pub fn demo_upstream_ddl(tables: u32, rate: u64, ddl: &[(&str, i64)]) -> String {
    const HISTORY_MS: i64 = 60_000;
    let ddl = ddl
        .iter()
        .map(|(op, at)| format!("{op}@{}ms", (HISTORY_MS + at).max(0)))
        .collect::<Vec<_>>()
        .join(",");
    demo_upstream_at(
        now_ms().saturating_sub(HISTORY_MS as u64),
        tables,
        rate,
        &ddl,
    )
}

// Helpers for the scenarios of issue #16 item 1, second half (availability … gc_safepoint).
impl Cluster {
    /// Capture `i`'s id as `capture list` shows it (None while it is not registered).
    pub fn capture_id(&self, i: usize) -> Option<String> {
        let list = serde_json::from_slice::<Value>(&self.cli(&["capture", "list"]).stdout).ok()?;
        let addr = &self.captures[i].addr;
        list.as_array()?
            .iter()
            .find(|c| c["address"] == addr.as_str())?["id"]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until capture `i` is registered; returns its id.
    pub async fn wait_capture_id(&self, i: usize) -> String {
        wait_until(DEADLINE, &format!("capture {i} registered"), || async {
            self.capture_id(i).is_some()
        })
        .await;
        self.capture_id(i).unwrap_or_default()
    }

    /// How many captures `capture list` shows.
    pub fn capture_count(&self) -> usize {
        serde_json::from_slice::<Value>(&self.cli(&["capture", "list"]).stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// Revokes the etcd lease of capture `i`'s session (TiCDC's scripts do it with `etcdctl
    /// lease revoke` to end a session at once); returns the id it was registered under.
    pub async fn revoke_session(&self, i: usize) -> String {
        let store = self.etcd.store().await;
        let prefix = format!("{}/capture/", self.spec.prefix);
        let (kvs, _) = store.get_prefix(&prefix).await.expect("read captures");
        let addr = &self.captures[i].addr;
        let kv = kvs
            .iter()
            .find(|kv| {
                serde_json::from_slice::<Value>(&kv.value)
                    .is_ok_and(|v| v["address"] == addr.as_str())
            })
            .unwrap_or_else(|| panic!("capture {i} ({addr}) is not registered"));
        store
            .revoke_lease(kv.lease)
            .await
            .expect("revoke the capture's lease");
        kv.key.trim_start_matches(&prefix).to_owned()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, …) to capture `i`'s process.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.captures[i].child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} capture {i} (pid {pid})");
    }

    /// `changefeed query -s -c ID`'s state (None while it does not answer).
    pub fn state(&self, id: &str) -> Option<String> {
        let out = self.cli(&["changefeed", "query", "-s", "-c", id]);
        let v = serde_json::from_slice::<Value>(&out.stdout).ok()?;
        v["state"].as_str().map(str::to_owned)
    }

    /// Waits until changefeed `id` is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str, within: Duration) {
        wait_until(within, &format!("{id} is {state}"), || async {
            self.state(id).as_deref() == Some(state)
        })
        .await;
    }

    /// How many changefeeds `changefeed list` shows (removed ones are not).
    pub fn changefeed_count(&self) -> usize {
        self.cli_ok(&["changefeed", "list"])
            .as_array()
            .map_or(0, Vec::len)
    }

    /// The tables capture `capture_id` holds for changefeed `cf` (`processor query`'s
    /// `status.tables` keys; empty while it holds none or does not answer).
    pub fn processor_tables(&self, cf: &str, capture_id: &str) -> Vec<i64> {
        let out = self.cli(&["processor", "query", "-c", cf, "-p", capture_id]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["status"]["tables"]
                    .as_object()
                    .map(|t| t.keys().filter_map(|k| k.parse().ok()).collect())
            })
            .unwrap_or_default()
    }

    /// Capture `i`'s HTTP API base URL.
    pub fn api(&self, i: usize) -> String {
        format!("http://{}", self.captures[i].addr)
    }
}

/// A `demo://` upstream like [`demo_upstream`] whose epoch is `start_ms` (DDL offsets count
/// from it), with `ddl` (the URI's `ddl=` value) if not empty.
pub fn demo_upstream_at(start_ms: u64, tables: u32, rate: u64, ddl: &str) -> String {
    let mut uri = format!(
        "demo://?tables={tables}&rows-per-second={rate}&key-space=200&seed=9&start={start_ms}&retention=none"
    );
    if !ddl.is_empty() {
        uri.push_str("&ddl=");
        uri.push_str(ddl);
    }
    uri
}

/// Server TOML for fast scenarios: short owner and processor flush intervals and the
/// shortest capture session TTL rcdc accepts (5 s), so a lost capture is noticed quickly.
pub const FAST_TOML: &str =
    "owner-flush-interval = '50ms'\nprocessor-flush-interval = '50ms'\ncapture-session-ttl = 5\n";

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.captures {
            let _ = c.child.kill();
        }
        for c in &mut self.captures {
            let _ = c.child.wait();
        }
    }
}
