//! Issue #11: 50 `cdc server` processes on a real etcd, one changefeed whose tables are spread
//! over all of them. Pause, resume and remove sent through the HTTP API of a capture that is
//! not the owner are answered only once they took effect: at the moment of each answer, etcd
//! already holds the new state; and each completes (processors stop, tables come back, every
//! key of the changefeed goes).

// Waiting for processes is measured against the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::model::{ChangeFeedInfo, FeedState, TaskStatus};

const CAPTURES: usize = 50;
const TABLES: usize = 100;
const PREFIX: &str = "/t/many";
const SLOW: Duration = Duration::from_secs(90);

fn server(pd: &str, addr: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_cdc"))
        .args([
            "server",
            "--pd",
            pd,
            "--addr",
            addr,
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            &format!("demo://?tables={TABLES}&rows-per-second=1&key-space=10"),
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

async fn info<S: MetaStore>(store: &S) -> Option<ChangeFeedInfo> {
    let (kvs, _) = store
        .get_prefix(&format!("{PREFIX}/changefeed/info/many"))
        .await
        .expect("read the info");
    kvs.first()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
}

/// Captures holding at least one table, and how many task keys the changefeed has.
async fn spread<S: MetaStore>(store: &S) -> (usize, usize) {
    let (kvs, _) = store
        .get_prefix(&format!("{PREFIX}/task/"))
        .await
        .expect("read task keys");
    let holding = kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&format!("{PREFIX}/task/status/")))
        .filter(|kv| {
            serde_json::from_slice::<TaskStatus>(&kv.value)
                .ok()
                .and_then(|s| s.tables)
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    (holding, kvs.len())
}

/// The last warnings and errors of every capture, for a failure's message.
fn log_tail(dir: &std::path::Path) -> String {
    let mut lines = Vec::new();
    for n in 0..CAPTURES {
        if let Ok(s) = std::fs::read_to_string(dir.join(format!("capture-{n}.log"))) {
            lines.extend(
                s.lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("owner"))
                    .map(|l| format!("capture-{n}: {l}")),
            );
        }
    }
    let from = lines.len().saturating_sub(60);
    lines[from..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_remove_over_50_processes_answer_only_once_done() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let addrs: Vec<String> = (0..CAPTURES)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let _servers = Servers(
        addrs
            .iter()
            .enumerate()
            .map(|(n, a)| server(&pd, a, &dir.path().join(format!("capture-{n}.log"))))
            .collect(),
    );
    let store = etcd.store().await;
    wait_until(SLOW, "50 captures registered", || async {
        store
            .get_prefix(&format!("{PREFIX}/capture/"))
            .await
            .map(|(kvs, _)| kvs.len() == CAPTURES)
            .unwrap_or(false)
    })
    .await;
    let http = reqwest::Client::new();
    // A capture that is (very likely) not the owner: forwarding is part of the path.
    let api = format!("http://{}", addrs[CAPTURES - 1]);
    let resp = http
        .post(format!("{api}/api/v1/changefeeds"))
        .json(&serde_json::json!({"changefeed_id": "many", "sink_uri": "blackhole://"}))
        .send()
        .await
        .expect("create");
    assert!(resp.status().is_success(), "create: {}", resp.status());
    wait_until(SLOW, "tables spread over every capture", || async {
        spread(&store).await.0 == CAPTURES
    })
    .await;

    let logs = dir.path().to_owned();
    let send = |path: String, delete: bool| {
        let http = http.clone();
        let logs = logs.clone();
        async move {
            let req = if delete {
                http.delete(path)
            } else {
                http.post(path)
            };
            let resp = req.send().await.expect("admin request");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "{status}: {body}\n{}", log_tail(&logs));
        }
    };

    send(format!("{api}/api/v1/changefeeds/many/pause"), false).await;
    let state = info(&store).await.map(|i| i.state);
    assert_eq!(
        state,
        Some(FeedState::Stopped),
        "answered before the pause landed"
    );
    wait_until(SLOW, "paused: every task key gone", || async {
        spread(&store).await.1 == 0
    })
    .await;

    send(format!("{api}/api/v1/changefeeds/many/resume"), false).await;
    let state = info(&store).await.map(|i| i.state);
    assert_eq!(
        state,
        Some(FeedState::Normal),
        "answered before the resume landed"
    );
    wait_until(
        SLOW,
        "resumed: tables spread over every capture again",
        || async { spread(&store).await.0 == CAPTURES },
    )
    .await;

    send(format!("{api}/api/v1/changefeeds/many"), true).await;
    assert!(
        info(&store).await.is_none(),
        "answered before the remove landed"
    );
    wait_until(
        SLOW,
        "removed: every key of the changefeed gone but its record (the job key)",
        || async {
            let (kvs, _) = store.get_prefix(&format!("{PREFIX}/")).await.expect("list");
            kvs.iter().all(|kv| {
                kv.key.starts_with(&format!("{PREFIX}/capture/"))
                    || kv.key.starts_with(&format!("{PREFIX}/owner"))
                    || kv.key.starts_with(&format!("{PREFIX}/meta/"))
                    || kv.key == format!("{PREFIX}/job/many")
            })
        },
    )
    .await;
}
