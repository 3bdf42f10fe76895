//! The `cdc-standin` binary as a process in front of a real etcd: TSO monotonic across a
//! SIGKILL and restart on the same data dir, and start failures as one line naming what
//! failed (the whole cluster over TLS through it is `tests/pd_tls.rs`).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::procs::{free_port, Servers};
use rcdc_proto::pdpb::{self, pd_client::PdClient};
use rcdc_reactor::testing::{wait_until, EtcdHarness};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-standin");
const DEADLINE: Duration = Duration::from_secs(20);

/// Starts the stand-in (its log appended to `log`) and waits for its ready line.
fn spawn_ready(args: &[String], log: &std::path::Path) -> (Child, String) {
    common::standin::spawn_ready(BIN, args, log)
}

/// Runs the stand-in expecting it to fail; returns (exit code, stderr).
fn run_failing(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cdc-standin");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        let _ = tx.send(s);
    });
    let Ok(stderr) = rx.recv_timeout(DEADLINE) else {
        let _ = child.kill();
        panic!("cdc-standin {args:?} did not exit within {DEADLINE:?}");
    };
    (child.wait().expect("wait").code(), stderr)
}

async fn pd(url: &str) -> PdClient<tonic::transport::Channel> {
    PdClient::connect(url.to_string())
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

async fn tso(url: &str, cluster_id: u64) -> pdpb::Timestamp {
    let req = pdpb::TsoRequest {
        header: Some(pdpb::RequestHeader {
            cluster_id,
            sender_id: 0,
        }),
        count: 1,
        dc_location: String::new(),
    };
    let mut stream = pd(url)
        .await
        .tso(futures::stream::iter(vec![req]))
        .await
        .expect("Tso")
        .into_inner();
    stream
        .message()
        .await
        .expect("TSO answer")
        .expect("one answer")
        .timestamp
        .expect("ts")
}

async fn cluster_id(url: &str) -> u64 {
    let resp = pd(url)
        .await
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    resp.expect("GetMembers")
        .into_inner()
        .header
        .expect("header")
        .cluster_id
}

#[tokio::test]
async fn tso_stays_monotonic_across_a_restart_on_the_same_data_dir() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let args = vec![
        format!("--etcd={}", etcd.client_url()),
        format!("--listen=127.0.0.1:{p1},127.0.0.1:{p2}"),
        format!("--data-dir={}", dir.path().join("data").display()),
    ];
    let leader = format!("http://127.0.0.1:{p1}");
    let log = dir.path().join("standin.log");
    let (child, ready) = spawn_ready(&args, &log);
    let mut procs = Servers(vec![child]);
    assert!(
        ready.contains(&format!("pd-2=http://127.0.0.1:{p2}")),
        "{ready}"
    );
    let id = cluster_id(&leader).await;
    let before = tso(&leader, id).await;
    let state: serde_json::Value = reqwest::get(format!("{leader}/standin/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let saved = state["tso_saved_bound_ms"].as_i64().expect("saved bound");
    assert!(
        saved > before.physical,
        "the window is ahead of what was handed out"
    );

    // SIGKILL: nothing gets to flush. The restart must start past the saved window, which is
    // seconds ahead of the clock, so a stand-in that forgot it would hand out smaller stamps.
    for c in &mut procs.0 {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let (child, _) = spawn_ready(&args, &log);
    procs.0 = vec![child];
    assert_eq!(
        cluster_id(&leader).await,
        id,
        "the cluster id lives in etcd"
    );
    let after = tso(&leader, id).await;
    assert!(
        after.physical > saved,
        "{after:?} must pass the saved bound {saved}"
    );
}

#[test]
fn a_busy_listen_address_is_named() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let listen = format!("127.0.0.1:{},{addr}", free_port());
    let (code, stderr) = run_failing(&[
        "pd",
        "--etcd",
        "http://127.0.0.1:1",
        "--listen",
        &listen,
        "--data-dir",
        &data,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_etcd_is_named() {
    let etcd = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_failing(&[
        "pd",
        "--etcd",
        &etcd,
        "--listen",
        &listen,
        "--data-dir",
        &data,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("etcd at {etcd} is unreachable")),
        "{stderr}"
    );
}

#[test]
fn tls_flags_go_together_bad_files_are_named_and_help_lists_the_switches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let base = [
        "pd",
        "--etcd",
        "http://127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
    ];
    let (code, stderr) = run_failing(&[&base[..], &["--ca", "ca.pem"]].concat());
    assert_eq!(code, Some(2), "--ca alone is bad usage: {stderr}");
    assert!(
        stderr.contains("--cert") && stderr.contains("--key"),
        "{stderr}"
    );
    let missing = dir.path().join("missing-ca.pem").display().to_string();
    let tls = ["--ca", &missing, "--cert", "c.pem", "--key", "k.pem"];
    let (code, stderr) = run_failing(&[&base[..], &tls[..]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read CA file (--ca) {missing}")),
        "{stderr}"
    );

    let out = Command::new(BIN).args(["pd", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for route in [
        "/standin/leader",
        "/standin/tso",
        "/standin/members/{name}",
        "/standin/stores/{id}",
    ] {
        assert!(help.contains(route), "--help lists {route}:\n{help}");
    }
    let (code, stderr) = run_failing(&[
        "pd",
        "--etcd",
        "x",
        "--listen",
        "nonsense",
        "--data-dir",
        "d",
    ]);
    assert_eq!(code, Some(2), "bad usage: {stderr}");
    assert!(stderr.contains("nonsense"), "{stderr}");
}

const CDC: &str = env!("CARGO_BIN_EXE_cdc");

/// `cdc cli --pd <members> ...` stdout as JSON, or None while it fails.
fn cli_json(pd: &str, args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new(CDC)
        .args(["cli", "--pd", pd])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[tokio::test]
async fn a_cdc_server_on_the_standin_runs_the_production_path() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let args = vec![
        format!("--etcd={}", etcd.client_url()),
        format!("--listen=127.0.0.1:{p1},127.0.0.1:{p2}"),
        format!("--data-dir={}", dir.path().join("data").display()),
    ];
    let (standin, _) = spawn_ready(&args, &dir.path().join("standin.log"));
    let mut procs = Servers(vec![standin]);
    let pd = format!("http://127.0.0.1:{p1},http://127.0.0.1:{p2}");
    let log = std::fs::File::create(dir.path().join("capture.log")).unwrap();
    let capture = Command::new(CDC)
        .args([
            "server",
            "--pd",
            &pd,
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args([
            "--upstream",
            "demo://?tables=2&rows-per-second=20&retention=none",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn cdc server");
    procs.0.push(capture);

    // Through the follower's port: etcd's services answer on every member.
    let follower = format!("http://127.0.0.1:{p2}");
    wait_until(Duration::from_secs(30), "the capture registers", || async {
        cli_json(&follower, &["capture", "list"])
            .is_some_and(|v| v.as_array().is_some_and(|a| a.len() == 1))
    })
    .await;
    let direct = cli_json(&etcd.client_url(), &["capture", "list"]).expect("etcd read directly");
    assert_eq!(
        direct.as_array().map(Vec::len),
        Some(1),
        "the capture's key is in the real etcd"
    );

    let created = Command::new(CDC)
        .args([
            "cli",
            "--pd",
            &pd,
            "changefeed",
            "create",
            "--sink-uri",
            "blackhole://",
            "--changefeed-id",
            "cf",
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let checkpoint = || {
        cli_json(&pd, &["changefeed", "list"])
            .and_then(|v| v[0]["summary"]["tso"].as_u64())
            .unwrap_or(0)
    };
    let first = checkpoint();
    wait_until(
        Duration::from_secs(30),
        "the checkpoint advances",
        || async { checkpoint() > first },
    )
    .await;
}
