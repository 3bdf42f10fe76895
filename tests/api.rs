//! The HTTP API against a real cluster: three `cdc server` processes on a real etcd, every
//! request sent over 127.0.0.1. Owner-only actions are sent to a capture that is *not* the
//! owner, so the forwarding path is what is tested; the v5 routes and the 4xx answers too.
//! This is also the end-to-end test of pause/resume/remove, move table, rebalance and
//! owner resign (issue #3).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::{json, Value};

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/api";

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
            "demo://?tables=6&rows-per-second=50&key-space=100&retention=none",
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

struct Api {
    http: reqwest::Client,
    ports: Vec<u16>,
}

impl Api {
    fn url(&self, port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{port}{path}")
    }

    async fn get(&self, port: u16, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(port, path))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        port: u16,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(port, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn post(&self, port: u16, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, port, path, body).await
    }

    async fn form(&self, port: u16, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(port, path))
            .form(form)
            .send()
            .await
            .expect("POST form");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// (owner port, a non-owner port), from each capture's own `/api/v1/status`.
    async fn roles(&self) -> Option<(u16, u16)> {
        let mut owner = None;
        let mut other = None;
        for &p in &self.ports {
            // Not listening yet is "not yet", not a failure.
            let r = self
                .http
                .get(self.url(p, "/api/v1/status"))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            // Serving before it registered (no id yet) is "not yet" too.
            if v["id"].as_str().is_none_or(str::is_empty) {
                return None;
            }
            if v["is_owner"] == true {
                owner = Some(p);
            } else {
                other = Some(p);
            }
        }
        Some((owner?, other?))
    }

    async fn changefeed(&self, port: u16, id: &str) -> Value {
        self.get(port, &format!("/api/v1/changefeeds/{id}")).await.1
    }
}

fn assert_error(got: &(u16, Value), status: u16, code: &str, msg_part: &str) {
    assert_eq!(got.0, status, "status of {:?}", got.1);
    assert_eq!(got.1["error_code"], code, "{:?}", got.1);
    let msg = got.1["error_msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(msg_part),
        "{msg:?} should contain {msg_part:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_against_a_three_capture_cluster() {
    let etcd = EtcdHarness::start().await;
    let pd = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _servers = Servers(ports.iter().map(|&p| server(&pd, p, dir.path())).collect());
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        ports: ports.clone(),
    };

    // Status, health, captures.
    wait_until(
        DEADLINE,
        "an owner among three serving captures",
        || async { api.roles().await.is_some() },
    )
    .await;
    let (owner, other) = api.roles().await.expect("roles");
    let (s, status) = api.get(other, "/api/v1/status").await;
    assert_eq!(s, 200);
    assert!(status["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(status["is_owner"], false);
    let v5 = api
        .http
        .get(api.url(owner, "/status"))
        .send()
        .await
        .expect("GET /status");
    let text = v5.text().await.expect("text");
    assert!(
        text.contains("\n \"is_owner\": true"),
        "one-space indent: {text}"
    );
    assert_eq!(api.get(other, "/api/v1/health").await.0, 200);
    let (_, captures) = api.get(other, "/api/v1/captures").await;
    let captures = captures.as_array().cloned().unwrap_or_default();
    assert_eq!(captures.len(), 3);
    assert_eq!(captures.iter().filter(|c| c["is_owner"] == true).count(), 1);
    let owner_id = captures
        .iter()
        .find(|c| c["address"] == format!("127.0.0.1:{owner}"))
        .map(|c| c["id"].clone())
        .expect("owner in the capture list");
    assert_eq!(
        captures
            .iter()
            .find(|c| c["is_owner"] == true)
            .map(|c| c["id"].clone()),
        Some(owner_id.clone())
    );

    // Create (on a non-owner: writes go to etcd from any capture) and the 4xx cases.
    let sink = format!("file://{}/sink?protocol=canal-json", dir.path().display());
    let create = json!({ "changefeed_id": "api", "sink_uri": sink });
    assert_eq!(
        api.post(other, "/api/v1/changefeeds", Some(create.clone()))
            .await
            .0,
        202
    );
    assert_error(
        &api.post(other, "/api/v1/changefeeds", Some(create)).await,
        400,
        "CDC:ErrChangeFeedAlreadyExists",
        "changefeed api already exists",
    );
    assert_error(
        &api.post(
            other,
            "/api/v1/changefeeds",
            Some(json!({"changefeed_id": "x", "sink_uri": "kafka://u:secret@h/t"})),
        )
        .await,
        400,
        "CDC:ErrSinkURIInvalid",
        "invalid sink URI",
    );
    let masked = api
        .post(
            other,
            "/api/v1/changefeeds",
            Some(json!({"changefeed_id": "x", "sink_uri": "kafka://u:secret@h/t"})),
        )
        .await;
    assert!(
        !masked.1.to_string().contains("secret"),
        "password masked: {}",
        masked.1
    );
    // A start-ts behind the upstream's GC safe point is refused at create (issue #12).
    assert_error(
        &api.post(
            other,
            "/api/v1/changefeeds",
            Some(json!({
                "changefeed_id": "old",
                "sink_uri": "blackhole://",
                "start_ts": 123,
                "upstream": "demo://?tables=2&retention=1m",
            })),
        )
        .await,
        400,
        "CDC:ErrStartTsBeforeGC",
        "start-ts 123 is earlier than GC safepoint at",
    );
    assert_error(
        &api.post(
            other,
            "/api/v1/changefeeds",
            Some(json!({"changefeed_id": "bad_id", "sink_uri": "blackhole://"})),
        )
        .await,
        400,
        "CDC:ErrAPIInvalidParam",
        "invalid changefeed id",
    );
    let raw = api
        .http
        .post(api.url(other, "/api/v1/changefeeds"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(raw.status().as_u16(), 400);
    let raw: Value = raw.json().await.expect("json error body");
    assert!(raw["error_msg"]
        .as_str()
        .unwrap_or("")
        .contains("invalid request body"));
    assert_error(
        &api.get(other, "/api/v1/changefeeds?state=sleepy").await,
        400,
        "CDC:ErrAPIInvalidParam",
        "invalid state \"sleepy\"",
    );

    // It replicates: listed, detail with tasks, checkpoint advancing.
    wait_until(
        DEADLINE,
        "changefeed api dispatched to captures",
        || async {
            let d = api.changefeed(other, "api").await;
            let tables: usize = d["task_status"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| t["table_ids"].as_array().map_or(0, |x| x.len()))
                        .sum()
                })
                .unwrap_or(0);
            tables == 6 && d["checkpoint_tso"].as_u64() > d["start_ts"].as_u64()
        },
    )
    .await;
    let (_, list) = api.get(owner, "/api/v1/changefeeds").await;
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == "api").cloned())
        .expect("listed");
    assert_eq!(listed["state"], "normal");
    assert!(
        listed["checkpoint_time"]
            .as_str()
            .is_some_and(|t| t.len() == 23),
        "{listed}"
    );
    assert_error(
        &api.get(other, "/api/v1/changefeeds/nope").await,
        400,
        "CDC:ErrChangeFeedNotExists",
        "changefeed nope does not exist",
    );

    // Processors.
    let (_, procs) = api.get(other, "/api/v1/processors").await;
    let procs = procs.as_array().cloned().unwrap_or_default();
    assert!(!procs.is_empty());
    let p = &procs[0];
    let (s, detail) = api
        .get(
            other,
            &format!(
                "/api/v1/processors/{}/{}",
                p["changefeed_id"].as_str().unwrap_or(""),
                p["capture_id"].as_str().unwrap_or("")
            ),
        )
        .await;
    assert_eq!(s, 200);
    assert!(detail["table_ids"].is_array());
    assert_error(
        &api.get(other, "/api/v1/processors/api/no-such-capture")
            .await,
        400,
        "CDC:ErrProcessorNotFound",
        "no processor",
    );

    // Pause through a non-owner (forwarded), update while stopped, resume.
    assert_error(
        &api.post(other, "/api/v1/changefeeds/nope/pause", None)
            .await,
        400,
        "CDC:ErrChangeFeedNotExists",
        "nope",
    );
    assert_error(
        &api.send(
            reqwest::Method::PUT,
            other,
            "/api/v1/changefeeds/api",
            Some(json!({"target_ts": u64::MAX / 2})),
        )
        .await,
        400,
        "CDC:ErrChangefeedUpdateRefused",
        "only when stopped",
    );
    assert_eq!(
        api.post(other, "/api/v1/changefeeds/api/pause", None)
            .await
            .0,
        202
    );
    wait_until(DEADLINE, "changefeed api stopped", || async {
        api.changefeed(other, "api").await["state"] == "stopped"
    })
    .await;
    let (_, stopped) = api.get(other, "/api/v1/changefeeds?state=stopped").await;
    assert_eq!(stopped.as_array().map(|a| a.len()), Some(1));
    let target = u64::MAX / 2;
    assert_eq!(
        api.send(
            reqwest::Method::PUT,
            other,
            "/api/v1/changefeeds/api",
            Some(json!({"target_ts": target}))
        )
        .await
        .0,
        202
    );
    assert_eq!(
        api.changefeed(other, "api").await["target_ts"].as_u64(),
        Some(target)
    );
    let paused_at = api.changefeed(other, "api").await["checkpoint_tso"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        api.post(other, "/api/v1/changefeeds/api/resume", None)
            .await
            .0,
        202
    );
    wait_until(
        DEADLINE,
        "changefeed api running again past its pause point",
        || async {
            let d = api.changefeed(other, "api").await;
            d["state"] == "normal" && d["checkpoint_tso"].as_u64().unwrap_or(0) > paused_at
        },
    )
    .await;

    // Move a table to another capture (through a non-owner), and rebalance.
    let detail = api.changefeed(other, "api").await;
    let tasks = detail["task_status"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let from = tasks
        .iter()
        .find(|t| t["table_ids"].as_array().is_some_and(|a| !a.is_empty()))
        .expect("a capture with tables");
    let table = from["table_ids"][0].as_i64().expect("table id");
    let to = captures
        .iter()
        .map(|c| c["id"].clone())
        .find(|id| *id != from["capture_id"])
        .expect("another capture");
    assert_error(
        &api.post(
            other,
            "/api/v1/changefeeds/api/tables/move_table",
            Some(json!({"capture_id": "ghost", "table_id": table})),
        )
        .await,
        400,
        "CDC:ErrCaptureNotExist",
        "capture ghost does not exist",
    );
    assert_eq!(
        api.post(
            other,
            "/api/v1/changefeeds/api/tables/move_table",
            Some(json!({"capture_id": to, "table_id": table}))
        )
        .await
        .0,
        202
    );
    wait_until(
        DEADLINE,
        "the table moved to the target capture",
        || async {
            let d = api.changefeed(other, "api").await;
            d["task_status"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["capture_id"] == to
                        && t["table_ids"]
                            .as_array()
                            .is_some_and(|a| a.contains(&json!(table)))
                        && t["table_operations"]
                            .as_object()
                            .is_some_and(|o| o.is_empty())
                })
            })
        },
    )
    .await;
    assert_eq!(
        api.post(
            other,
            "/api/v1/changefeeds/api/tables/rebalance_table",
            None
        )
        .await
        .0,
        202
    );

    // v5 routes: a bad admin job is a 400, not a crash (facts §8.11); the query route.
    assert_error(
        &api.form(
            other,
            "/capture/owner/admin",
            &[("admin-job", "4"), ("cf-id", "api")],
        )
        .await,
        400,
        "CDC:ErrAPIInvalidParam",
        "invalid admin-job",
    );
    let (s, q) = api
        .form(
            other,
            "/capture/owner/changefeed/query",
            &[("cf-id", "api")],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(q["state"], "normal");

    // Metrics on the owner: TiCDC's names.
    let metrics = api
        .http
        .get(api.url(owner, "/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "ticdc_owner_checkpoint_ts{",
        "ticdc_owner_checkpoint_ts_lag{",
        "ticdc_etcd_worker_tick_reactor_duration",
        "ticdc_processor_num_of_tables",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }

    // Unknown routes and methods answer JSON errors.
    assert_eq!(
        api.get(other, "/api/v1/nothing").await.1["error_code"],
        "CDC:ErrAPINotFound"
    );
    assert_eq!(
        api.send(reqwest::Method::DELETE, other, "/api/v1/captures", None)
            .await
            .0,
        405
    );

    // Remove through a non-owner: every key of the changefeed goes but its record (the job
    // key), which `?state=all` lists as removed.
    assert_eq!(
        api.send(
            reqwest::Method::DELETE,
            other,
            "/api/v1/changefeeds/api",
            None
        )
        .await
        .0,
        202
    );
    let store = etcd.store().await;
    wait_until(
        DEADLINE,
        "changefeed api removed with all its keys but its record",
        || async {
            use rcdc_reactor::store::MetaStore;
            let (kvs, _) = store.get_prefix(PREFIX).await.unwrap_or_default();
            let left: Vec<&str> = kvs
                .iter()
                .filter(|kv| kv.key.ends_with("/api"))
                .map(|kv| kv.key.as_str())
                .collect();
            left == [format!("{PREFIX}/job/api")]
        },
    )
    .await;
    let all = api.get(other, "/api/v1/changefeeds?state=all").await.1;
    assert!(
        all.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["state"] == "removed"),
        "{all}"
    );
    assert_eq!(api.get(other, "/api/v1/changefeeds").await.1, json!([]));

    // Resign through a non-owner: another capture becomes owner.
    assert_eq!(api.post(other, "/api/v1/owner/resign", None).await.0, 202);
    wait_until(DEADLINE, "a different owner after resign", || async {
        let (_, caps) = api.get(other, "/api/v1/captures").await;
        caps.as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["is_owner"] == true && c["id"] != owner_id)
        })
    })
    .await;
}
