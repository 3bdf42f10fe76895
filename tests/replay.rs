//! Recording and replay from real multi-capture runs on real etcd (issue #6): three
//! `cdc server --record DIR` processes, a changefeed paused, resumed and carried through an
//! owner change (the owner's process SIGKILLed); then `cdc replay DIR` must reproduce every
//! recorded tick of every owner incarnation exactly. A tampered recording must be caught with
//! a readable diff. The dry run (`--from-etcd`) must not write to etcd.

mod common;

use std::process::{Command, Output, Stdio};

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/replay";

fn cli(pd: &str, args: &[&str]) -> Output {
    let mut all = vec!["cli", "--pd", pd, "--cluster-prefix", PREFIX];
    all.extend_from_slice(args);
    Command::new(CDC).args(&all).output().expect("run cdc cli")
}

fn state(pd: &str) -> Option<(String, u64)> {
    let v: Value =
        serde_json::from_slice(&cli(pd, &["changefeed", "query", "-s", "-c", "rec"]).stdout)
            .ok()?;
    Some((v["state"].as_str()?.to_owned(), v["tso"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_of_a_real_cluster_replay_exactly() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let rec = dir.path().join("rec");
    let spawn = |i: usize| {
        let log = std::fs::File::create(dir.path().join(format!("capture-{i}.log"))).expect("log");
        Command::new(CDC)
            .args([
                "server",
                "--pd",
                &pd,
                "--addr",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args([
                "--cluster-prefix",
                PREFIX,
                "--upstream",
                "demo://?tables=5&rows-per-second=50&retention=none",
            ])
            .args(["--record", &rec.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cdc server")
    };
    let mut servers = Servers((0..3).map(spawn).collect());
    wait_until(DEADLINE, "three captures", || async {
        serde_json::from_slice::<Value>(&cli(&pd, &["capture", "list"]).stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            == Some(3)
    })
    .await;
    create_and_see_progress(&pd, "blackhole://").await;
    assert!(cli(&pd, &["changefeed", "pause", "-c", "rec"])
        .status
        .success());
    wait_until(DEADLINE, "stopped", || async {
        state(&pd).is_some_and(|s| s.0 == "stopped")
    })
    .await;
    assert!(cli(&pd, &["changefeed", "resume", "-c", "rec"])
        .status
        .success());
    wait_until(DEADLINE, "normal", || async {
        state(&pd).is_some_and(|s| s.0 == "normal")
    })
    .await;

    // Owner change: SIGKILL the owner's process; another capture's owner starts recording.
    let captures: Value =
        serde_json::from_slice(&cli(&pd, &["capture", "list"]).stdout).expect("list");
    let owner_addr = captures
        .as_array()
        .and_then(|a| a.iter().find(|c| c["is-owner"] == true))
        .and_then(|c| c["address"].as_str())
        .expect("owner")
        .to_owned();
    let http = reqwest::Client::new();
    let mut victim = None;
    for (i, c) in servers.0.iter().enumerate() {
        let _ = c;
        let url = format!("http://{owner_addr}/api/v1/status");
        if let Ok(r) = http.get(&url).send().await {
            let pid = r.json::<Value>().await.ok().and_then(|v| v["pid"].as_u64());
            if pid == Some(u64::from(servers.0[i].id())) {
                victim = Some(i);
            }
        }
    }
    let victim = victim.expect("the owner's process");
    servers.0[victim].kill().expect("SIGKILL");
    let _ = servers.0[victim].wait();
    let t1 = state(&pd).map(|s| s.1).unwrap_or(0);
    wait_until(
        std::time::Duration::from_secs(40),
        "progress under a new owner",
        || async { state(&pd).is_some_and(|s| s.1 > t1 + (1 << 18) * 1_000) },
    )
    .await;

    // Stop everything, then replay every recording.
    // Only to processes still running: the victim is reaped, and its pid may already belong
    // to some other process.
    for c in &mut servers.0 {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }
    for c in &mut servers.0 {
        let _ = c.wait();
    }
    // Dry run on the (now quiet) cluster's state: reads, prints, never writes.
    let (_, rev_before) = etcd.store().await.get_prefix("/").await.expect("read");
    let out = Command::new(CDC)
        .args([
            "replay",
            "--from-etcd",
            "--pd",
            &pd,
            "--cluster-prefix",
            PREFIX,
            "--ticks",
            "3",
        ])
        .output()
        .expect("dry run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("(nothing is written)") && text.contains("tick 3 at "),
        "{text}"
    );
    let (_, rev_after) = etcd.store().await.get_prefix("/").await.expect("read");
    assert_eq!(rev_after, rev_before, "the dry run wrote nothing");

    let text = replay_ok(&rec);
    let reproduced = reproduced(&text);
    let count = |role: &str| reproduced.iter().filter(|(r, _)| r == role).count();
    assert!(
        count("owner") >= 2,
        "two owner incarnations recorded:\n{text}"
    );
    assert!(
        count("processor") >= 3,
        "every capture's processor manager:\n{text}"
    );
    assert!(reproduced.iter().all(|(_, n)| *n > 5), "{text}");

    // --dump names decisions.
    let out = Command::new(CDC)
        .args(["replay", "--dump", &rec.to_string_lossy()])
        .output()
        .expect("dump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("AddTable") && text.contains("effect   list tables of rec"),
        "{}",
        &text[..text.len().min(3000)]
    );

    // Tamper with one recorded decision: replay must point at that tick.
    let file = std::fs::read_dir(&rec)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("owner-"))
        })
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("checkpoint-ts")))
        .expect("an owner recording with progress writes");
    let text = std::fs::read_to_string(&file).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(r#"{"type":"tick""#) && l.contains(r#""checkpoint_ts":"#))
        .expect("a tick advancing the checkpoint");
    lines[i] = lines[i].replacen(r#""checkpoint_ts":"#, r#""checkpoint_ts":1"#, 1);
    std::fs::write(&file, lines.join("\n")).expect("write");
    let out = Command::new(CDC)
        .args(["replay", &file.to_string_lossy()])
        .output()
        .expect("replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("(line {})", i + 1))
            && err.contains("differs from the recording")
            && err.contains("+ "),
        "{err}"
    );
}

/// Creates changefeed `rec` (blackhole sink) and waits until its checkpoint moves.
async fn create_and_see_progress(pd: &str, sink_uri: &str) {
    let out = cli(
        pd,
        &["changefeed", "create", "-c", "rec", "--sink-uri", sink_uri],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = state(pd).map(|s| s.1).unwrap_or(0);
    wait_until(DEADLINE, "progress", || async {
        state(pd).is_some_and(|s| s.1 > t0)
    })
    .await;
}

/// How many files the capture's recording switch says are being written.
async fn files_being_recorded(http: &reqwest::Client, url: &str) -> Option<usize> {
    let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    v["files"].as_array().map(Vec::len)
}

/// Runs `cdc replay DIR`, asserts it reproduced everything, returns its output.
fn replay_ok(dir: &std::path::Path) -> String {
    let out = Command::new(CDC)
        .args(["replay", &dir.to_string_lossy()])
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `(role, ticks)` per line of `cdc replay` output (`<path>: <role>: <n> ticks reproduced…`).
fn reproduced(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(": ");
            let (_, role, rest) = (parts.next()?, parts.next()?, parts.next()?);
            Some((role.to_owned(), rest.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Recording switched on and off through the HTTP API on a running capture: both reactors'
/// files start mid-life (a `resume` line) and replay exactly; bad requests are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_turned_on_and_off_through_the_api_replays() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let rec = dir.path().join("rec");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("capture.log")).expect("log");
    let _server = Servers(vec![Command::new(CDC)
        .args([
            "server",
            "--pd",
            &pd,
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.path().to_string_lossy(),
        ])
        .args([
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            "demo://?tables=3&rows-per-second=50&retention=none",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")]);
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/debug/recording");
    wait_until(DEADLINE, "the capture is the owner", || async {
        match http
            .get(format!("http://127.0.0.1:{port}/api/v1/status"))
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["is_owner"] == true),
            Err(_) => false,
        }
    })
    .await;
    // A password in the sink URI must never reach a recording file.
    create_and_see_progress(&pd, "blackhole://root:s3cret@db/?password=p4ss").await;

    // Bad requests: 400 with the TiCDC error shape, nothing changes. A directory outside the
    // capture's data dir and --record dir is refused.
    for (body, says) in [
        (r#"{"enabled":"yes"}"#, "invalid request body"),
        (r#"{"enabled":true,"color":1}"#, "unknown field"),
        (
            r#"{"enabled":true,"dir":"/tmp/rcdc-elsewhere"}"#,
            "must be inside the capture's --data-dir or --record directory",
        ),
    ] {
        let r = http.put(&url).body(body).send().await.expect("put");
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error_msg"].as_str().is_some_and(|m| m.contains(says))
                && v["error_code"].is_string(),
            "{body}: {v}"
        );
    }
    let v: Value = http
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["enabled"], false, "{v}");

    let r = http
        .put(&url)
        .json(&serde_json::json!({"enabled": true, "dir": rec}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    wait_until(DEADLINE, "both reactors record", || async {
        files_being_recorded(&http, &url).await == Some(2)
    })
    .await;
    let t1 = state(&pd).map(|s| s.1).unwrap_or(0);
    wait_until(DEADLINE, "progress while recording", || async {
        state(&pd).is_some_and(|s| s.1 > t1)
    })
    .await;
    let r = http
        .put(&url)
        .body(r#"{"enabled":false}"#)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    wait_until(DEADLINE, "both files end", || async {
        files_being_recorded(&http, &url).await == Some(0)
    })
    .await;

    for file in std::fs::read_dir(&rec).expect("recordings") {
        let path = file.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("recording");
        assert!(
            !text.contains("s3cret") && !text.contains("p4ss"),
            "{} holds a password",
            path.display()
        );
    }
    let text = replay_ok(&rec);
    let mut roles: Vec<String> = reproduced(&text).into_iter().map(|(r, _)| r).collect();
    roles.sort();
    assert_eq!(roles, ["owner", "processor"], "{text}");
    assert_eq!(
        text.matches("resumed mid-life (ended: recording turned off)")
            .count(),
        2,
        "{text}"
    );
}
