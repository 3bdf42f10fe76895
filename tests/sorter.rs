//! The sorter's disk spill on real processes and a real etcd (issue #14): a table whose slices
//! outgrow `per-table-memory-quota` spills runs under `<data-dir>/tmp/sorter` and still
//! verifies clean; a clean exit removes the files; a capture SIGKILLed mid-spill leaves them,
//! and the next start on the same data dir removes them (saying how many bytes) and loses
//! nothing.
//!
//! The scripted scenario `one_table_at_a_million_rows_per_second` (`scripts/sorter-spill`,
//! ignored here) is the acceptance run: its figures are in `benches/README.md`.
// The demo upstream and the checkpoint are wall-clock times, as an operator sees them.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{now_ms, ts_from_now, Cluster, ClusterSpec};
use common::wait_until;

/// Catching up on a debug build, on a CI machine shared with other tests.
const CATCH_UP: Duration = Duration::from_secs(120);
/// 6 MiB, the smallest quota TiCDC accepts: a 1-second slice of 30,000 rows does not fit.
const SMALL_QUOTA: u64 = 6 << 20;

/// One capture with `quota`, on one demo table at `rate` rows/s.
fn spec(prefix: &str, quota: u64, rate: u64) -> ClusterSpec {
    let upstream = format!(
        "demo://?tables=1&rows-per-second={rate}&key-space=50000&seed=11&start={}&retention=none",
        now_ms() - 60_000
    );
    let mut spec = ClusterSpec::new(1, upstream, prefix);
    spec.config_toml = Some(format!("per-table-memory-quota = {quota}\n"));
    spec
}

fn sort_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp").join("sorter")
}

/// Process directories in the sort dir and the `.run` files (count, bytes) in each.
fn sort_dir_listing(sort_dir: &Path) -> Vec<(String, usize, u64)> {
    let Ok(dirs) = std::fs::read_dir(sort_dir) else {
        return vec![];
    };
    let mut out: Vec<(String, usize, u64)> = dirs
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let runs: Vec<u64> = std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".run"))
                .filter_map(|f| f.metadata().ok().map(|m| m.len()))
                .collect();
            (
                e.file_name().to_string_lossy().into_owned(),
                runs.len(),
                runs.iter().sum(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `rcdc_sorter_spilled_runs_total` of capture `i` (0 while it does not answer).
async fn spilled_runs(cluster: &Cluster, i: usize) -> u64 {
    cluster
        .metrics(i)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("rcdc_sorter_spilled_runs_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_past_its_quota_spills_and_verifies_and_a_clean_exit_removes_the_files() {
    let mut cluster = Cluster::start(spec("/t/sorter/clean", SMALL_QUOTA, 30_000)).await;
    // Ten seconds behind: the pipeline catches up in 1-second slices of 30,000 rows.
    cluster.create("spill", ts_from_now(-10_000), &[]);
    let t = ts_from_now(2_000);
    cluster.wait_sink_checkpoint("spill", t, CATCH_UP).await;
    let runs = spilled_runs(&cluster, 0).await;
    assert!(
        runs > 0,
        "the catch-up slices spilled: {runs} runs\n{}",
        cluster.logs()
    );
    assert_eq!(cluster.query("spill")["info"]["state"], "normal");
    cluster.verify("spill", t);

    let sorter = sort_dir(cluster.data_dir(0));
    let listing = sort_dir_listing(&sorter);
    assert_eq!(listing.len(), 1, "one process directory: {listing:?}");
    assert!(listing[0].0.starts_with("rcdc-"), "{listing:?}");
    // A clean exit (SIGTERM) removes it.
    cluster.terminate(0).await;
    assert_eq!(sort_dir_listing(&sorter), vec![], "{}", cluster.logs());
    assert!(
        cluster.log(0).contains("removed the sorter's files"),
        "{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_killed_mid_spill_leaves_files_that_the_next_start_removes() {
    let mut cluster = Cluster::start(spec("/t/sorter/crash", SMALL_QUOTA, 30_000)).await;
    cluster.create("crash", ts_from_now(-30_000), &[]);
    let sorter = sort_dir(cluster.data_dir(0));
    wait_until(CATCH_UP, "a spilled run is on disk", || async {
        sort_dir_listing(&sorter)
            .iter()
            .any(|(_, runs, _)| *runs > 0)
    })
    .await;
    cluster.kill(0);
    let left = sort_dir_listing(&sorter);
    let left_bytes: u64 = left.iter().map(|(_, _, b)| b).sum();
    assert!(left_bytes > 0, "SIGKILL left the runs: {left:?}");

    // The next capture on the same data dir removes them, says so, and loses nothing.
    let next = cluster.add_capture_on(cluster.data_dir(0).to_path_buf());
    wait_until(
        Duration::from_secs(30),
        "the next start reports the stale files",
        || async { cluster.log(next).contains("left by 1 stopped process(es)") },
    )
    .await;
    let log = cluster.log(next);
    assert!(
        log.contains(&format!("removed {left_bytes} bytes of sorter files")),
        "the bytes are named ({left:?}):\n{log}"
    );
    assert!(
        sort_dir_listing(&sorter)
            .iter()
            .all(|(dir, _, _)| !left.iter().any(|(old, _, _)| old == dir)),
        "the dead process's directory is gone"
    );
    let t = ts_from_now(2_000);
    cluster.wait_sink_checkpoint("crash", t, CATCH_UP).await;
    cluster.verify("crash", t);
}

/// The acceptance run of issue #14 (`scripts/sorter-spill`): one demo table at 1,000,000
/// rows/s with a 16 MiB quota for `RCDC_SORTER_SECONDS` (60) on the `cdc` at `RCDC_SORTER_CDC`
/// (a release build). The capture keeps running and spills, its RSS stays under quota +
/// 64 MiB, and `cdc verify` finds 0 mismatches at the checkpoint reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a scripted scenario (scripts/sorter-spill): a minute at 1M rows/s on a release build"]
async fn one_table_at_a_million_rows_per_second() {
    const QUOTA: u64 = 16 << 20;
    let seconds: u64 = std::env::var("RCDC_SORTER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut spec = spec("/t/sorter/fast", QUOTA, 1_000_000);
    spec.upstream = spec
        .upstream
        .replace("key-space=50000", "key-space=1000000");
    if let Ok(cdc) = std::env::var("RCDC_SORTER_CDC") {
        spec.cdc = PathBuf::from(cdc);
    }
    let mut cluster = Cluster::start(spec).await;
    let pid = cluster.captures[0].child.id();
    let began = now_ms();
    cluster.create("fast", ts_from_now(0), &[]);
    let mut max_rss_kib = 0u64;
    while now_ms() < began + seconds * 1_000 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        max_rss_kib = max_rss_kib.max(rss);
        assert!(
            cluster.is_running(0),
            "the capture keeps running:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let q = cluster.query("fast");
    let runs = spilled_runs(&cluster, 0).await;
    let checkpoint = cluster.sink_checkpoint("fast");
    let lag_ms = now_ms().saturating_sub(checkpoint.physical_ms());
    let replicated_ms = checkpoint.physical_ms().saturating_sub(began);
    println!(
        "sorter-spill: {seconds} s at 1,000,000 rows/s, quota 16 MiB: max RSS {:.1} MiB, {runs} runs spilled, \
         checkpoint {:.1} s of upstream time replicated ({:.0} rows/s), lag {:.1} s at the end, state {}",
        max_rss_kib as f64 / 1024.0,
        replicated_ms as f64 / 1000.0,
        replicated_ms as f64 * 1000.0 / seconds as f64,
        lag_ms as f64 / 1000.0,
        q["info"]["state"]
    );
    assert_eq!(q["info"]["state"], "normal", "{q}");
    assert!(q["info"]["error"].is_null(), "{q}");
    assert!(runs > 0, "it spilled");
    assert!(
        max_rss_kib * 1024 <= QUOTA + (64 << 20),
        "RSS {max_rss_kib} KiB over quota + 64 MiB"
    );
    let verified = cluster.verify("fast", checkpoint);
    println!(
        "sorter-spill: {}",
        verified.lines().last().unwrap_or_default()
    );
}
