//! `cdc cli` against a real cluster: two `cdc server` processes on a real etcd; every
//! subcommand, its JSON output and its error paths (one line, non-zero exit).

mod common;

use std::process::{Child, Command, Output, Stdio};

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/cli";

fn server(pd: &str, port: u16, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log.join(format!("capture-{port}.log"))).expect("log file");
    Command::new(CDC)
        .args([
            "server",
            "--pd",
            pd,
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            "demo://?tables=4&rows-per-second=20&retention=none",
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

struct Cli {
    pd: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["cli", "--pd", &self.pd, "--cluster-prefix", PREFIX];
        all.extend_from_slice(args);
        Command::new(CDC).args(&all).output().expect("run cdc cli")
    }

    /// Runs, expects success, parses stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, expects failure with exactly one `Error:` line containing `part`.
    fn fails(&self, args: &[&str], part: &str) {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(
            lines[0].starts_with("Error: ") && lines[0].contains(part),
            "{err:?} should contain {part:?}"
        );
    }

    fn state(&self, id: &str) -> String {
        let out = self.run(&["changefeed", "query", "-s", "-c", id]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_command_against_a_real_cluster() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let ports = [free_port(), free_port()];
    let _servers = Servers(ports.iter().map(|&p| server(&pd, p, dir.path())).collect());
    let cli = Cli { pd: pd.clone() };

    wait_until(DEADLINE, "two captures, one owner", || async {
        let out = cli.run(&["capture", "list"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|cs| {
                cs.len() == 2 && cs.iter().filter(|c| c["is-owner"] == true).count() == 1
            })
    })
    .await;
    let captures = cli.json(&["capture", "list"]);
    let non_owner = captures
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["is-owner"] == false))
        .and_then(|c| c["address"].as_str())
        .expect("a non-owner")
        .to_owned();

    // Create, with a replica config file; its errors.
    let config = dir.path().join("cf.toml");
    std::fs::write(
        &config,
        "force-replicate = true\n[filter]\nrules = ['*.*']\n",
    )
    .expect("write config");
    let config = config.to_string_lossy().into_owned();
    let out = cli.ok(&[
        "changefeed",
        "create",
        "-c",
        "cf1",
        "--sink-uri",
        "blackhole://",
        "--config",
        &config,
        "--no-confirm",
    ]);
    assert!(
        out.starts_with("Create changefeed successfully!\nID: cf1\nInfo: {"),
        "{out}"
    );
    cli.fails(
        &[
            "changefeed",
            "create",
            "-c",
            "cf1",
            "--sink-uri",
            "blackhole://",
        ],
        "changefeed cf1 already exists",
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[filter]\nrulez = ['x']\n").expect("write");
    cli.fails(
        &[
            "changefeed",
            "create",
            "-c",
            "cf2",
            "--sink-uri",
            "blackhole://",
            "--config",
            &bad.to_string_lossy(),
        ],
        "unknown key \"filter.rulez\"",
    );
    cli.fails(
        &["changefeed", "create", "-c", "cf2"],
        "--sink-uri is required",
    );
    // TiCDC's flags and commands (issue #15): refused, deprecated or not in rcdc, each said.
    let create = [
        "changefeed",
        "create",
        "-c",
        "cf2",
        "--sink-uri",
        "blackhole://",
    ];
    cli.fails(
        &[&create[..], &["--sync-point"]].concat(),
        "--sync-point and --sync-interval are not supported yet",
    );
    cli.fails(
        &[&create[..], &["--sync-interval", "5m"]].concat(),
        "not supported yet",
    );
    cli.fails(
        &[&create[..], &["--tz", "Mars/Olympus"]].concat(),
        "invalid tz \"Mars/Olympus\"",
    );
    cli.fails(
        &["changefeed", "cyclic", "create-marktables"],
        "`cdc cli changefeed cyclic` (cyclic replication) is not supported by rcdc",
    );
    cli.fails(
        &[&create[..], &["--cyclic-replica-id", "1"]].concat(),
        "--cyclic-replica-id (cyclic replication) is not supported by rcdc",
    );
    let out = cli.run(&[
        "changefeed",
        "create",
        "-c",
        "cf-tz",
        "--sink-uri",
        "blackhole://",
        "--tz",
        "Asia/Shanghai",
        "--sort-dir",
        "/tmp/x",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("--sort-dir is deprecated"),
        "{err}"
    );
    cli.ok(&["changefeed", "remove", "-c", "cf-tz", "--force"]);
    cli.fails(
        &[
            "changefeed",
            "create",
            "-c",
            "cf2",
            "--sink-uri",
            "blackhole://",
            "--start-ts",
            "10",
            "--target-ts",
            "5",
        ],
        "target-ts 5 must be larger",
    );
    // A start-ts behind the upstream's GC safe point is refused, naming both (issue #12).
    cli.fails(
        &[
            "changefeed",
            "create",
            "-c",
            "cf2",
            "--sink-uri",
            "blackhole://",
            "--start-ts",
            "123",
            "--upstream",
            "demo://?tables=2&retention=1m",
        ],
        "start-ts 123 is earlier than GC safepoint at",
    );

    // List and query.
    let list = cli.json(&["changefeed", "list"]);
    assert_eq!(list[0]["id"], "cf1");
    assert_eq!(list[0]["summary"]["state"], "normal");
    wait_until(DEADLINE, "cf1's four tables dispatched", || async {
        let out = cli.run(&["changefeed", "query", "-c", "cf1"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .is_some_and(|v| {
                let tables: usize = v["task-status"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| t["status"]["tables"].as_object().map_or(0, |m| m.len()))
                            .sum()
                    })
                    .unwrap_or(0);
                tables == 4
            })
    })
    .await;
    let q = cli.json(&["changefeed", "query", "-c", "cf1"]);
    assert_eq!(q["info"]["config"]["force-replicate"], true);
    assert!(q["status"]["checkpoint-ts"].as_u64().is_some());
    let simple = cli.json(&["changefeed", "query", "-s", "-c", "cf1"]);
    assert_eq!(simple["state"], "normal");
    assert!(simple["checkpoint"].as_str().is_some_and(|c| c.len() == 23));
    cli.fails(
        &["changefeed", "query", "-c", "nope"],
        "changefeed nope does not exist",
    );

    // Processors.
    let procs = cli.json(&["processor", "list"]);
    let p = procs
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("a processor");
    let capture = p["capture-id"].as_str().expect("capture id").to_owned();
    let detail = cli.json(&["processor", "query", "-c", "cf1", "-p", &capture]);
    assert!(detail["status"]["tables"].is_object(), "{detail}");
    cli.fails(
        &["processor", "query", "-c", "cf1", "-p", "ghost"],
        "no processor of changefeed cf1 on capture ghost",
    );

    // Update refused while running; pause (through a non-owner with --server), update, resume.
    cli.fails(
        &[
            "changefeed",
            "update",
            "-c",
            "cf1",
            "--target-ts",
            "999999999999999999",
        ],
        "only when stopped",
    );
    cli.ok(&["--server", &non_owner, "changefeed", "pause", "-c", "cf1"]);
    wait_until(DEADLINE, "cf1 stopped", || async {
        cli.state("cf1") == "stopped"
    })
    .await;
    let out = cli.ok(&[
        "changefeed",
        "update",
        "-c",
        "cf1",
        "--target-ts",
        "999999999999999999",
    ]);
    assert!(
        out.contains("Update changefeed config successfully!"),
        "{out}"
    );
    assert_eq!(
        cli.json(&["changefeed", "query", "-c", "cf1"])["info"]["target-ts"],
        999999999999999999u64
    );
    cli.ok(&["changefeed", "resume", "-c", "cf1"]);
    wait_until(DEADLINE, "cf1 normal again", || async {
        cli.state("cf1") == "normal"
    })
    .await;
    cli.fails(
        &["changefeed", "pause", "-c", "nope"],
        "changefeed nope does not exist",
    );

    // Raw metadata, masked.
    let meta = cli.ok(&["unsafe", "show-metadata"]);
    assert!(
        meta.contains(&format!("Key: {PREFIX}/changefeed/info/cf1, Value: {{")),
        "{meta}"
    );
    assert!(meta
        .trim_end()
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("Show ") && l.ends_with(" KVs")));

    // Every series of cf1 the captures export (checked again after the removal).
    let series_of_cf1 = || async {
        let mut found = Vec::new();
        for port in ports {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics text");
            found.extend(
                text.lines()
                    .filter(|l| !l.starts_with('#') && l.contains("changefeed=\"cf1\""))
                    .map(|l| l.split('{').next().unwrap_or_default().to_owned()),
            );
        }
        found
    };
    wait_until(DEADLINE, "cf1's rows counted", || async {
        series_of_cf1()
            .await
            .iter()
            .any(|s| s == "ticdc_sink_table_sink_total_rows_count")
    })
    .await;

    // Remove: `list -a` shows it as removed with its last checkpoint, plain `list` does not
    // (issue #15); its metrics go from every capture.
    let last = cli.json(&["changefeed", "query", "-s", "-c", "cf1"])["tso"]
        .as_u64()
        .unwrap_or(0);
    cli.ok(&["changefeed", "remove", "-c", "cf1"]);
    let listed = |all: bool| {
        let args: &[&str] = if all {
            &["changefeed", "list", "-a"]
        } else {
            &["changefeed", "list"]
        };
        cli.json(args).as_array().cloned().unwrap_or_default()
    };
    let all = listed(true);
    assert!(
        all.len() == 1
            && all[0]["id"] == "cf1"
            && all[0]["summary"]["state"] == "removed"
            && all[0]["summary"]["tso"].as_u64() >= Some(last),
        "{all:?}"
    );
    assert!(listed(false).is_empty());
    cli.fails(
        &["changefeed", "pause", "-c", "cf1"],
        "changefeed cf1 does not exist",
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = series_of_cf1().await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series of the removed cf1 still exported: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The id can be used again (the record is replaced); `remove --force` leaves nothing.
    cli.ok(&[
        "changefeed",
        "create",
        "-c",
        "cf1",
        "--sink-uri",
        "blackhole://",
    ]);
    assert_eq!(listed(false).len(), 1);
    cli.ok(&["changefeed", "remove", "-c", "cf1", "--force"]);
    assert!(listed(true).is_empty(), "{:?}", listed(true));
    cli.fails(
        &["changefeed", "remove", "-c", "cf1", "--force"],
        "changefeed cf1 does not exist",
    );

    // `unsafe reset` on a running cluster: every key goes, the captures' sessions end with
    // their leases, and they register again with new ids (as after TiCDC's reset).
    let before: Vec<Value> = cli
        .json(&["capture", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default();
    cli.ok(&[
        "changefeed",
        "create",
        "-c",
        "cf9",
        "--sink-uri",
        "blackhole://",
    ]);
    let out = cli.ok(&["unsafe", "reset", "--no-confirm"]);
    assert!(out.contains("Reset: deleted"), "{out}");
    wait_until(
        DEADLINE,
        "both captures registered again, with new ids",
        || async {
            let now = cli
                .json(&["capture", "list"])
                .as_array()
                .cloned()
                .unwrap_or_default();
            now.len() == 2
                && now
                    .iter()
                    .all(|c| !before.iter().any(|b| b["id"] == c["id"]))
        },
    )
    .await;
    assert_eq!(
        cli.json(&["changefeed", "list", "-a"]),
        Value::Array(vec![])
    );

    // A dead etcd is one clear line, not a hang or a panic.
    let dead = Cli {
        pd: format!("http://127.0.0.1:{}", free_port()),
    };
    dead.fails(&["capture", "list"], "127.0.0.1");
}

/// `cdc cli changefeed list -a | head -3`: a reader that goes away ends the CLI quietly,
/// not with a panic about a broken pipe (issue #15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_cli_quietly() {
    let etcd = EtcdHarness::start().await;
    for args in [
        &["changefeed", "list", "-a"][..],
        &["unsafe", "show-metadata"][..],
    ] {
        let mut child = Command::new(CDC)
            .args(["cli", "--pd", &etcd.client_url()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cdc cli");
        // The reader leaves before the CLI has read etcd, so its first write finds no reader.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: quiet, got {err}");
    }
}

/// An unreachable etcd is one line naming the endpoint, its cause said once (issue #15).
#[test]
fn an_unreachable_etcd_is_one_line_naming_it() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(CDC)
        .args(["cli", "--pd", &url, "capture", "list"])
        .output()
        .expect("cdc cli");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("Error: etcd at {url}: ")), "{err}");
    assert_eq!(
        err.matches("onnection refused").count(),
        1,
        "said once: {err}"
    );
}

/// The tables `capture` holds over every changefeed, from `processor list`/`query`.
fn tables_on(cli: &Cli, capture: &str) -> usize {
    let processors = cli.json(&["processor", "list"]);
    processors
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["capture-id"] == capture)
        .filter_map(|p| p["changefeed-id"].as_str())
        .map(|cf| {
            let q = cli.json(&["processor", "query", "-c", cf, "-p", capture]);
            q["status"]["tables"].as_object().map_or(0, |t| t.len())
        })
        .sum()
}

/// Issue #15 item 1: `PUT /api/v1/captures/drain` and `cdc cli capture drain`. The owner moves
/// the capture's tables to the others; any capture answers (forwarding to the owner); the
/// answer counts what is left; unknown and last captures get a 400 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_is_drained_remotely_through_the_api_and_the_cli() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let ports = [free_port(), free_port(), free_port()];
    let _servers = Servers(ports.iter().map(|&p| server(&pd, p, dir.path())).collect());
    let cli = Cli { pd: pd.clone() };
    let captures = || {
        serde_json::from_slice::<Value>(&cli.run(&["capture", "list"]).stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    wait_until(DEADLINE, "three captures", || async {
        captures().len() == 3
    })
    .await;
    cli.ok(&[
        "changefeed",
        "create",
        "-c",
        "d1",
        "--sink-uri",
        "blackhole://",
    ]);
    let ids: Vec<String> = captures()
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    wait_until(DEADLINE, "the 4 tables spread over captures", || async {
        ids.iter().map(|c| tables_on(&cli, c)).sum::<usize>() == 4
            && ids.iter().filter(|c| tables_on(&cli, c) > 0).count() >= 2
    })
    .await;
    let victim = ids
        .iter()
        .find(|c| tables_on(&cli, c) > 0)
        .expect("a capture with tables")
        .clone();

    // Through the API of a capture that is not the owner (it forwards).
    let owner = captures()
        .iter()
        .find(|c| c["is-owner"] == true)
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .expect("owner");
    let via = captures()
        .iter()
        .find(|c| c["id"] != owner.as_str())
        .and_then(|c| c["address"].as_str().map(str::to_owned))
        .expect("a non-owner");
    let http = reqwest::Client::new();
    let drain = |capture: String| {
        let http = http.clone();
        let url = format!("http://{via}/api/v1/captures/drain");
        async move {
            let r = http
                .put(url)
                .json(&serde_json::json!({ "capture_id": capture }))
                .send()
                .await
                .expect("drain request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, first) = drain(victim.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert!(first["current_table_count"].as_u64().is_some(), "{first}");
    wait_until(DEADLINE, "the drain answers 0 tables left", || async {
        drain(victim.clone()).await.1["current_table_count"] == 0
    })
    .await;
    assert_eq!(tables_on(&cli, &victim), 0);
    // A moved table may be between its old and new holder for a moment.
    wait_until(DEADLINE, "every table held once again", || async {
        ids.iter().map(|c| tables_on(&cli, c)).sum::<usize>() == 4
    })
    .await;
    assert_eq!(tables_on(&cli, &victim), 0, "nothing goes back to it");

    let (status, body) = drain("no-such-capture".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("capture no-such-capture does not exist")),
        "{body}"
    );
    let (status, body) = drain(String::new()).await;
    assert_eq!(status, 400, "{body}");

    // The CLI drains a second capture and waits until it is empty; the third is then the last
    // one that could take tables and is refused.
    let second = ids.iter().find(|c| **c != victim).expect("another").clone();
    let third = ids
        .iter()
        .find(|c| **c != victim && **c != second)
        .expect("a third")
        .clone();
    let out = cli.ok(&["capture", "drain", "--capture-id", &second]);
    assert!(
        out.contains(&format!("Capture {second} is drained")),
        "{out}"
    );
    assert_eq!(tables_on(&cli, &second), 0);
    wait_until(DEADLINE, "the third capture holds every table", || async {
        tables_on(&cli, &third) == 4
    })
    .await;
    cli.fails(
        &["capture", "drain", "--capture-id", &third],
        "no other live capture can take its tables",
    );
    let out = cli.json(&["capture", "drain", "--capture-id", &second, "--no-wait"]);
    assert_eq!(out["current_table_count"], 0, "{out}");

    // Rows written show in the task positions' count (issue #15: TiCDC left it at 0), and in
    // `changefeed statistics`, which reports every interval until interrupted.
    wait_until(DEADLINE, "query counts rows", || async {
        cli.json(&["changefeed", "query", "-c", "d1"])["count"]
            .as_u64()
            .is_some_and(|c| c > 0)
    })
    .await;
    let reports = statistics(&pd, "d1", 2);
    assert!(
        reports[1]["count"].as_u64() >= reports[0]["count"].as_u64(),
        "{reports:?}"
    );
    assert!(
        reports[1]["count"].as_u64().is_some_and(|c| c > 0),
        "{reports:?}"
    );
    assert!(reports[1]["ops"].as_u64().is_some(), "{reports:?}");
    for r in &reports {
        for gap in ["sink_gap", "replication_gap"] {
            let g = r[gap].as_str().unwrap_or_default();
            assert!(
                g.ends_with("ms") && g.trim_end_matches("ms").parse::<u64>().is_ok(),
                "{r}"
            );
        }
    }
}

/// Runs `changefeed statistics -I 1` until it printed `n` reports, then stops it.
fn statistics(pd: &str, id: &str, n: usize) -> Vec<Value> {
    use std::io::Read;
    let mut child = Command::new(CDC)
        .args(["cli", "--pd", pd, "--cluster-prefix", PREFIX])
        .args(["changefeed", "statistics", "-c", id, "-I", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("statistics");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 || tx.send(buf[..k].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let reports = loop {
        let parsed: Vec<Value> = serde_json::Deserializer::from_slice(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .collect();
        if parsed.len() >= n {
            break parsed;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => text.extend(chunk),
            Err(_) => panic!(
                "statistics printed {}: {}",
                parsed.len(),
                String::from_utf8_lossy(&text)
            ),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    reports
}
