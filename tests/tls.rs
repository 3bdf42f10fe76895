//! TLS everywhere (issue #12 item 5): `cdc server` processes on a real etcd that serves only
//! https:// and requires client certificates; the API over HTTPS with client certificates and
//! `cert-allowed-cn`; `cdc cli` over TLS; forwarding to the owner over HTTPS; and each bad
//! certificate refused with one line naming the endpoint. Certificates are made by rcgen.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::certs::{PemPair, TestPki};
use common::procs::{free_port, Servers};
use common::*;
use rcdc::security::{Role, Security, SecurityConfig, TlsFailure};
use rcdc_reactor::testing::EtcdHarness;
use serde_json::Value;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/tls";
/// The captures' own CN (they forward to the owner with their certificate) and the CLI's.
const ALLOWED: &str = "capture,rcdc-cli";

/// A CA, an etcd that requires certificates it signed, and the files everyone else uses.
struct TlsCluster {
    pki: TestPki,
    etcd: EtcdHarness,
    capture: PemPair,
    cli: PemPair,
}

impl TlsCluster {
    async fn start() -> Self {
        rcdc::security::install_crypto_provider();
        let pki = TestPki::new("rcdc test CA");
        let etcd = common::tls_etcd(&pki).await;
        let capture = pki.issue("capture", "capture");
        let cli = pki.issue("cli", "rcdc-cli");
        Self {
            pki,
            etcd,
            capture,
            cli,
        }
    }

    fn pd(&self) -> String {
        self.etcd.client_url()
    }

    /// `cdc server --ca --cert --key --cert-allowed-cn` on `port`, logging into the PKI dir.
    fn server(&self, port: u16, ca: &Path, own: &PemPair) -> Child {
        let log = self.pki.dir().join(format!("capture-{port}.log"));
        let log = std::fs::File::create(log).expect("log file");
        Command::new(CDC)
            .args([
                "server",
                "--pd",
                &self.pd(),
                "--addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--cluster-prefix", PREFIX, "--log-level", "info"])
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
            .args(["--cert-allowed-cn", ALLOWED])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cdc server")
    }

    /// `cdc cli` with `--ca` and, if given, `--cert/--key`.
    fn cli(&self, ca: &Path, own: Option<&PemPair>, args: &[&str]) -> Output {
        let mut cmd = Command::new(CDC);
        cmd.args(["cli", "--pd", &self.pd(), "--cluster-prefix", PREFIX]);
        cmd.arg("--ca").arg(ca);
        if let Some(own) = own {
            cmd.arg("--cert").arg(&own.cert).arg("--key").arg(&own.key);
        }
        cmd.args(args).output().expect("run cdc cli")
    }

    /// Client TLS trusting our CA and presenting `own`.
    fn security(&self, own: Option<&PemPair>) -> Security {
        SecurityConfig {
            ca_path: Some(self.pki.ca.clone()),
            cert_path: own.map(|p| p.cert.clone()),
            key_path: own.map(|p| p.key.clone()),
            cert_allowed_cn: vec![],
        }
        .load(Role::Client)
        .expect("client security")
    }

    /// An HTTPS client presenting `own`.
    fn client(&self, own: Option<&PemPair>) -> reqwest::Client {
        self.security(own)
            .http_client(Duration::from_secs(10))
            .expect("client")
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one `Error:` line of a failed command.
fn error_line(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line in {err}");
    lines[0].to_owned()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = http.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// (owner port, other port) if both captures answer over HTTPS and exactly one is the owner.
async fn roles_now(http: &reqwest::Client, ports: [u16; 2]) -> Option<(u16, u16)> {
    let mut owner = vec![];
    for p in ports {
        match get_json(http, &format!("https://127.0.0.1:{p}/api/v1/status")).await? {
            (200, v) if v["is_owner"] == true => owner.push(p),
            (200, _) => {}
            _ => return None,
        }
    }
    let [o] = owner[..] else { return None };
    Some((o, if o == ports[0] { ports[1] } else { ports[0] }))
}

async fn roles(http: &reqwest::Client, ports: [u16; 2]) -> (u16, u16) {
    let found = std::sync::Mutex::new(None);
    wait_until(DEADLINE, "one of two TLS captures is the owner", || async {
        let now = roles_now(http, ports).await;
        *found.lock().expect("lock") = now;
        now.is_some()
    })
    .await;
    let roles = *found.lock().expect("lock");
    roles.expect("roles")
}

/// The whole path over TLS: captures on TLS etcd become owner, the API answers over HTTPS,
/// `cdc cli` lists captures and creates a changefeed that replicates, and an owner-only
/// request sent to the other capture is forwarded to the owner over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_with_tls_on_etcd_the_api_and_the_cli() {
    let c = TlsCluster::start().await;
    let ports = [free_port(), free_port()];
    let _servers = Servers(
        ports
            .iter()
            .map(|&p| c.server(p, &c.pki.ca, &c.capture))
            .collect(),
    );
    let http = c.client(Some(&c.cli));
    let (owner, other) = roles(&http, ports).await;

    let captures: Value = serde_json::from_str(&ok(
        &c.cli(&c.pki.ca, Some(&c.cli), &["capture", "list"]),
        "capture list",
    ))
    .expect("JSON");
    let mut addresses: Vec<&str> = captures
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    addresses.sort();
    let mut want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    assert_eq!(
        addresses, want,
        "captures advertise host:port, TiCDC's format"
    );

    let created = ok(
        &c.cli(
            &c.pki.ca,
            Some(&c.cli),
            &[
                "changefeed",
                "create",
                "-c",
                "tls-feed",
                "--sink-uri",
                "blackhole://",
            ],
        ),
        "changefeed create",
    );
    assert!(
        created.contains("Create changefeed successfully!"),
        "{created}"
    );
    let detail = format!("https://127.0.0.1:{other}/api/v1/changefeeds/tls-feed");
    wait_until(DEADLINE, "the changefeed replicates over TLS", || async {
        match get_json(&http, &detail).await {
            Some((200, d)) => {
                d["state"] == "normal" && d["checkpoint_tso"].as_u64() > d["start_ts"].as_u64()
            }
            _ => false,
        }
    })
    .await;

    // The CLI sends pause to the non-owner; it forwards to the owner over HTTPS.
    let server = format!("https://127.0.0.1:{other}");
    let args = [
        "changefeed",
        "pause",
        "-c",
        "tls-feed",
        "--server",
        server.as_str(),
    ];
    ok(
        &c.cli(&c.pki.ca, Some(&c.cli), &args),
        "pause through the non-owner",
    );
    let (status, d) = get_json(&http, &detail).await.expect("detail");
    assert_eq!((status, d["state"].as_str()), (200, Some("stopped")), "{d}");
    // And a direct request to the non-owner, too.
    let resume = format!("https://127.0.0.1:{other}/api/v1/changefeeds/tls-feed/resume");
    let r = http.post(resume).send().await.expect("resume");
    assert!(r.status().is_success(), "resume: {}", r.status());
    let (_, d) = get_json(&http, &detail).await.expect("detail");
    assert_eq!(d["state"], "normal", "the owner at {owner} resumed it: {d}");

    for path in [
        "/status",
        "/metrics",
        "/api/v1/captures",
        "/config",
        "/dashboard",
        "/dashboard/data",
    ] {
        let r = http
            .get(format!("https://127.0.0.1:{owner}{path}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{path} for an allowed client");
    }
    let config: Value = http
        .get(format!("https://127.0.0.1:{owner}/config"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        config["security"]["cert-allowed-cn"],
        serde_json::json!(["capture", "rcdc-cli"])
    );
}

/// A client certificate built without `load`'s validity check, as a careless client would
/// present an expired one.
fn expired_client(ca: &Path, expired: &PemPair) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("CA"))
        .expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(&expired.cert).expect("cert")],
            PrivateKeyDer::from_pem_file(&expired.key).expect("key"),
        )
        .expect("client config");
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Every route needs an allowed client certificate: none, another CA's or an expired one
/// fails the handshake (each named as such); a CA-signed one whose CN is not allowed gets 403
/// on every route, fallbacks included; plain HTTP gets nothing. The CLI says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_every_client_without_an_allowed_certificate() {
    let c = TlsCluster::start().await;
    let port = free_port();
    let _servers = Servers(vec![c.server(port, &c.pki.ca, &c.capture)]);
    let allowed = c.client(Some(&c.cli));
    let status = format!("https://127.0.0.1:{port}/api/v1/status");
    wait_until(DEADLINE, "the capture answers over HTTPS", || async {
        matches!(get_json(&allowed, &status).await, Some((200, _)))
    })
    .await;

    handshakes_are_refused(&c, port).await;
    disallowed_cns_get_403(&c, port).await;
}

/// No client certificate, another CA's, an expired one: each fails the TLS handshake, and the
/// client's error names the endpoint and why, as the CLI and forwarding print it.
async fn handshakes_are_refused(c: &TlsCluster, port: u16) {
    let status = format!("https://127.0.0.1:{port}/api/v1/status");
    let stranger = TestPki::new("another CA");
    let address = format!("127.0.0.1:{port}");
    let refused = [
        (
            "no certificate",
            c.security(None),
            TlsFailure::ClientCertificateRequired,
        ),
        (
            "another CA's certificate",
            c.security(Some(&stranger.issue("stranger", "rcdc-cli"))),
            TlsFailure::ClientCertificateRefused {
                alert: "UnknownCA".into(),
            },
        ),
    ];
    for (what, security, want) in refused {
        let client = security
            .http_client(Duration::from_secs(10))
            .expect("client");
        let e = client.get(&status).send().await.expect_err(what);
        let error = rcdc::security::api_tls_failure(&security, &address, &e).await;
        assert_eq!(
            error.map(|e| e.to_string()),
            Some(format!(
                "the cdc API at {address}: TLS handshake failed: {want}"
            )),
            "{what}: {e:?}"
        );
    }
    // An expired certificate (which `load` would refuse to present): refused in the handshake,
    // and the capture's log says why.
    let expired = expired_client(&c.pki.ca, &c.pki.issue_expired("old", "rcdc-cli"));
    let answer = expired.get(&status).send().await;
    assert!(
        answer.is_err(),
        "an expired client certificate is refused: {answer:?}"
    );
    let log = c.pki.dir().join(format!("capture-{port}.log"));
    wait_until(
        DEADLINE,
        "the capture logs the expired client certificate",
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines().any(|l| {
                l.contains("API client refused: TLS handshake failed") && l.contains("expired")
            })
        },
    )
    .await;
    let plain = reqwest::Client::new();
    let answer = plain
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP is not served: {answer:?}");
}

/// A CA-signed certificate whose CN is not in `cert-allowed-cn`: 403 naming the CN on every
/// route, fallbacks included, and from the CLI; without a certificate the CLI is refused by
/// etcd first.
async fn disallowed_cns_get_403(c: &TlsCluster, port: u16) {
    let intruder_pair = c.pki.issue("intruder", "intruder");
    let intruder = c.client(Some(&intruder_pair));
    let routes = [
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::GET, "/metrics"),
        (reqwest::Method::GET, "/api/v1/status"),
        (reqwest::Method::GET, "/dashboard/data"),
        (reqwest::Method::POST, "/api/v1/changefeeds"),
        (reqwest::Method::POST, "/capture/owner/resign"),
        (reqwest::Method::GET, "/no/such/route"),
    ];
    for (method, path) in routes {
        let r = intruder
            .request(method, format!("https://127.0.0.1:{port}{path}"))
            .send()
            .await
            .expect("a CA-signed client completes the handshake");
        assert_eq!(r.status(), 403, "{path} for CN intruder");
        let body: Value = r.json().await.expect("JSON");
        let msg = body["error_msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("127.0.0.1:{port}"))
                && msg.contains("\"intruder\": not in cert-allowed-cn"),
            "{path}: {body}"
        );
    }

    // The CLI: etcd refuses it without a certificate; the API refuses a disallowed CN.
    let pause = ["changefeed", "pause", "-c", "x"];
    let e = error_line(&c.cli(&c.pki.ca, None, &pause), "cli without a certificate");
    assert_eq!(
        e,
        format!(
            "Error: etcd at {}: TLS handshake failed: the server requires a client certificate \
             (give --cert and --key)",
            c.pd()
        )
    );
    let server = format!("127.0.0.1:{port}");
    let mut args = pause.to_vec();
    args.extend(["--server", server.as_str()]);
    let e = error_line(
        &c.cli(&c.pki.ca, Some(&intruder_pair), &args),
        "cli with CN intruder",
    );
    assert!(
        e.contains(&format!(
            "the cdc API at {server} refuses the client certificate with CN \"intruder\""
        )),
        "{e}"
    );
}

/// Start-up refusals: a server (and the CLI) whose CA does not match etcd's exits naming the
/// endpoint; etcd refusing the server's certificate, an expired certificate and a key that
/// is not the certificate's each exit with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_stop_the_server_at_start_naming_the_endpoint_or_file() {
    let c = TlsCluster::start().await;
    let stranger = TestPki::new("another CA");
    let stranger_own = stranger.issue("stranger", "capture");
    let expired = c.pki.issue_expired("old", "capture");
    let mismatched = PemPair {
        cert: c.capture.cert.clone(),
        key: c.cli.key.clone(),
    };
    let unknown_ca = format!(
        "etcd at {}: TLS handshake failed: certificate signed by an unknown authority (check --ca)",
        c.pd()
    );
    let cases = [
        (
            "the wrong CA",
            stranger.ca.clone(),
            stranger_own.clone(),
            unknown_ca.clone(),
        ),
        (
            "a certificate etcd does not trust",
            c.pki.ca.clone(),
            stranger_own,
            format!(
                "etcd at {}: TLS handshake failed: the server refused our client certificate",
                c.pd()
            ),
        ),
        (
            "an expired certificate",
            c.pki.ca.clone(),
            expired.clone(),
            format!(
                "certificate file (--cert) {}: the certificate expired at",
                expired.cert.display()
            ),
        ),
        (
            "a key of another certificate",
            c.pki.ca.clone(),
            mismatched,
            format!(
                "does not belong to certificate file (--cert) {}",
                c.capture.cert.display()
            ),
        ),
    ];
    for (what, ca, own, want) in cases {
        let mut child = c.server(free_port(), &ca, &own);
        let mut exit = None;
        wait_until(DEADLINE, &format!("the server with {what} exits"), || {
            exit = child.try_wait().expect("try_wait");
            std::future::ready(exit.is_some())
        })
        .await;
        assert!(!exit.expect("exited").success(), "{what}: exit status");
        let log = std::fs::read_dir(c.pki.dir())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("capture-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|l| l.contains(&want));
        assert!(log.is_some(), "{what}: no server log says {want:?}");
    }
    let e = error_line(
        &c.cli(&stranger.ca, Some(&c.cli), &["capture", "list"]),
        "cli with the wrong CA",
    );
    assert_eq!(e, format!("Error: {unknown_ca}"));
    // And nothing about the plain path changed: a plain endpoint with TLS is refused at once.
    let out = Command::new(CDC)
        .args(["cli", "--pd", "http://127.0.0.1:2379", "--ca"])
        .arg(&c.pki.ca)
        .args(["capture", "list"])
        .output()
        .expect("cli");
    assert!(error_line(&out, "http with --ca").contains("the endpoints must be https://"));
}
