//! End to end with real processes on a real etcd: three `cdc server` captures, a changefeed
//! of 16 `demo://` tables into a `file://` canal-json sink created with `cdc cli`; the owner's
//! process is SIGKILLed mid-run and another capture started; once the checkpoint passes T, `cdc verify`
//! reports 0 mismatches at T. Also the CLI's bad-input answers.

// Lag is measured against the wall clock, as an operator would.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::procs::Servers;
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::Ts;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/processes";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn server(pd: &str, n: u16, upstream: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log.join(format!("capture-{n}.log"))).expect("log file");
    Command::new(CDC)
        .args([
            "server",
            "--pd",
            pd,
            "--addr",
            &format!("127.0.0.1:{}", 18300 + n),
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            upstream,
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

fn cdc(args: &[&str]) -> Output {
    Command::new(CDC).args(args).output().expect("run cdc")
}

/// `cdc cli --pd PD --cluster-prefix PREFIX ARGS...`
fn cli(pd: &str, args: &[&str]) -> Output {
    let mut all = vec!["cli", "--pd", pd, "--cluster-prefix", PREFIX];
    all.extend_from_slice(args);
    cdc(&all)
}

fn checkpoint(pd: &str) -> Option<Ts> {
    let out = cli(pd, &["changefeed", "query", "-c", "e2e"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["status"]["checkpoint-ts"].as_u64().map(Ts)
}

async fn wait_checkpoint(pd: &str, at_least: Ts, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if checkpoint(pd).is_some_and(|c| c >= at_least) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn lag_ms(pd: &str) -> u64 {
    now_ms().saturating_sub(checkpoint(pd).map(|c| c.physical_ms()).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tables_survive_a_sigkill_and_verify_clean() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "demo://?tables=16&rows-per-second=100&key-space=200&seed=3&start={}&retention=none",
        now_ms() - 60_000
    );
    let mut servers = Servers(
        (1..=3)
            .map(|n| server(&pd, n, &upstream, dir.path()))
            .collect(),
    );
    let store = etcd.store().await;
    wait_until(DEADLINE, "three captures registered", || async {
        store
            .get_prefix(&format!("{PREFIX}/capture/"))
            .await
            .map(|(kvs, _)| kvs.len() == 3)
            .unwrap_or(false)
    })
    .await;

    let sink = format!(
        "file://{}/sink?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    let start = Ts::from_parts(now_ms(), 0);
    let out = cli(
        &pd,
        &[
            "changefeed",
            "create",
            "-c",
            "e2e",
            "--sink-uri",
            &sink,
            "--start-ts",
            &start.0.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_checkpoint(
        &pd,
        Ts::from_parts(start.physical_ms() + 2_000, 0),
        "replication under way",
    )
    .await;
    let lag_before = lag_ms(&pd);

    // SIGKILL the owner's process (found like an operator would, with `cdc cli capture list`).
    let out = cli(&pd, &["capture", "list"]);
    let captures: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("capture list JSON");
    let owner_addr = captures
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["is-owner"] == true)
        .and_then(|c| c["address"].as_str())
        .expect("an owner")
        .to_owned();
    let port: u16 = owner_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let victim = usize::from(port - 18301);
    servers.0[victim].kill().expect("SIGKILL the owner");
    let _ = servers.0[victim].wait();
    servers.0.push(server(&pd, 4, &upstream, dir.path()));
    let t = Ts::from_parts(now_ms() + 3_000, 0);
    wait_checkpoint(
        &pd,
        t,
        "checkpoint passes T after the kill (session TTL 10 s)",
    )
    .await;
    let lag_after = lag_ms(&pd);
    println!("checkpoint lag before the kill {lag_before} ms, after recovery {lag_after} ms");

    let out = cdc(&[
        "verify",
        "--upstream",
        &upstream,
        "--sink-uri",
        &sink,
        "--ts",
        &t.0.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify at T failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("verified at ts {}: 0 mismatches", t.0)),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("table ")).count(),
        16,
        "{stdout}"
    );

    // A T the sink cannot have reached: the same command must fail, naming the mismatches.
    let future = Ts::from_parts(now_ms() + 120_000, 0);
    let out = cdc(&[
        "verify",
        "--upstream",
        &upstream,
        "--sink-uri",
        &sink,
        "--ts",
        &future.0.to_string(),
    ]);
    assert!(
        !out.status.success(),
        "verify must exit non-zero on mismatches"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mismatches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And at the checkpoint the owner recorded in the sink, with everything defaulted.
    let out = cdc(&["verify", "--upstream", &upstream, "--sink-uri", &sink]);
    assert!(
        out.status.success(),
        "verify at the recorded checkpoint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changefeed_requests_are_refused_with_a_clear_message() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let create =
        |id: &str, sink: &str| cli(&pd, &["changefeed", "create", "-c", id, "--sink-uri", sink]);
    for (id, sink, expect) in [
        ("ok-id", "kafka://127.0.0.1:9092/topic", "kafka"),
        ("ok-id", "file:///tmp/x?protocol=avro", "avro"),
        ("ok-id", "file:///tmp/x", "protocol"),
        ("ok-id", "nonsense", "nonsense"),
        ("bad id!", "blackhole://", "invalid changefeed id"),
    ] {
        let out = create(id, sink);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sink} must be refused");
        assert!(
            err.starts_with("Error: ") && err.lines().count() == 1,
            "one clear line: {err}"
        );
        assert!(err.contains(expect), "{sink}: {err}");
    }
    let first = create("dup", "blackhole://");
    assert!(first.status.success());
    assert!(
        String::from_utf8_lossy(&first.stderr)
            .contains("Warning: the cluster's default upstream is unknown"),
        "with no capture to ask, the create says what it checked against: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = create("dup", "blackhole://");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let store = etcd.store().await;
    let (kvs, _) = store
        .get_prefix(&format!("{PREFIX}/changefeed/info/"))
        .await
        .expect("list");
    assert_eq!(kvs.len(), 1, "nothing was written for refused requests");
}
