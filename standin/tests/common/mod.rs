//! A real etcd and an in-process stand-in in front of it, plus small clients of both.

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use clap::Parser;
use rcdc_proto::pdpb::{self, pd_client::PdClient};
use rcdc_reactor::testing::{EtcdHarness, EtcdTls};
use rcdc_standin::cli::PdArgs;
use rcdc_standin::Standin;
use tonic::transport::{Channel, ClientTlsConfig};

#[path = "../../../tests/common/certs.rs"]
pub mod certs;
use certs::{PemPair, TestPki};

pub struct Fixture {
    pub etcd: EtcdHarness,
    pub standin: Standin,
    pub cluster_id: u64,
    _dir: tempfile::TempDir,
}

/// etcd, then a stand-in with `members` members on free loopback ports (and `extra` flags).
pub async fn start(members: usize, extra: &[&str]) -> Fixture {
    start_on(EtcdHarness::start().await, members, extra).await
}

/// `members` stand-in members on free loopback ports in front of `etcd` (and `extra` flags).
pub async fn start_on(etcd: EtcdHarness, members: usize, extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = vec!["127.0.0.1:0"; members].join(",");
    let data_dir = dir.path().display().to_string();
    let mut argv = vec![
        "pd",
        "--etcd",
        &etcd.client_url(),
        "--listen",
        &listen,
        "--data-dir",
        &data_dir,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = PdArgs::try_parse_from(argv).expect("stand-in flags");
    let standin = rcdc_standin::start(args).await.expect("stand-in starts");
    let cluster_id = standin.cluster.cluster_id;
    Fixture {
        etcd,
        standin,
        cluster_id,
        _dir: dir,
    }
}

impl Fixture {
    pub fn url(&self, member: usize) -> String {
        self.standin.urls()[member].clone()
    }

    pub async fn pd(&self, member: usize) -> PdClient<Channel> {
        pd(&self.url(member)).await
    }

    pub fn header(&self) -> Option<pdpb::RequestHeader> {
        header(self.cluster_id)
    }

    /// A client of the real etcd, bypassing the stand-in (to see what it stored); over TLS
    /// with the harness's certificate when etcd serves TLS.
    pub async fn etcd_direct(&self) -> etcd_client::Client {
        self.etcd.store().await.client().clone()
    }

    /// `PUT`/`POST` a control route on member 0 and return (status, body).
    pub async fn control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        control(&self.url(0), method, path, body).await
    }
}

/// A CA and the certificates of a TLS cluster: etcd's, the stand-in's, a client's.
pub struct Pki {
    pub pki: TestPki,
    pub standin: PemPair,
    pub client: PemPair,
}

impl Pki {
    pub fn new() -> Self {
        let pki = TestPki::new("rcdc test CA");
        let standin = pki.issue("pd", "pd");
        let client = pki.issue("client", "cdc");
        Self {
            pki,
            standin,
            client,
        }
    }

    /// An etcd serving only https:// and requiring a certificate this CA signed.
    pub async fn etcd(&self) -> EtcdHarness {
        let server = self.pki.issue("etcd", "etcd");
        let harness = self.pki.issue("harness", "harness");
        EtcdHarness::start_tls(EtcdTls {
            ca: self.pki.ca.clone(),
            server_cert: server.cert,
            server_key: server.key,
            client_cert: harness.cert,
            client_key: harness.key,
        })
        .await
    }

    /// The stand-in's TLS flags: this CA, the stand-in's certificate.
    pub fn flags(&self) -> Vec<String> {
        let p = |p: &std::path::Path| p.display().to_string();
        vec![
            "--ca".into(),
            p(&self.pki.ca),
            "--cert".into(),
            p(&self.standin.cert),
            "--key".into(),
            p(&self.standin.key),
        ]
    }

    /// A client trusting `ca`, presenting `own` (tonic's and etcd-client's TLS).
    pub fn grpc_tls(ca: &std::path::Path, own: Option<&PemPair>) -> ClientTlsConfig {
        let read = |p: &std::path::Path| std::fs::read(p).expect("test PEM");
        let config = ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)));
        match own {
            Some(own) => config.identity(tonic::transport::Identity::from_pem(
                read(&own.cert),
                read(&own.key),
            )),
            None => config,
        }
    }
}

/// A TLS etcd and a TLS stand-in with `members` members in front of it.
pub async fn start_tls(pki: &Pki, members: usize) -> Fixture {
    rcdc_tls::install_crypto_provider();
    let flags = pki.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_on(pki.etcd().await, members, &flags).await
}

/// A PD client of `url` over TLS, trusting `pki`'s CA and presenting its client certificate.
pub async fn pd_tls(url: &str, pki: &Pki) -> PdClient<Channel> {
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .tls_config(Pki::grpc_tls(&pki.pki.ca, Some(&pki.client)))
        .expect("TLS config")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    PdClient::new(channel)
}

pub async fn pd(url: &str) -> PdClient<Channel> {
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    PdClient::new(channel)
}

pub fn header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        sender_id: 0,
    })
}

pub async fn control(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client
        .request(method, format!("{url}{path}"))
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// One TSO batch of `count` on a fresh stream: the LAST timestamp, or the stream's status.
pub async fn tso(
    client: &mut PdClient<Channel>,
    cluster_id: u64,
    count: u32,
) -> Result<pdpb::Timestamp, tonic::Status> {
    let req = pdpb::TsoRequest {
        header: header(cluster_id),
        count,
        dc_location: String::new(),
    };
    let mut stream = client
        .tso(futures::stream::iter(vec![req]))
        .await?
        .into_inner();
    match stream.message().await? {
        Some(resp) => {
            assert_eq!(resp.count, count, "the response echoes the count");
            Ok(resp.timestamp.expect("a timestamp"))
        }
        None => panic!("TSO stream ended without an answer"),
    }
}

pub fn compose(ts: &pdpb::Timestamp) -> u64 {
    ((ts.physical as u64) << 18) | ts.logical as u64
}
