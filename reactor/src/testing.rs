//! Test support shared by this crate's tests, the root integration tests, benches and the
//! interim demo: a real etcd on free loopback ports, and polling to a deadline.
//!
//! Integration tests must run against a real etcd (never the in-process store as a stand-in),
//! so a missing `etcd` binary is a loud failure naming the package to install, not a skip.

// Test support measures real time and waits for a real etcd process.
#![allow(clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::etcd::{EtcdStore, EtcdStoreConfig};
use crate::store::MetaStore;

/// An etcd server started for one test, in its own temporary data directory, on free loopback
/// ports. Killed on drop.
pub struct EtcdHarness {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl EtcdHarness {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rcdc-etcd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut h = Self {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        h.spawn();
        h.wait_ready().await;
        h
    }

    /// `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url()]
    }

    /// etcd's log file, for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// A store connected to this etcd, with short timeouts suited to tests.
    pub async fn store(&self) -> EtcdStore {
        let config = EtcdStoreConfig {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
        };
        EtcdStore::connect(&self.endpoints(), config)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to test etcd: {e} (log: {})",
                    self.log_path().display()
                )
            })
    }

    /// Kills etcd (SIGKILL) and waits for it to exit. The data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Same as [`stop`](Self::stop).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts etcd again on the same ports and data directory and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("etcd log file: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("etcd log file: {e}"));
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=rcdc-test")
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=rcdc-test={peer}"))
            .arg("--log-level=warn")
            .arg("--logger=zap")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `etcd` ({e}): install Debian's `etcd-server` package (./scripts/ensure-deps.sh does)")
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd exited early ({status}); log: {}",
                        self.log_path().display()
                    );
                }
            }
            let config = EtcdStoreConfig {
                dial_timeout: Duration::from_millis(500),
                request_timeout: Duration::from_millis(500),
            };
            if let Ok(store) = EtcdStore::connect(&self.endpoints(), config).await {
                if store.get_prefix("/").await.is_ok() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not answer within 20 s; log: {}",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdHarness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 20 ms until it returns true; panics naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
