//! The default build has no failpoints (README "Failpoints"): `FAILPOINTS` is ignored, even a
//! value a failpoint build refuses, and `cdc server` logs nothing about failpoints.
//!
//! Only a default-feature `cargo test` builds this; the `--all-features` suite runs
//! `failpoints.rs` instead.
#![cfg(not(feature = "failpoints"))]

mod common;

use std::process::{Command, Stdio};

use common::procs::{free_port, Servers};
use common::*;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
// Not naming failpoints itself: the log shows the prefix.
const PREFIX: &str = "/t/default-build";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_build_ignores_failpoints_and_logs_none() {
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("capture.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _servers = Servers(vec![Command::new(CDC)
        .args([
            "server",
            "--pd",
            &etcd.client_url(),
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
            "--cluster-prefix",
            PREFIX,
            "--upstream",
            "demo://?tables=1",
            "--log-level",
            "debug",
        ])
        // Unknown to any build: a failpoint build would refuse it and exit.
        .env("FAILPOINTS", "no-such-point=panic;sink-write=return")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")]);
    let store = etcd.store().await;
    wait_until(DEADLINE, "the capture registered", || async {
        store
            .get_prefix(&format!("{PREFIX}/capture/"))
            .await
            .map(|(kvs, _)| kvs.len() == 1)
            .unwrap_or(false)
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log.is_empty(), "the server logs at debug");
    assert!(
        !log.to_lowercase().contains("failpoint"),
        "a default build says nothing about failpoints:\n{log}"
    );
}
