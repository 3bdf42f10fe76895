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

/// How long etcd gets to answer after a (re)start.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// An etcd server started for one test, in its own temporary data directory, on free loopback
/// ports. Killed on drop.
pub struct EtcdHarness {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    tls: Option<EtcdTls>,
}

/// PEM files for an etcd that serves clients over TLS and requires a client certificate
/// (`--cert-file --key-file --trusted-ca-file --client-cert-auth`). The test makes them; the
/// harness's own client (readiness probe, [`EtcdHarness::store`]) uses `client_cert`.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signed both the server's and the clients' certificates.
    pub ca: PathBuf,
    /// etcd's certificate (valid for 127.0.0.1).
    pub server_cert: PathBuf,
    /// etcd's key.
    pub server_key: PathBuf,
    /// A client certificate the CA signed.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl EtcdTls {
    /// The client side: trust `ca`, present `client_cert`.
    fn client_options(&self) -> etcd_client::TlsOptions {
        let read = |p: &PathBuf| {
            std::fs::read(p).unwrap_or_else(|e| panic!("test TLS file {}: {e}", p.display()))
        };
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
            .identity(etcd_client::Identity::from_pem(
                read(&self.client_cert),
                read(&self.client_key),
            ))
    }
}

/// Two distinct free loopback ports: both listeners are held until both are known.
fn free_ports() -> (u16, u16) {
    let bind = || {
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free loopback port: {e}"))
    };
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| {
        l.local_addr()
            .unwrap_or_else(|e| panic!("loopback port: {e}"))
            .port()
    };
    (port(&a), port(&b))
}

/// The last lines of a log file, for a failure message (the temp dir may be gone by the time
/// someone reads the path).
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl EtcdHarness {
    /// Starts `etcd` from `PATH` in a fresh data directory on free loopback ports and waits
    /// (up to 15 s) until it answers a read. Panics if `etcd` is missing or does not come up.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Like [`start`](Self::start), but etcd serves `https://` and accepts only clients with a
    /// certificate signed by `tls.ca`.
    pub async fn start_tls(tls: EtcdTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<EtcdTls>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rcdc-etcd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let (client_port, peer_port) = free_ports();
        let mut h = Self {
            dir,
            client_port,
            peer_port,
            child: None,
            tls,
        };
        h.spawn();
        h.wait_ready().await;
        h
    }

    /// `http://127.0.0.1:<port>`, or `https://` when started with [`start_tls`](Self::start_tls).
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client endpoints, for [`EtcdStore::connect`].
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url()]
    }

    /// etcd's log file (stdout and stderr of every run), for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// A store connected to this etcd, with short timeouts suited to tests (dial 2 s,
    /// requests 3 s).
    pub async fn store(&self) -> EtcdStore {
        let config = EtcdStoreConfig {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            tls: self.tls.as_ref().map(EtcdTls::client_options),
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

    /// Kills etcd (SIGKILL) and waits for it to exit. The data directory and ports stay, for
    /// [`restart`](Self::restart). Does nothing if it is not running.
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

    /// Starts etcd again (killing it first if it runs) on the same ports and data directory,
    /// and waits until it answers: "etcd restarted mid-run".
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
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=rcdc-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=rcdc-test={peer}"))
            .arg("--auto-compaction-retention=0")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=error")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `etcd` from PATH ({e}): the integration tests need a real etcd; \
                     install Debian's `etcd-server` package (./scripts/ensure-deps.sh does)"
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        let config = EtcdStoreConfig {
            dial_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            tls: self.tls.as_ref().map(EtcdTls::client_options),
        };
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "etcd exited early ({status}); log {}:\n{}",
                        self.log_path().display(),
                        log_tail(&self.log_path())
                    );
                }
            }
            // A linearizable read: answers only once the member has a leader.
            if let Ok(store) = EtcdStore::connect(&self.endpoints(), config.clone()).await {
                let mut kv = store.client().kv_client();
                let probe = kv.get("/rcdc-harness-probe", None);
                if let Ok(Ok(_)) = tokio::time::timeout(config.request_timeout, probe).await {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not answer on {} within {READY_DEADLINE:?}; log {}:\n{}",
                    self.client_url(),
                    self.log_path().display(),
                    log_tail(&self.log_path())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EtcdHarness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Whether etcd was still up tells a test's bug from etcd dying under it.
            let exited = self.child.as_mut().map(|c| c.try_wait());
            match exited {
                Some(Ok(Some(status))) => eprintln!("test etcd had exited: {status}"),
                Some(Ok(None)) => eprintln!("test etcd was still running"),
                _ => eprintln!("test etcd was stopped by the test"),
            }
        }
        self.stop();
        if std::thread::panicking() {
            // The temp dir goes with us: keep etcd's log (not its data, which is large) for the
            // post-mortem.
            let kept = std::env::temp_dir().join(format!(
                "rcdc-etcd-{}-{}.log",
                std::process::id(),
                self.client_port
            ));
            if std::fs::copy(self.log_path(), &kept).is_ok() {
                eprintln!("test etcd's log kept at {}", kept.display());
            }
            // CI keeps only what the test printed: show why etcd went away, if it did.
            eprintln!(
                "last lines of test etcd's log:\n{}",
                log_tail(&self.log_path())
            );
        }
    }
}

/// Polls `f` every 20 ms until it returns true; panics naming `what` after `deadline`. Tests
/// use it instead of sleeps.
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
