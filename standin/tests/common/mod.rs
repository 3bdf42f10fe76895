//! A real etcd and an in-process stand-in in front of it, plus small clients of both.

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use clap::Parser;
use rcdc_proto::pdpb::{self, pd_client::PdClient};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_standin::cli::PdArgs;
use rcdc_standin::Standin;
use tonic::transport::Channel;

pub struct Fixture {
    pub etcd: EtcdHarness,
    pub standin: Standin,
    pub cluster_id: u64,
    _dir: tempfile::TempDir,
}

/// etcd, then a stand-in with `members` members on free loopback ports (and `extra` flags).
pub async fn start(members: usize, extra: &[&str]) -> Fixture {
    let etcd = EtcdHarness::start().await;
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

    /// A client of the real etcd, bypassing the stand-in (to see what it stored).
    pub async fn etcd_direct(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.etcd.client_url()], None)
            .await
            .expect("connect etcd")
    }

    /// `PUT`/`POST` a control route on member 0 and return (status, body).
    pub async fn control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        control(&self.url(0), method, path, body).await
    }
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
