//! Recording and replay from real multi-capture runs on real etcd (issue #6): three
//! `cdc server --record DIR` processes, a changefeed paused, resumed and carried through an
//! owner change (the owner's process SIGKILLed); then `cdc replay DIR` must reproduce every
//! recorded tick of every owner incarnation exactly. A tampered recording must be caught with
//! a readable diff. The dry run (`--from-etcd`) must not write to etcd.

mod common;

use std::process::{Child, Command, Output, Stdio};

use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/replay";

struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

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
    let out = cli(
        &pd,
        &[
            "changefeed",
            "create",
            "-c",
            "rec",
            "--sink-uri",
            "blackhole://",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = state(&pd).map(|s| s.1).unwrap_or(0);
    wait_until(DEADLINE, "progress", || async {
        state(&pd).is_some_and(|s| s.1 > t0)
    })
    .await;
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
    for c in &mut servers.0 {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
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

    let out = Command::new(CDC)
        .args(["replay", &rec.to_string_lossy()])
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reproduced: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        reproduced.len() >= 2,
        "two owner incarnations recorded:\n{text}"
    );
    assert!(reproduced.iter().all(|n| *n > 5), "{text}");

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
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("checkpoint-ts")))
        .expect("a recording with progress writes");
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
