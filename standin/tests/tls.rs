//! The stand-in serving TLS as a PD with `[security]` set, in front of an etcd that serves
//! only https:// and requires client certificates: PD's gRPC, etcd's gRPC and HTTP/1.1 on one
//! TLS port with client certificates required; clients without a certificate the CA signed
//! refused in the handshake (and logged naming them); bad files and etcd's TLS refusals
//! named at start.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::Parser;
use common::certs::{PemPair, TestPki};
use common::{pd_tls, start_tls, Pki};
use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};
use rcdc_proto::pdpb;
use rcdc_reactor::testing::wait_until;
use rcdc_standin::cli::PdArgs;
use rcdc_tls::{handshake_verdict, CaFile, OwnIdentity, TlsFailure};

const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

/// The port of an `https://host:port` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

#[tokio::test]
async fn pd_grpc_over_tls_lists_https_members() {
    let pki = Pki::new();
    let f = start_tls(&pki, 2).await;
    assert!(f.url(1).starts_with("https://127.0.0.1:"), "{}", f.url(1));
    // The follower too: every member serves TLS.
    let mut pd = pd_tls(&f.url(1), &pki).await;
    let members = within(
        "GetMembers",
        pd.get_members(pdpb::GetMembersRequest { header: None }),
    )
    .await
    .expect("GetMembers over TLS")
    .into_inner();
    assert_eq!(members.header.expect("header").cluster_id, f.cluster_id);
    let urls: Vec<&str> = members
        .members
        .iter()
        .flat_map(|m| m.client_urls.iter().map(String::as_str))
        .collect();
    assert_eq!(
        urls,
        [f.url(0).as_str(), f.url(1).as_str()],
        "https:// member URLs"
    );
    let leader = members.leader.expect("a leader");
    assert_eq!(leader.client_urls, [f.url(0)]);
    let mut leader = pd_tls(&f.url(0), &pki).await;
    let ts = within("TSO", common::tso(&mut leader, f.cluster_id, 3))
        .await
        .expect("TSO over TLS");
    assert!(ts.physical > 0);
}

#[tokio::test]
async fn an_etcd_client_reaches_the_tls_etcd_through_the_tls_port() {
    let pki = Pki::new();
    let f = start_tls(&pki, 2).await;
    let tls = Pki::grpc_tls(&pki.pki.ca, Some(&pki.client));
    let options = ConnectOptions::new().with_tls(tls);
    let mut etcd = within("connect", Client::connect([f.url(1)], Some(options)))
        .await
        .expect("etcd client over TLS");

    within("put", etcd.put("/k/a", "1", None))
        .await
        .expect("put");
    let direct = f.etcd_direct().await.get("/k/a", None).await.expect("get");
    assert_eq!(
        direct.kvs()[0].value(),
        b"1",
        "the write landed in the TLS etcd"
    );
    let got = within("get", etcd.get("/k/a", None)).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"1");

    let watch = etcd.watch("/w/", Some(WatchOptions::new().with_prefix()));
    let mut events = within("watch", watch).await.expect("watch");
    for i in 0..3 {
        within("put", etcd.put(format!("/w/{i}"), "v", None))
            .await
            .expect("put");
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = within("watch event", events.message())
            .await
            .expect("watch")
            .expect("watch open");
        for e in resp.events() {
            assert_eq!(e.event_type(), EventType::Put);
            seen.push(String::from_utf8_lossy(e.kv().expect("kv").key()).into_owned());
        }
    }
    assert_eq!(seen, ["/w/0", "/w/1", "/w/2"]);
}

/// A reqwest client over rustls trusting `ca`, presenting `own`.
fn https_client(ca: &std::path::Path, own: Option<&PemPair>) -> reqwest::Client {
    let id = own.map(|o| OwnIdentity::load(&o.cert, &o.key).expect("identity"));
    let config = CaFile::load(ca)
        .expect("CA")
        .client_config(id.as_ref(), &[b"http/1.1"])
        .expect("client config");
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(STEP)
        .build()
        .expect("client")
}

#[tokio::test]
async fn pd_http_and_etcd_http_over_https_with_a_client_certificate() {
    let pki = Pki::new();
    let f = start_tls(&pki, 1).await;
    let http = https_client(&pki.pki.ca, Some(&pki.client));
    let get = |path: &str| {
        let url = format!("{}{path}", f.url(0));
        let http = http.clone();
        async move {
            let r = http
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (status, body) = get("/pd/api/v1/version").await;
    assert_eq!((status, body.as_str()), (200, r#"{"version":"v5.1.0"}"#));
    let (status, body) = get("/standin/state").await;
    assert_eq!(status, 200, "{body}");
    // etcd's own /health, forwarded to the TLS etcd with the stand-in's certificate.
    let (status, body) = get("/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["health"], "true", "{body}");
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/pd/api/v1/version",
            port_of(&f.url(0))
        ))
        .timeout(STEP)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
}

/// Everything the stand-in logs, for the handshake-refusal lines (one subscriber for this test
/// binary; tests look for their own peer address).
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let make = move || LogWriter(writer.clone());
        let _ = tracing_subscriber::fmt()
            .with_writer(make)
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A handshake from a socket whose address we know; the server's verdict.
async fn handshake_from(
    port: u16,
    config: rustls::ClientConfig,
) -> (std::net::SocketAddr, std::io::Result<usize>) {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let local = tcp.local_addr().expect("local address");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let result = match connector.connect(name, tcp).await {
        // TLS 1.3: the refusal of our certificate arrives at the first read.
        Ok(mut stream) => stream.read(&mut [0u8; 1]).await,
        Err(e) => Err(e),
    };
    (local, result)
}

#[tokio::test]
async fn clients_without_a_certificate_the_ca_signed_are_refused_and_logged() {
    let log = captured_log();
    let pki = Pki::new();
    let f = start_tls(&pki, 1).await;
    let port = port_of(&f.url(0));
    let ca = CaFile::load(&pki.pki.ca).expect("CA");
    let stranger = TestPki::new("another CA");
    let stranger_pair = stranger.issue("stranger", "cdc");
    let stranger_id = OwnIdentity::load(&stranger_pair.cert, &stranger_pair.key).expect("id");
    let verdict = |config: rustls::ClientConfig, presented: bool| {
        handshake_verdict(Arc::new(config), presented, "127.0.0.1", port, b"", STEP)
    };

    let anonymous = ca.client_config(None, &[b"h2"]).expect("config");
    assert_eq!(
        verdict(anonymous.clone(), false).await,
        Some(TlsFailure::ClientCertificateRequired)
    );
    let foreign = ca
        .client_config(Some(&stranger_id), &[b"h2"])
        .expect("config");
    assert_eq!(
        verdict(foreign.clone(), true).await,
        Some(TlsFailure::ClientCertificateRefused {
            alert: "UnknownCA".into()
        })
    );
    // The real clients see a failure too: gRPC and HTTPS without a certificate.
    let channel = tonic::transport::Channel::from_shared(f.url(0))
        .expect("url")
        .tls_config(Pki::grpc_tls(&pki.pki.ca, None))
        .expect("tls")
        .timeout(STEP)
        .connect_lazy();
    let call = rcdc_proto::pdpb::pd_client::PdClient::new(channel)
        .get_members(pdpb::GetMembersRequest { header: None })
        .await;
    assert!(call.is_err(), "GetMembers without a certificate: {call:?}");
    let answer = https_client(&pki.pki.ca, Some(&stranger_pair))
        .get(format!("{}/pd/api/v1/version", f.url(0)))
        .send()
        .await;
    assert!(answer.is_err(), "another CA's certificate: {answer:?}");

    // The stand-in logs each refusal naming the client's address.
    for config in [anonymous, foreign] {
        let (peer, result) = handshake_from(port, config).await;
        assert!(result.is_err(), "{peer} refused: {result:?}");
        let want = format!("peer={peer}");
        wait_until(STEP, &format!("a refusal logged naming {peer}"), || {
            let text = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
            std::future::ready(
                text.lines().any(|l| {
                    l.contains("client refused: TLS handshake failed") && l.contains(&want)
                }),
            )
        })
        .await;
    }
    // And a CA-signed client still gets in.
    let good = ca
        .client_config(
            Some(&OwnIdentity::load(&pki.client.cert, &pki.client.key).expect("id")),
            &[b"h2"],
        )
        .expect("config");
    assert_eq!(verdict(good, true).await, None);
}

/// `cdc-standin pd` flags: one member in front of `etcd`, trusting `ca`, presenting `own`.
fn args(etcd: &str, ca: &std::path::Path, own: &PemPair, dir: &std::path::Path) -> PdArgs {
    let argv: Vec<String> = vec![
        "pd".into(),
        format!("--etcd={etcd}"),
        "--listen=127.0.0.1:0".into(),
        format!("--data-dir={}", dir.display()),
        format!("--ca={}", ca.display()),
        format!("--cert={}", own.cert.display()),
        format!("--key={}", own.key.display()),
    ];
    PdArgs::try_parse_from(argv).expect("flags")
}

async fn start_err(args: PdArgs) -> String {
    match rcdc_standin::start(args).await {
        Ok(_) => panic!("the stand-in should refuse to start"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_files_and_etcd_tls_refusals_are_named_at_start() {
    rcdc_tls::install_crypto_provider();
    let pki = Pki::new();
    let etcd = pki.etcd().await;
    let url = etcd.client_url();
    let dir = tempfile::tempdir().expect("dir");
    let stranger = TestPki::new("another CA");
    let stranger_own = stranger.issue("stranger", "pd");

    let missing = PemPair {
        cert: pki.pki.dir().join("missing.pem"),
        key: pki.standin.key.clone(),
    };
    let e = start_err(args(&url, &pki.pki.ca, &missing, dir.path())).await;
    assert!(
        e.starts_with("cannot read certificate file (--cert) ") && e.contains("missing.pem"),
        "{e}"
    );
    let text = pki.pki.write("text.pem", "not a CA\n");
    let e = start_err(args(&url, &text, &pki.standin, dir.path())).await;
    assert!(
        e.contains("CA file (--ca)") && e.contains("text.pem"),
        "{e}"
    );

    // Trusting a CA that did not sign etcd's certificate.
    let e = start_err(args(&url, &stranger.ca, &stranger_own, dir.path())).await;
    assert_eq!(
        e,
        format!("etcd at {url}: TLS handshake failed: certificate signed by an unknown authority (check --ca)")
    );
    // etcd refusing the stand-in's certificate (another CA signed it).
    let e = start_err(args(&url, &pki.pki.ca, &stranger_own, dir.path())).await;
    assert!(
        e.starts_with(&format!(
            "etcd at {url}: TLS handshake failed: the server refused our client certificate"
        )),
        "{e}"
    );
    // An https:// etcd needs the TLS flags; an unreachable one is named.
    let bare = PdArgs::try_parse_from([
        "pd",
        "--etcd",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "d",
    ])
    .expect("flags");
    let e = start_err(bare).await;
    assert!(
        e.contains(&format!(
            "--etcd {url}: https:// needs --ca, --cert and --key"
        )),
        "{e}"
    );
    let gone = format!("https://127.0.0.1:{}", free_port());
    let e = start_err(args(&gone, &pki.pki.ca, &pki.standin, dir.path())).await;
    assert!(
        e.starts_with(&format!("etcd at {gone} is unreachable")),
        "{e}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
