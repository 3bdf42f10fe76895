//! A deposed owner cannot write, across processes (target-design §4.7): the owner's `cdc
//! server` is frozen with SIGSTOP past its session TTL, another capture takes over, then the
//! frozen one is woken with SIGCONT. Its stale owner worker's txns carry the old election key
//! compare and fail; it must step down and come back as a new capture, while the cluster
//! keeps exactly one owner, a monotonic checkpoint, and a sink that verifies clean.

// Lag and the freeze are measured against the wall clock, as an operator would.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/fencing";

struct Servers(Vec<(u16, Child)>);

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // A reaped child's pid may belong to another process by now.
            if matches!(c.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn cli(pd: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["cli", "--pd", pd, "--cluster-prefix", PREFIX];
    all.extend_from_slice(args);
    Command::new(CDC).args(&all).output().expect("run cdc cli")
}

fn json(out: &std::process::Output) -> Option<Value> {
    serde_json::from_slice(&out.stdout).ok()
}

/// The owner's capture id from etcd's election key, as `cdc cli capture list` reports it.
fn owner(pd: &str) -> Option<String> {
    json(&cli(pd, &["capture", "list"]))?
        .as_array()?
        .iter()
        .find(|c| c["is-owner"] == true)
        .and_then(|c| c["id"].as_str().map(str::to_owned))
}

fn checkpoint(pd: &str) -> Option<u64> {
    json(&cli(pd, &["changefeed", "query", "-s", "-c", "fenced"]))?["tso"].as_u64()
}

async fn status(http: &reqwest::Client, port: u16) -> Option<Value> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_that_wakes_up_is_fenced_and_steps_down() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "demo://?tables=6&rows-per-second=100&key-space=100&seed=5&start={}&retention=none",
        now_ms() - 60_000
    );
    let servers = Servers(
        (0..3)
            .map(|i| {
                let port = free_port();
                let log = std::fs::File::create(dir.path().join(format!("capture-{i}.log")))
                    .expect("log");
                let child = Command::new(CDC)
                    .args([
                        "server",
                        "--pd",
                        &pd,
                        "--addr",
                        &format!("127.0.0.1:{port}"),
                    ])
                    .args(["--cluster-prefix", PREFIX, "--upstream", &upstream])
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log))
                    .spawn()
                    .expect("spawn cdc server");
                (port, child)
            })
            .collect(),
    );
    let http = reqwest::Client::new();
    wait_until(DEADLINE, "an owner among three captures", || async {
        let mut owners = 0;
        for (port, _) in &servers.0 {
            match status(&http, *port).await {
                Some(s) if s["is_owner"] == true => owners += 1,
                Some(_) => {}
                None => return false,
            }
        }
        owners == 1
    })
    .await;
    let sink = format!(
        "file://{}/sink?protocol=canal-json&enable-tidb-extension=true",
        dir.path().display()
    );
    let out = cli(
        &pd,
        &["changefeed", "create", "-c", "fenced", "--sink-uri", &sink],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = checkpoint(&pd).expect("checkpoint");
    wait_until(DEADLINE, "replication under way", || async {
        checkpoint(&pd).is_some_and(|c| c > start)
    })
    .await;

    // Freeze the owner's process past its 10 s session TTL.
    let old_owner = owner(&pd).expect("owner");
    let mut frozen = None;
    for (port, child) in &servers.0 {
        if status(&http, *port)
            .await
            .is_some_and(|s| s["id"] == old_owner.as_str())
        {
            frozen = Some((*port, child.id()));
        }
    }
    let (frozen_port, pid) = frozen.expect("the owner's process");
    assert!(Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let frozen_at = Instant::now();
    wait_until(
        Duration::from_secs(40),
        "another capture becomes owner",
        || async { owner(&pd).is_some_and(|o| o != old_owner) },
    )
    .await;
    let new_owner = owner(&pd).expect("new owner");
    println!("new owner after {:?} frozen", frozen_at.elapsed());
    let before_wake = checkpoint(&pd).expect("checkpoint");
    wait_until(
        DEADLINE,
        "the new owner advances the checkpoint",
        || async { checkpoint(&pd).is_some_and(|c| c > before_wake) },
    )
    .await;

    // Wake it. For the next seconds: one owner (the new one), checkpoint never going back.
    assert!(Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let mut last = checkpoint(&pd).unwrap_or(0);
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(
            owner(&pd).as_deref(),
            Some(new_owner.as_str()),
            "ownership must not flip back"
        );
        let c = checkpoint(&pd).unwrap_or(0);
        assert!(c >= last, "checkpoint went back from {last} to {c}");
        last = c;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The woken process stepped down and came back as a new, non-owner capture.
    wait_until(
        DEADLINE,
        "the woken capture re-registers with a new id",
        || async {
            status(&http, frozen_port).await.is_some_and(|s| {
                s["id"] != old_owner.as_str() && s["id"] != "" && s["is_owner"] == false
            })
        },
    )
    .await;
    let log = std::fs::read_to_string(
        dir.path().join(
            (0..3)
                .find(|i| servers.0[*i].0 == frozen_port)
                .map(|i| format!("capture-{i}.log"))
                .unwrap_or_default(),
        ),
    )
    .unwrap_or_default();
    assert!(
        log.contains("session lost") || log.contains("enced"),
        "the woken capture saw it lost its session:\n{log}"
    );

    // And the data: the sink folds to the oracle at a checkpoint after the episode.
    let t = checkpoint(&pd).expect("checkpoint");
    let out = Command::new(CDC)
        .args([
            "verify",
            "--upstream",
            &upstream,
            "--sink-uri",
            &sink,
            "-c",
            "fenced",
        ])
        .args(["--start-ts", &start.to_string(), "--ts", &t.to_string()])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
