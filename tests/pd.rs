//! Issue #12's acceptance on the PD stand-in in front of a real etcd, with `cdc server` and
//! `cdc cli` processes pointed at the stand-in as at a TiDB cluster's PD: server start (PD
//! detected, versions checked), `cdc cli tso query`, the owner's service GC safe point in PD
//! (following the checkpoint, removed with the last changefeed), a changefeed failed when
//! PD's GC passed its checkpoint, create refused below the safe point, and a PD leader move
//! mid-run.

// The lag of a TSO is measured against the wall clock, as an operator would.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, Servers};
use common::standin::Standin;
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const STANDIN: &str = env!("CARGO_BIN_EXE_cdc-standin");
const UPSTREAM: &str = "demo://?tables=4&rows-per-second=20&retention=none";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `cdc server --pd PD --upstream UPSTREAM EXTRA`, logging to `dir/capture-<port>.log`.
fn server(pd: &str, dir: &Path, extra: &[&str]) -> (Child, PathBuf, u16) {
    let port = free_port();
    let log_path = dir.join(format!("capture-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(CDC)
        .args(["server", "--pd", pd, "--addr", &format!("127.0.0.1:{port}")])
        .args(["--upstream", UPSTREAM, "--log-level", "info"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server");
    (child, log_path, port)
}

fn cli(pd: &str, args: &[&str]) -> Output {
    Command::new(CDC)
        .args(["cli", "--pd", pd])
        .args(args)
        .output()
        .expect("cdc cli")
}

fn cli_ok(pd: &str, args: &[&str]) -> String {
    let out = cli(pd, args);
    assert!(
        out.status.success(),
        "cdc cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The changefeed's checkpoint (0 while unknown).
fn checkpoint(pd: &str, id: &str) -> u64 {
    let out = cli(pd, &["changefeed", "query", "-s", "-c", id]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["tso"].as_u64())
        .unwrap_or(0)
}

/// PD's record of a service safe point, from the real etcd.
async fn service_safe_point(etcd: &EtcdHarness, standin: &Standin, service: &str) -> Option<u64> {
    let key = standin.service_safe_point_key(service);
    let (kvs, _) = etcd.store().await.get_prefix(&key).await.ok()?;
    let kv = kvs.into_iter().find(|kv| kv.key == key)?;
    serde_json::from_slice::<Value>(&kv.value).ok()?["safe_point"].as_u64()
}

/// A PD client on the stand-in, as TiDB's GC worker would use.
async fn pd_client(standin: &Standin) -> rcdc_pd::PdClient {
    rcdc_pd::PdClient::connect(&standin.urls, rcdc_pd::PdOptions::default())
        .await
        .expect("PD client")
}

async fn create_and_see_progress(pd: &str, id: &str) -> u64 {
    cli_ok(
        pd,
        &[
            "changefeed",
            "create",
            "-c",
            id,
            "--sink-uri",
            "blackhole://",
        ],
    );
    let first = checkpoint(pd, id);
    wait_until(DEADLINE, "the checkpoint advances", || async {
        checkpoint(pd, id) > first
    })
    .await;
    checkpoint(pd, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_pd_takes_its_time_gc_and_versions_from_pd() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let standin = Standin::start(
        STANDIN,
        &etcd.client_url(),
        2,
        dir.path(),
        &[
            "--store=id=1,address=127.0.0.1:20160,version=5.1.0",
            "--store=id=2,address=127.0.0.1:20161,version=3.0.0",
        ],
    );
    let pd = standin.pd_arg();
    let (capture, log, port) = server(&pd, dir.path(), &[]);
    let _servers = Servers(vec![capture]);
    wait_until(DEADLINE, "PD detected at start", || async {
        log_of(&log).contains("the --pd endpoints are a TiDB cluster's PD")
    })
    .await;
    let text = log_of(&log);
    assert!(
        text.contains("TiKV store 2 at 127.0.0.1:20161") && text.contains("3.0.0"),
        "a warning naming the old store and its version: {text}"
    );
    assert!(
        !text.contains("TiKV store 1 at"),
        "store 1 is recent: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal (issue #15)"
    );
    let config: Value = reqwest::get(format!("http://127.0.0.1:{port}/config"))
        .await
        .expect("GET /config")
        .json()
        .await
        .expect("json");
    assert!(
        config["upstream"]
            .as_str()
            .is_some_and(|u| u.starts_with("pd://127.0.0.1:")),
        "the default upstream is the TiDB cluster: {config}"
    );

    // `tso query` prints PD's TSO; a plain etcd is not a PD.
    let ts: u64 = cli_ok(&pd, &["tso", "query"])
        .trim()
        .parse()
        .expect("a number");
    let physical = ts >> 18;
    assert!(physical.abs_diff(now_ms()) < 10_000, "{ts} is PD's now");
    let plain = cli(&etcd.client_url(), &["tso", "query"]);
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && err.contains("is a plain etcd, not a PD"),
        "{err}"
    );

    // The owner's service safe point in PD follows the checkpoint (pushed once a minute).
    let first_checkpoint = create_and_see_progress(&pd, "cf").await;
    wait_until(DEADLINE, "ticdc's safe point in PD", || async {
        service_safe_point(&etcd, &standin, "ticdc").await.is_some()
    })
    .await;
    let first = service_safe_point(&etcd, &standin, "ticdc")
        .await
        .unwrap_or(u64::MAX);
    assert!(
        first < checkpoint(&pd, "cf"),
        "the safe point {first} is below the checkpoint"
    );
    assert!(
        service_safe_point(&etcd, &standin, "ticdc-creating-cf")
            .await
            .is_some(),
        "create protected its start-ts in PD"
    );
    wait_until(
        Duration::from_secs(100),
        "the safe point follows the checkpoint",
        || async {
            service_safe_point(&etcd, &standin, "ticdc")
                .await
                .is_some_and(|sp| sp > first_checkpoint)
        },
    )
    .await;

    // TiDB's GC worker moves to now − 10 min: a start-ts behind it is refused at create.
    let gc_worker = (now_ms() - 600_000) << 18;
    pd_client(&standin)
        .await
        .update_service_gc_safe_point("gc_worker", i64::MAX, gc_worker)
        .await
        .expect("gc_worker");
    let refused = cli(
        &pd,
        &[
            "changefeed",
            "create",
            "-c",
            "old",
            "--sink-uri",
            "blackhole://",
            "--start-ts",
            "123",
        ],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains(&format!(
                "start-ts 123 is earlier than GC safepoint at {gc_worker}"
            )),
        "{err}"
    );

    // The last changefeed removed: its service safe point is removed from PD at once.
    cli_ok(&pd, &["changefeed", "remove", "-c", "cf"]);
    wait_until(DEADLINE, "ticdc's safe point removed", || async {
        service_safe_point(&etcd, &standin, "ticdc").await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changefeed_whose_checkpoint_pd_gc_passed_fails_with_snapshot_lost() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let standin = Standin::start(STANDIN, &etcd.client_url(), 1, dir.path(), &[]);
    let pd = standin.pd_arg();
    let (capture, _, _) = server(&pd, dir.path(), &["--gc-ttl", "2"]);
    let mut servers = Servers(vec![capture]);
    wait_until(DEADLINE, "an owner", || async {
        String::from_utf8_lossy(&cli(&pd, &["capture", "list"]).stdout)
            .contains("\"is-owner\": true")
    })
    .await;
    let frozen = create_and_see_progress(&pd, "lost").await;

    // Every capture dies; ticdc's safe point lapses after its 2 s TTL (the create's 600 s
    // protection is dropped as if expired); TiDB's GC worker moves to now.
    for c in &mut servers.0 {
        let _ = c.kill();
        let _ = c.wait();
    }
    let frozen = frozen.max(checkpoint(&pd, "lost"));
    let pd_client = pd_client(&standin).await;
    pd_client
        .update_service_gc_safe_point("ticdc-creating-lost", 0, 0)
        .await
        .expect("drop the create's protection");
    let now = pd_client.get_ts().await.expect("tso");
    wait_until(
        DEADLINE,
        "ticdc's lapsed entry no longer holds GC",
        || async {
            pd_client
                .update_service_gc_safe_point("gc_worker", i64::MAX, now)
                .await
                .is_ok_and(|min| min == now)
        },
    )
    .await;
    assert!(frozen < now);

    // A capture comes back: its owner finds PD's GC past the checkpoint.
    let (capture, _, _) = server(&pd, dir.path(), &["--gc-ttl", "2"]);
    servers.0.push(capture);
    wait_until(
        DEADLINE,
        "the changefeed fails with ErrSnapshotLostByGC",
        || async {
            let out = cli(&pd, &["changefeed", "query", "-s", "-c", "lost"]);
            serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| {
                v["state"] == "failed" && v.to_string().contains("ErrSnapshotLostByGC")
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pd_leader_move_mid_run_loses_no_session_and_stalls_no_checkpoint() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let standin = Standin::start(STANDIN, &etcd.client_url(), 3, dir.path(), &[]);
    let pd = standin.pd_arg();
    let (a, log_a, _) = server(&pd, dir.path(), &[]);
    let (b, log_b, _) = server(&pd, dir.path(), &[]);
    let _servers = Servers(vec![a, b]);
    create_and_see_progress(&pd, "moving").await;

    // Sample the checkpoint for 16 s while the leader moves twice.
    let started = Instant::now();
    let (mut last, mut last_change, mut longest) = (0u64, Instant::now(), Duration::ZERO);
    let mut moves = vec![("pd-2", 3), ("pd-3", 9)];
    while started.elapsed() < Duration::from_secs(16) {
        if let Some(&(to, at)) = moves.first() {
            if started.elapsed() >= Duration::from_secs(at) {
                let body = serde_json::json!({ "to": to });
                standin
                    .control(reqwest::Method::POST, "/standin/leader", body)
                    .await;
                moves.remove(0);
            }
        }
        let cp = checkpoint(&pd, "moving");
        if cp > last {
            (last, last_change) = (cp, Instant::now());
        }
        longest = longest.max(last_change.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(moves.is_empty(), "both moves made");
    assert!(
        longest <= Duration::from_secs(10),
        "the checkpoint stalled {longest:?} across the leader moves"
    );
    for log in [log_a, log_b] {
        let text = log_of(&log);
        assert!(
            !text.contains("session lost") && !text.contains("session lease is gone"),
            "{}: {text}",
            log.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_pd_fails_the_start_naming_it() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let standin = Standin::start(
        STANDIN,
        &etcd.client_url(),
        1,
        dir.path(),
        &["--pd-version=v3.0.0"],
    );
    let (mut capture, log, _) = server(&standin.pd_arg(), dir.path(), &[]);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = capture.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "still running: {}", log_of(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = log_of(&log);
    assert!(!status.success());
    assert!(
        text.contains(&format!("PD at {} reports version v3.0.0", standin.urls[0]))
            && text.contains("incompatible"),
        "{text}"
    );
}

/// Issue #15: `cdc cli unsafe delete-service-gc-safepoint` and `unsafe reset` on a PD, as
/// TiCDC's: the cluster's service safe point goes, and reset deletes every key of the
/// cluster (not a sibling prefix's) after a confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_commands_remove_the_service_safe_point_and_the_metadata() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let standin = Standin::start(STANDIN, &etcd.client_url(), 1, dir.path(), &[]);
    let pd = standin.pd_arg();
    let client = pd_client(&standin).await;
    let protect = || async {
        let now = client.get_ts().await.expect("ts");
        client
            .update_service_gc_safe_point("ticdc", 3_600, now)
            .await
            .expect("protect");
    };
    protect().await;
    assert!(service_safe_point(&etcd, &standin, "ticdc").await.is_some());
    let out = cli_ok(
        &pd,
        &["unsafe", "delete-service-gc-safepoint", "--no-confirm"],
    );
    assert!(out.contains("successfully"), "{out}");
    assert!(service_safe_point(&etcd, &standin, "ticdc").await.is_none());
    let plain = cli(
        &etcd.client_url(),
        &["unsafe", "delete-service-gc-safepoint"],
    );
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && err.contains("plain etcd"),
        "{err}"
    );

    let store = etcd.store().await;
    for key in [
        "/tidb/cdc/changefeed/info/a",
        "/tidb/cdc/job/a",
        "/tidb/cdc2/keep",
    ] {
        put(&store, key, "{}").await;
    }
    protect().await;
    let reset = |answer: &'static str, extra: &[&str]| {
        let mut child = Command::new(CDC)
            .args(["cli", "--pd", &pd, "unsafe", "reset"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("reset");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(answer.as_bytes());
        }
        child.wait_with_output().expect("reset output")
    };
    let out = reset("n\n", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("are you sure?") && text.contains("Aborted reset"),
        "{text}"
    );
    assert!(
        get(&store, "/tidb/cdc/job/a").await.is_some(),
        "nothing deleted"
    );
    let out = reset("y\n", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("deleted 2 keys under /tidb/cdc"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get(&store, "/tidb/cdc/job/a").await.is_none());
    assert!(get(&store, "/tidb/cdc/changefeed/info/a").await.is_none());
    assert!(
        get(&store, "/tidb/cdc2/keep").await.is_some(),
        "a sibling prefix is kept"
    );
    assert!(
        service_safe_point(&etcd, &standin, "ticdc").await.is_none(),
        "and PD's safe point"
    );
    let out = reset("", &["--no-confirm"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("are you sure?") && text.contains("deleted 0 keys"),
        "{text}"
    );
}
