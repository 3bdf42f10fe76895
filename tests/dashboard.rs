//! The web dashboard (issue #15) in a real browser: three `cdc server` processes on a real
//! etcd, a changefeed replicating into a file sink and one failing on an unwritable sink
//! directory, and `/dashboard` of a capture that is not the owner rendered by headless
//! Chromium. The rendered DOM must show both changefeeds, the owner mark on exactly one
//! capture, every table held once, a lag that moves between two renderings, and the failing
//! changefeed's error with its time. A screenshot is kept in
//! `target/test-artifacts/dashboard.png`.
//!
//! Chromium is driven through its command line (`--dump-dom`, `--screenshot`), each run in a
//! fresh profile, with a virtual-time budget that lets the page's polling run a few rounds:
//! no CDP client crate to build, and a run takes about a second. Without Chromium the test
//! fails, in CI and locally alike: `./scripts/ensure-deps.sh --test-tools` installs it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::procs::{free_port, Servers};
use common::*;
use parking_lot::Mutex;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{Clock, SystemClock};
use serde_json::{json, Value};

const CDC: &str = env!("CARGO_BIN_EXE_cdc");
const PREFIX: &str = "/t/dash";
const TABLES: usize = 6;
/// Rendering waits for three captures, a dispatch and a sink failure; generous for 2 cores.
const RENDER_DEADLINE: Duration = Duration::from_secs(90);

fn server(pd: &str, port: u16, log: &Path) -> Child {
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
            &format!("demo://?tables={TABLES}&rows-per-second=50&key-space=100&retention=none"),
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cdc server")
}

/// Headless Chromium run from its command line.
struct Browser {
    bin: PathBuf,
}

impl Browser {
    /// `RCDC_CHROMIUM`, else Debian's `/usr/bin/chromium`. Missing is a failure, never a skip.
    fn find() -> Self {
        let bin = std::env::var_os("RCDC_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        assert!(
            bin.is_file(),
            "no Chromium at {} (RCDC_CHROMIUM to use another): run \
             ./scripts/ensure-deps.sh --test-tools, which installs the Debian package \
             chromium; the dashboard cannot be checked without a browser",
            bin.display()
        );
        Self { bin }
    }

    /// Opens `url` in a fresh profile with `args`, giving the page `budget_ms` of virtual
    /// time (its timers run; a pending fetch holds the clock until it answers).
    async fn run(&self, url: &str, budget_ms: u64, args: &[String]) -> std::process::Output {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("chromium finishes within 60 s")
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium {args:?} {url}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The DOM after the page ran its first polls.
    async fn dom(&self, url: &str) -> Dom {
        let out = self.run(url, 5_000, &["--dump-dom".into()]).await;
        Dom(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn screenshot(&self, url: &str, path: &Path) {
        let args = [
            format!("--screenshot={}", path.display()),
            "--window-size=1280,900".into(),
            "--hide-scrollbars".into(),
        ];
        self.run(url, 5_000, &args).await;
    }
}

/// A DOM as Chromium serializes it: attributes as `name="value"`, with `&`, `"`, `<` and `>`
/// escaped, so the page's `data-*` marks can be read without an HTML parser.
struct Dom(String);

/// One start tag's attributes, and the text up to its closing tag.
#[derive(Debug)]
struct Element {
    attrs: BTreeMap<String, String>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map(String::as_str).unwrap_or_default()
    }
}

impl Dom {
    /// Every element with attribute `attr` (in document order).
    fn with(&self, attr: &str) -> Vec<Element> {
        let html = &self.0;
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(open) = html[at..].find('<').map(|i| at + i) {
            at = open + 1;
            let Some((name, attrs, end)) = start_tag(html, open) else {
                continue;
            };
            at = end;
            if attrs.contains_key(attr) {
                let close = format!("</{name}>");
                let inner = html[end..].find(&close).map_or("", |i| &html[end..end + i]);
                out.push(Element {
                    attrs,
                    text: text_of(inner),
                });
            }
        }
        out
    }

    /// The one element with `attr="value"`, if exactly one.
    fn one(&self, attr: &str, value: &str) -> Option<Element> {
        let mut found: Vec<Element> = self
            .with(attr)
            .into_iter()
            .filter(|e| e.attr(attr) == value)
            .collect();
        (found.len() == 1).then(|| found.remove(0))
    }
}

/// Parses the start tag at `open` (`<name a="v" b>`): name, attributes, index after `>`.
fn start_tag(html: &str, open: usize) -> Option<(String, BTreeMap<String, String>, usize)> {
    let rest = &html[open + 1..];
    let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric())?;
    if name_len == 0 {
        return None; // a closing tag, comment or doctype
    }
    let name = rest[..name_len].to_ascii_lowercase();
    let mut attrs = BTreeMap::new();
    let mut i = open + 1 + name_len;
    loop {
        let tail = &html[i..];
        let skip = tail.len() - tail.trim_start().len();
        i += skip;
        let tail = &html[i..];
        if let Some(after) = tail.strip_prefix("/>").or_else(|| tail.strip_prefix('>')) {
            return Some((name, attrs, html.len() - after.len()));
        }
        let key_len = tail.find(|c: char| c == '=' || c == '>' || c.is_whitespace())?;
        if key_len == 0 {
            return None; // not a serialized attribute; never loop on it
        }
        let key = tail[..key_len].to_owned();
        i += key_len;
        if let Some(v) = html[i..].strip_prefix("=\"") {
            let end = v.find('"')?;
            attrs.insert(key, unescape(&v[..end]));
            i += 2 + end + 1;
        } else {
            attrs.insert(key, String::new());
        }
    }
}

fn text_of(inner: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    unescape(&text)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// What the first complete rendering must show; the reason it does not yet, else `None`.
fn incomplete(dom: &Dom, owner_id: &str, since_ms: u64) -> Option<String> {
    for id in ["good", "bad"] {
        if dom.one("data-changefeed", id).is_none() {
            return Some(format!("no single row for changefeed {id}"));
        }
    }
    let captures = dom.with("data-capture");
    let owners: Vec<&str> = captures
        .iter()
        .filter(|c| c.attr("data-owner") == "true")
        .map(|c| c.attr("data-capture"))
        .collect();
    if captures.len() != 3 || owners != [owner_id] {
        return Some(format!("captures {captures:?}, owner marks on {owners:?}"));
    }
    let marks = dom.with("data-owner-mark").len();
    if marks != 1 {
        return Some(format!("{marks} owner marks"));
    }
    let held: usize = dom
        .with("data-capture-tables")
        .iter()
        .filter(|e| e.attr("data-capture-tables") == "good")
        .filter_map(|e| e.attr("data-count").parse::<usize>().ok())
        .sum();
    if held != TABLES {
        return Some(format!("captures hold {held} of good's {TABLES} tables"));
    }
    let Some(error) = dom.one("data-error", "bad") else {
        return Some("no error shown for bad".into());
    };
    let time_ms: u64 = error.attr("data-error-time-ms").parse().unwrap_or(0);
    if time_ms < since_ms || !error.text.contains("not-a-dir") {
        return Some(format!("bad's error without its time or path: {error:?}"));
    }
    let samples = |id| {
        dom.one("data-series", id)
            .and_then(|g| g.attr("data-samples").parse::<usize>().ok())
    };
    if samples("good") < Some(2) {
        return Some(format!(
            "the chart has {:?} samples of good",
            samples("good")
        ));
    }
    None
}

fn lag_of(dom: &Dom, id: &str) -> Option<(String, String, String)> {
    let row = dom.one("data-changefeed", id)?;
    let series = dom.one("data-series", id)?;
    Some((
        row.attr("data-lag-ms").to_owned(),
        series.attr("data-samples").to_owned(),
        series.attr("data-last-lag-ms").to_owned(),
    ))
}

async fn owner_and_other(http: &reqwest::Client, ports: &[u16]) -> Option<(String, u16)> {
    let mut owner = None;
    let mut other = None;
    for &p in ports {
        let url = format!("http://127.0.0.1:{p}/api/v1/status");
        let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
        let id = v["id"].as_str().filter(|id| !id.is_empty())?.to_owned();
        if v["is_owner"] == true {
            owner = Some(id);
        } else {
            other = Some(p);
        }
    }
    Some((owner?, other?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_cluster_live_in_chromium() {
    let browser = Browser::find();
    let started = tokio::time::Instant::now();
    let etcd = EtcdHarness::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _servers = Servers(
        ports
            .iter()
            .map(|&p| server(&etcd.client_url(), p, dir.path()))
            .collect(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    wait_until(DEADLINE, "three captures, one the owner", || async {
        owner_and_other(&http, &ports).await.is_some()
    })
    .await;
    let (owner_id, page_port) = owner_and_other(&http, &ports).await.expect("roles");
    let since_ms = SystemClock.now_ms();

    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where the sink wants a directory").expect("blocker");
    for (id, sink) in [
        ("good", dir.path().join("good")),
        ("bad", blocker.join("sink")),
    ] {
        let create = json!({
            "changefeed_id": id,
            "sink_uri": format!("file://{}?protocol=canal-json", sink.display()),
        });
        let r = http
            .post(format!("http://127.0.0.1:{page_port}/api/v1/changefeeds"))
            .json(&create)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 202, "create {id}: {:?}", r.text().await);
    }

    served_by_every_capture(&http, &ports).await;

    let url = format!("http://127.0.0.1:{page_port}/dashboard");
    let first = render_until_complete(&browser, &url, &owner_id, since_ms).await;
    let first_lag = lag_of(&first, "good").expect("good's lag");
    let later = Mutex::new(None);
    wait_until(RENDER_DEADLINE, "good's lag and chart move", || async {
        let lag = lag_of(&browser.dom(&url).await, "good");
        eprintln!("good's (lag ms, samples, last sampled lag ms): {first_lag:?} then {lag:?}");
        // Both the lag shown and the chart's series, so neither is a frozen copy.
        let moved = lag
            .as_ref()
            .is_some_and(|l| l.0 != first_lag.0 && l.1 != first_lag.1);
        *later.lock() = lag;
        moved
    })
    .await;
    println!(
        "good: (lag ms, samples, last sampled lag ms) {first_lag:?} -> {:?}",
        later.lock()
    );

    let shot = artifact_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&url, &shot).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot at {}: {} bytes",
        shot.display(),
        png.len()
    );
    println!(
        "screenshot: {}; test took {:.1} s",
        shot.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Any capture answers the page's data (read through etcd, like the API), the page loads
/// nothing from another host, and its CSP says so.
async fn served_by_every_capture(http: &reqwest::Client, ports: &[u16]) {
    for &p in ports {
        let page = http
            .get(format!("http://127.0.0.1:{p}/dashboard"))
            .send()
            .await
            .expect("GET /dashboard");
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        let html = page.text().await.expect("page");
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "{html}"
        );
        wait_until(DEADLINE, "both changefeeds in /dashboard/data", || async {
            let url = format!("http://127.0.0.1:{p}/dashboard/data");
            let Ok(r) = http.get(url).send().await else {
                return false;
            };
            let v: Value = r.json().await.unwrap_or_default();
            let ids: Vec<&str> = v["changefeeds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["id"].as_str())
                .collect();
            ids == ["bad", "good"] && v["captures"].as_array().is_some_and(|c| c.len() == 3)
        })
        .await;
    }
    let bad = http
        .get(format!(
            "http://127.0.0.1:{}/dashboard/data?since=soon",
            ports[0]
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(bad.status(), 400);
}

async fn render_until_complete(browser: &Browser, url: &str, owner: &str, since: u64) -> Dom {
    let complete = Mutex::new(None);
    wait_until(
        RENDER_DEADLINE,
        "a complete rendering of the dashboard",
        || async {
            let dom = browser.dom(url).await;
            match incomplete(&dom, owner, since) {
                Some(why) => {
                    // Shown only if the test fails: the trail of what was missing.
                    eprintln!("rendering incomplete: {why}");
                    false
                }
                None => {
                    *complete.lock() = Some(dom);
                    true
                }
            }
        },
    )
    .await;
    complete.into_inner().expect("a complete rendering")
}

/// `target/test-artifacts/` (beside `target/tmp`, which cargo gives integration tests).
fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}
