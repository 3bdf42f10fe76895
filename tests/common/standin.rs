//! The PD stand-in (`cdc-standin pd`) as a process in front of a test's real etcd, and `cdc`
//! processes pointed at it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::procs::free_port;

/// How long the stand-in may take to print its ready line.
const READY: Duration = Duration::from_secs(20);

/// Starts `bin pd ARGS` (its log appended to `log`) and waits for its ready line; returns
/// the process and the line.
pub fn spawn_ready(bin: &str, args: &[String], log: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("stand-in log file");
    let mut child = Command::new(bin)
        .arg("pd")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn cdc-standin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    match rx.recv_timeout(READY) {
        Ok(line) if line.starts_with("cdc-standin pd ready:") => (child, line),
        other => {
            let _ = child.kill();
            panic!("no ready line within {READY:?}: {other:?}");
        }
    }
}

/// A running stand-in: its process, member URLs and cluster id.
pub struct Standin {
    pub child: Child,
    /// As the ready line names them: `https://` when the stand-in serves TLS.
    pub urls: Vec<String>,
    pub cluster_id: u64,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standin {
    /// `members` members in front of `etcd_url`, data and log in `dir`, plus `extra` flags.
    pub fn start(bin: &str, etcd_url: &str, members: usize, dir: &Path, extra: &[&str]) -> Self {
        let ports: Vec<u16> = (0..members).map(|_| free_port()).collect();
        let listen: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec![
            format!("--etcd={etcd_url}"),
            format!("--listen={}", listen.join(",")),
            format!("--data-dir={}", dir.join("standin-data").display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, line) = spawn_ready(bin, &args, &dir.join("standin.log"));
        let cluster_id = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cluster_id="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no cluster id in {line:?}"));
        // `members=pd-1=http://127.0.0.1:1,pd-2=...`
        let urls: Vec<String> = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("members="))
            .map(|list| {
                list.split(',')
                    .filter_map(|m| m.split_once('=').map(|(_, url)| url.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(urls.len(), members, "member URLs in {line:?}");
        Self {
            child,
            urls,
            cluster_id,
        }
    }

    /// The `--pd` value naming every member.
    pub fn pd_arg(&self) -> String {
        self.urls.join(",")
    }

    /// The etcd key of a service GC safe point, as PD keeps it.
    pub fn service_safe_point_key(&self, service: &str) -> String {
        format!("/pd/{}/gc/safe_point/service/{service}", self.cluster_id)
    }

    /// A fault switch: `method` on `/standin/...` of the first member with a JSON body.
    pub async fn control(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let url = format!("{}{path}", self.urls[0]);
        let r = reqwest::Client::new()
            .request(method, &url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }
}
