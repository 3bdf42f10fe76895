//! Issue #11's acceptance scenario: three `cdc server` processes on a real etcd, one
//! changefeed of many `demo://` tables into `blackhole://`. Every table must be held within
//! 30 s of the create; the checkpoint lag must then fall to 2 s (within 60 s of the create),
//! and from there stay within 5 s; no capture may lose its session
//! (its capture id and its key stay the same throughout).
//!
//! Knobs (the figures in `benches/README.md` come from `scripts/scale`, which sets them):
//! - `RCDC_SCALE_TABLES` (default 10,000);
//! - `RCDC_SCALE_CDC`: the `cdc` binary (default: this build's, unoptimized);
//! - `RCDC_SCALE_STEADY_SECS`: how long the steady lag is watched (default 20).
//!
//! It prints one line of figures: time to full dispatch, time until the lag first falls to 2 s,
//! the steady lag from there (median, max), RSS per capture.

// Lag and dispatch time are measured against the wall clock, as an operator would.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::model::{ChangeFeedStatus, TaskStatus};

const PREFIX: &str = "/t/scale";
/// How long after the create the checkpoint lag may take to fall to [`CAUGHT_UP`].
const CATCH_UP: Duration = Duration::from_secs(60);
/// The lag at which the changefeed counts as caught up, and its steady lag is watched.
const CAUGHT_UP: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cdc_binary() -> String {
    std::env::var("RCDC_SCALE_CDC").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cdc").to_owned())
}

fn server(pd: &str, addr: &str, upstream: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(cdc_binary())
        .args([
            "server",
            "--pd",
            pd,
            "--addr",
            addr,
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            upstream,
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// What etcd says: live capture ids, tables held per capture, the changefeed status.
struct Snapshot {
    captures: Vec<String>,
    held: BTreeMap<String, usize>,
    status: Option<ChangeFeedStatus>,
}

async fn snapshot<S: MetaStore>(store: &S) -> Snapshot {
    let (kvs, _) = store
        .get_prefix(&format!("{PREFIX}/"))
        .await
        .expect("list the cluster");
    let mut snap = Snapshot {
        captures: vec![],
        held: BTreeMap::new(),
        status: None,
    };
    for kv in kvs {
        if let Some(id) = kv.key.strip_prefix(&format!("{PREFIX}/capture/")) {
            snap.captures.push(id.to_owned());
        } else if let Some(rest) = kv.key.strip_prefix(&format!("{PREFIX}/task/status/")) {
            let capture = rest.split('/').next().unwrap_or_default().to_owned();
            let tables = serde_json::from_slice::<TaskStatus>(&kv.value)
                .ok()
                .and_then(|s| s.tables)
                .map_or(0, |t| t.len());
            snap.held.insert(capture, tables);
        } else if kv.key == format!("{PREFIX}/job/scale") {
            snap.status = serde_json::from_slice(&kv.value).ok();
        }
    }
    snap.captures.sort();
    snap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tables_on_three_captures_are_held_fast_and_keep_up() {
    let tables: usize = env_or("RCDC_SCALE_TABLES", 10_000);
    let steady_secs: u64 = env_or("RCDC_SCALE_STEADY_SECS", 20);
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let dir_path = dir.path().to_owned();
    // `RCDC_SCALE_KEEP=1` keeps the captures' logs for a look after the run.
    let _dir = if std::env::var_os("RCDC_SCALE_KEEP").is_some() {
        eprintln!("scale: logs kept in {}", dir.keep().display());
        None
    } else {
        Some(dir)
    };
    let upstream = format!("demo://?tables={tables}&rows-per-second=1&key-space=100");
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let logs: Vec<std::path::PathBuf> = (0..3)
        .map(|n| dir_path.join(format!("capture-{n}.log")))
        .collect();
    let servers = Servers(
        addrs
            .iter()
            .zip(&logs)
            .map(|(addr, log)| server(&pd, addr, &upstream, log))
            .collect(),
    );
    let store = etcd.store().await;
    wait_until(DEADLINE, "three captures registered", || async {
        snapshot(&store).await.captures.len() == 3
    })
    .await;
    let captures = snapshot(&store).await.captures;

    // Create through the HTTP API of a capture, as `cdc cli` would.
    let created = Instant::now();
    let body = serde_json::json!({"changefeed_id": "scale", "sink_uri": "blackhole://"});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/changefeeds", addrs[0]))
        .json(&body)
        .send()
        .await
        .expect("create request");
    assert!(resp.status().is_success(), "create: {}", resp.status());

    // Every table held, with one holder each.
    let mut dispatched = None;
    while created.elapsed() < Duration::from_secs(120) {
        let snap = snapshot(&store).await;
        if snap.held.values().sum::<usize>() == tables {
            dispatched = Some(created.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dispatched = dispatched.unwrap_or_else(|| {
        let snap = futures::executor::block_on(snapshot(&store));
        panic!(
            "{tables} tables: not all held 120 s after create: {:?}",
            snap.held
        )
    });

    // Catch-up: the lag first falls to CAUGHT_UP. Until then it measures how fast thousands
    // of table pipelines start, not whether they keep up.
    let mut caught_up = None;
    while created.elapsed() < CATCH_UP {
        let checkpoint = snapshot(&store)
            .await
            .status
            .map_or(0, |s| s.checkpoint_ts.physical_ms());
        if now_ms().saturating_sub(checkpoint) <= CAUGHT_UP.as_millis() as u64 {
            caught_up = Some(created.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = caught_up.unwrap_or_else(|| {
        panic!("{tables} tables: the checkpoint lag did not fall to {CAUGHT_UP:?} within {CATCH_UP:?} of create")
    });

    // Steady lag: the changefeed checkpoint against the wall clock.
    let mut lags = Vec::new();
    let mut series = Vec::new();
    let until = Instant::now() + Duration::from_secs(steady_secs);
    while Instant::now() < until {
        let snap = snapshot(&store).await;
        let checkpoint = snap
            .status
            .map(|s| s.checkpoint_ts.physical_ms())
            .unwrap_or(0);
        lags.push(now_ms().saturating_sub(checkpoint));
        series.push((now_ms(), lags[lags.len() - 1]));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worst_at = series
        .iter()
        .max_by_key(|(_, lag)| *lag)
        .map_or(0, |(at, _)| at.saturating_sub(series[0].0));
    lags.sort_unstable();
    let median = lags[lags.len() / 2];
    let max = lags.last().copied().unwrap_or(u64::MAX);
    let rss: Vec<u64> = servers.0.iter().map(|c| rss_kib(c.id()) / 1024).collect();
    let after = snapshot(&store).await;
    println!(
        "scale: {tables} tables, 3 captures: all held after {:.1} s; lag down to 2 s after {:.1} s; steady lag median {} ms, max {} ms ({:.1} s into the window) over {} s; RSS per capture {:?} MiB",
        dispatched.as_secs_f64(),
        caught_up.as_secs_f64(),
        median,
        max,
        worst_at as f64 / 1000.0,
        steady_secs,
        rss
    );

    let lost: Vec<String> = logs
        .iter()
        .filter_map(|l| std::fs::read_to_string(l).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("session lost") || l.contains("session lease is gone"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(lost.is_empty(), "a capture lost its session: {lost:?}");
    assert_eq!(
        after.captures, captures,
        "the same three capture ids throughout"
    );
    assert!(
        dispatched <= Duration::from_secs(30),
        "{tables} tables: all held only after {dispatched:?} (target 30 s)"
    );
    assert!(
        max <= 5_000,
        "{tables} tables: steady checkpoint lag reached {max} ms (target 5 s); (unix ms, lag ms) {series:?}"
    );
}
