//! `cdc server` configured from a TOML file and flags, against a real etcd: the resolved
//! configuration served at `/config` follows defaults < file < flags; the log goes to the
//! configured file as JSON; the level changes at runtime through the API; bad configuration
//! is one clear line and a non-zero exit before anything starts.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_flags_resolve_and_the_server_follows_them() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let log = dir.path().join("cdc.log");
    let config = dir.path().join("cdc.toml");
    std::fs::write(
        &config,
        format!(
            "addr = '127.0.0.1:{port}'\nlog-file = '{}'\nlog-level = 'debug'\nlog-format = 'json'\ntz = 'Asia/Shanghai'\ncapture-session-ttl = 6\nowner-flush-interval = '150ms'\ncluster-prefix = '/t/config'\n[sorter]\nsort-dir = '/tmp/sorter'\n",
            log.display()
        ),
    )
    .expect("write config");
    let _server = Kill(
        Command::new(CDC)
            .args([
                "server",
                "--config",
                &config.to_string_lossy(),
                "--pd",
                &etcd.client_url(),
            ])
            .args(["--log-level", "info"]) // the flag wins over the file's debug
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    wait_until(DEADLINE, "the server answers /config", || async {
        http.get(url("/config")).send().await.is_ok()
    })
    .await;
    let c: Value = http
        .get(url("/config"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(c["log-level"], "info", "flag > file");
    assert_eq!(c["tz"], "Asia/Shanghai", "file > default");
    assert_eq!(c["capture-session-ttl"], 6);
    assert_eq!(
        c["owner-flush-interval"], 150_000_000,
        "Go-style nanoseconds"
    );
    assert_eq!(c["processor-flush-interval"], 100_000_000, "default");
    assert_eq!(c["cluster-prefix"], "/t/config");
    wait_until(
        DEADLINE,
        "the capture registers under the configured prefix",
        || async {
            use rcdc_reactor::store::MetaStore;
            let s = etcd.store().await;
            s.get_prefix("/t/config/capture/")
                .await
                .is_ok_and(|(kvs, _)| kvs.len() == 1)
        },
    )
    .await;
    // JSON log lines in the configured file.
    let text = std::fs::read_to_string(&log).expect("log file");
    let first = text.lines().next().expect("a log line");
    let line: Value = serde_json::from_str(first).expect("JSON log line");
    assert!(line["level"].is_string(), "{first}");
    // Level changed at runtime; a bad level is a 400.
    let r = http
        .post(url("/api/v1/log"))
        .json(&serde_json::json!({"log_level": "debug"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .post(url("/api/v1/log"))
        .json(&serde_json::json!({"log_level": "loud"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(body["error_msg"]
        .as_str()
        .is_some_and(|m| m.contains("invalid log level \"loud\"")));
}

#[test]
fn bad_configuration_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "gc-ttl = 0\n").expect("write");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[sorter]\nsort-dirr = 'x'\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), bad.to_string_lossy().into()],
            "invalid gc-ttl \"0\": must be > 0",
        ),
        (
            vec!["--config".into(), unknown.to_string_lossy().into()],
            "line 2, column 1: key sorter.sort-dirr = 'x': unknown field `sort-dirr`",
        ),
        (
            vec!["--config".into(), "/nonexistent.toml".into()],
            "cannot read config file /nonexistent.toml",
        ),
        (
            vec!["--tz".into(), "Mars/Olympus".into()],
            "invalid tz \"Mars/Olympus\"",
        ),
        (
            vec!["--log-level".into(), "loud".into()],
            "invalid log-level \"loud\"",
        ),
        (
            vec!["--advertise-addr".into(), "0.0.0.0:8300".into()],
            "invalid advertise-addr",
        ),
        (
            vec!["--upstream".into(), "demo://?tables=many".into()],
            "bad --upstream",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(CDC)
            .arg("server")
            .args(&args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("Error: ") && lines[0].contains(want),
            "{args:?}: {err}"
        );
    }
}
