//! The whole cluster over TLS through the PD stand-in (issue #12 acceptance "the whole cluster
//! over TLS"): a real etcd serving only https:// with client certificates required, the
//! `cdc-standin` process serving TLS in front of it as a PD with `[security]` set, two
//! `cdc server --pd https://<members> --ca --cert --key` processes that detect the PD, elect an
//! owner, replicate a changefeed created with `cdc cli` over TLS, and keep the owner's service
//! GC safe point in PD's key. And a capture whose CA did not sign the stand-in's certificate
//! stops at start with one line naming the https:// endpoint.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::certs::{PemPair, TestPki};
use common::procs::{free_port, Servers};
use common::standin::Standin;
use common::wait_until;
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const STANDIN: &str = env!("CARGO_BIN_EXE_cdc-standin");
/// Detection, election and the first checkpoints include process starts and etcd sessions.
const DEADLINE: Duration = Duration::from_secs(60);
/// What `cdc server` logs when `--pd` answers PD's GetMembers.
const PD_DETECTED: &str = "the --pd endpoints are a TiDB cluster's PD";

/// etcd (TLS, client certificates required), the TLS stand-in in front of it, and the files.
struct TlsPd {
    pki: TestPki,
    etcd: EtcdHarness,
    capture: PemPair,
    cli: PemPair,
    /// The `cdc server` processes (killed first: fields drop in order).
    procs: Servers,
    standin: Standin,
    /// `https://127.0.0.1:<p1>,https://127.0.0.1:<p2>`: the stand-in's members.
    members: String,
}

impl TlsPd {
    async fn start() -> Self {
        let pki = TestPki::new("rcdc test CA");
        let etcd = common::tls_etcd(&pki).await;
        let pd = pki.issue("pd", "pd");
        let tls = [
            format!("--ca={}", pki.ca.display()),
            format!("--cert={}", pd.cert.display()),
            format!("--key={}", pd.key.display()),
        ];
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        let standin = Standin::start(STANDIN, &etcd.client_url(), 2, pki.dir(), &tls);
        assert!(
            standin
                .urls
                .iter()
                .all(|u| u.starts_with("https://127.0.0.1:")),
            "https:// members: {:?}",
            standin.urls
        );
        let members = standin.pd_arg();
        let capture = pki.issue("capture", "capture");
        let cli = pki.issue("cli", "rcdc-cli");
        Self {
            pki,
            etcd,
            capture,
            cli,
            procs: Servers(vec![]),
            standin,
            members,
        }
    }

    fn log(&self, port: u16) -> PathBuf {
        self.pki.dir().join(format!("capture-{port}.log"))
    }

    /// `cdc server --pd <members> --ca CA --cert/--key OWN` on `port`.
    fn server(&self, port: u16, ca: &Path, own: &PemPair) -> Child {
        let log = std::fs::File::create(self.log(port)).expect("log file");
        Command::new(CDC)
            .args(["server", "--pd", &self.members])
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "info",
            ])
            .args([
                "--upstream",
                "demo://?tables=4&rows-per-second=20&retention=none",
            ])
            .arg("--ca")
            .arg(ca)
            .arg("--cert")
            .arg(&own.cert)
            .arg("--key")
            .arg(&own.key)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cdc server")
    }

    /// `cdc cli --pd <members> --ca --cert --key ARGS`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(CDC)
            .args(["cli", "--pd", &self.members, "--ca"])
            .arg(&self.pki.ca)
            .arg("--cert")
            .arg(&self.cli.cert)
            .arg("--key")
            .arg(&self.cli.key)
            .args(args)
            .output()
            .expect("run cdc cli")
    }

    /// The value of `key` in the real etcd (read directly, over TLS).
    async fn etcd_value(&self, key: &str) -> Option<Value> {
        let mut kv = self.etcd.store().await.client().kv_client();
        let resp = kv.get(key, None).await.ok()?;
        serde_json::from_slice(resp.kvs().first()?.value()).ok()
    }
}

/// stdout of a successful command; panics with its stderr otherwise.
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it gives a value, within [`DEADLINE`]; returns the value.
async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let found = std::sync::Mutex::new(None);
    wait_until(DEADLINE, what, || async {
        let value = f().await;
        let done = value.is_some();
        *found.lock().expect("lock") = value;
        done
    })
    .await;
    let value = found.into_inner().expect("lock");
    value.expect("found")
}

/// The changefeed's checkpoint in `/tidb/cdc/job/<id>`, 0 while there is none.
async fn checkpoint(c: &TlsPd, id: &str) -> u64 {
    let status = c.etcd_value(&format!("/tidb/cdc/job/{id}")).await;
    status
        .and_then(|s| s["checkpoint-ts"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_runs_over_tls_through_the_standin() {
    let mut c = TlsPd::start().await;
    let ports = [free_port(), free_port()];
    for p in ports {
        let child = c.server(p, &c.pki.ca, &c.capture);
        c.procs.0.push(child);
    }
    for p in ports {
        let log = c.log(p);
        wait_until(DEADLINE, &format!("capture {p} detects the PD"), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            std::future::ready(text.contains(PD_DETECTED))
        })
        .await;
    }

    // `cdc cli capture list` over TLS through the stand-in: both captures, one owner.
    wait_until(DEADLINE, "two captures, one of them the owner", || {
        let out = c.cli(&["capture", "list"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let captures = list.as_array().cloned().unwrap_or_default();
        let owners = captures.iter().filter(|c| c["is-owner"] == true).count();
        std::future::ready(captures.len() == 2 && owners == 1)
    })
    .await;

    let create = [
        "changefeed",
        "create",
        "-c",
        "x",
        "--sink-uri",
        "blackhole://",
    ];
    let created = ok(&c.cli(&create), "changefeed create");
    assert!(
        created.contains("Create changefeed successfully!"),
        "{created}"
    );
    let first = wait_for("a first checkpoint", || async {
        Some(checkpoint(&c, "x").await).filter(|ts| *ts > 0)
    })
    .await;
    wait_until(DEADLINE, "the checkpoint advances", || async {
        checkpoint(&c, "x").await > first
    })
    .await;
    let query = ok(&c.cli(&["changefeed", "query", "-c", "x"]), "query");
    assert!(query.contains("\"normal\""), "the changefeed runs: {query}");

    // The owner's service GC safe point, in PD's own key in etcd, below the checkpoint.
    let key = c.standin.service_safe_point_key("ticdc");
    let safe_point = wait_for(&format!("{key} in etcd"), || async {
        let value = c.etcd_value(&key).await?;
        value["safe_point"].as_u64().filter(|ts| *ts > 0)
    })
    .await;
    let now = checkpoint(&c, "x").await;
    println!("checkpoint {first} -> {now}; PD's service safe point for ticdc: {safe_point}");
    assert!(
        safe_point < now,
        "safe point {safe_point} below checkpoint {now}"
    );
}

/// A capture trusting a CA that did not sign the stand-in's certificate exits at start with
/// one line naming the https:// endpoint and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_with_another_ca_stops_naming_the_pd_endpoint() {
    let mut c = TlsPd::start().await;
    let stranger = TestPki::new("another CA");
    let own = stranger.issue("stranger", "capture");
    let port = free_port();
    let child = c.server(port, &stranger.ca, &own);
    c.procs.0.push(child);
    let child = c.procs.0.last_mut().expect("the capture");
    let mut exit = None;
    wait_until(DEADLINE, "the capture exits", || {
        exit = child.try_wait().expect("try_wait");
        std::future::ready(exit.is_some())
    })
    .await;
    assert!(!exit.expect("exited").success(), "a failed start");
    let log = std::fs::read_to_string(c.log(port)).expect("log");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("Error:")).collect();
    let first = c.members.split(',').next().expect("a member");
    assert_eq!(
        errors,
        [format!(
            "Error: etcd at {first}: TLS handshake failed: certificate signed by an unknown \
             authority (check --ca)"
        )],
        "one line naming the endpoint:\n{log}"
    );
}
