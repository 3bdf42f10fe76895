//! `gc_safepoint`: the owner's service GC safe point in PD follows the changefeeds.
//!
//! TiCDC's script (with a failpoint that makes the owner update the safe point every 500 ms
//! instead of every minute) creates a changefeed, checks the data with sync_diff, and
//! asserts: the `ticdc` service safe point moves forward; after a pause it stays equal (3 s);
//! after resume it moves forward again; with the changefeed paused, a second changefeed
//! (`normal`) does not move it; after the paused changefeed is removed it moves forward; after
//! the last changefeed is removed it is gone.
//!
//! Here: one capture on a PD stand-in in front of etcd, the safe point read from PD's etcd
//! key. `gc_safepoint` asserts what rcdc's owner can show without a faster update interval:
//! a safe point is set below the checkpoint, it stays equal while the changefeed is paused
//! and while a second changefeed runs beside the paused one (and stays at or below the paused
//! one's checkpoint), and it is removed once the last changefeed is removed; `cdc verify`
//! finds 0 mismatches. The forward moves need the update interval TiCDC injects, which rcdc
//! has no setting or failpoint for (its owner pushes a higher safe point once a minute):
//! `gc_safepoint_forward_needs_gc_update_interval_setting`, ignored.

use std::time::Duration;

use rcdc_reactor::store::MetaStore;
use serde_json::Value;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
use crate::common::standin::Standin;
use crate::common::{wait_until, DEADLINE};

const STANDIN: &str = env!("CARGO_BIN_EXE_cdc-standin");
const PREFIX: &str = "/t/scenario/gc_safepoint";
/// The owner's service id under [`PREFIX`] (`ticdc` plus the prefix, README `unsafe`).
const SERVICE: &str = "ticdc-t-scenario-gc_safepoint";
/// How long "stays equal" is watched (TiCDC: three 1 s samples).
const STABLE: Duration = Duration::from_millis(1_500);

/// One capture on a one-member PD stand-in.
async fn start() -> (Cluster, Standin) {
    let mut spec = ClusterSpec::new(0, demo_upstream(2, 50), PREFIX);
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    let standin = Standin::start(STANDIN, &cluster.pd(), 1, cluster.dir.path(), &[]);
    cluster.pd_override = Some(standin.pd_arg());
    cluster.add_capture();
    cluster.wait_captures(1).await;
    cluster.wait_owner().await;
    (cluster, standin)
}

/// The service safe point PD holds for the cluster (None when there is none).
async fn safe_point(cluster: &Cluster, standin: &Standin) -> Option<u64> {
    let key = standin.service_safe_point_key(SERVICE);
    let (kvs, _) = cluster
        .etcd
        .store()
        .await
        .get_prefix(&key)
        .await
        .expect("read PD's safe points");
    let kv = kvs.iter().find(|kv| kv.key == key)?;
    serde_json::from_slice::<Value>(&kv.value).ok()?["safe_point"].as_u64()
}

async fn wait_safe_point(cluster: &Cluster, standin: &Standin) -> u64 {
    wait_until(DEADLINE, "a service safe point", || async {
        safe_point(cluster, standin).await.is_some()
    })
    .await;
    safe_point(cluster, standin).await.unwrap_or_default()
}

/// Asserts the safe point stays `expected` for [`STABLE`] (sampled every 100 ms).
async fn assert_stable(cluster: &Cluster, standin: &Standin, expected: u64, what: &str) {
    let end = tokio::time::Instant::now() + STABLE;
    while tokio::time::Instant::now() < end {
        let now = safe_point(cluster, standin).await;
        assert_eq!(now, Some(expected), "{what}: the safe point moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn checkpoint(cluster: &Cluster, id: &str) -> u64 {
    cluster.query(id)["status"]["checkpoint-ts"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_safepoint() {
    let (cluster, standin) = start().await;
    cluster.create("gc1", ts_from_now(-2_000), &[]);
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("gc1", t, Duration::from_secs(20))
        .await;
    cluster.verify("gc1", t);
    let first = wait_safe_point(&cluster, &standin).await;
    assert!(
        first < checkpoint(&cluster, "gc1"),
        "the safe point {first} is below the checkpoint"
    );

    cluster.cli_ok(&["changefeed", "pause", "-c", "gc1"]);
    cluster.wait_state("gc1", "stopped", DEADLINE).await;
    let paused = wait_safe_point(&cluster, &standin).await;
    assert_stable(&cluster, &standin, paused, "gc1 paused").await;

    cluster.cli_ok(&["changefeed", "resume", "-c", "gc1"]);
    cluster.wait_state("gc1", "normal", DEADLINE).await;
    cluster.cli_ok(&["changefeed", "pause", "-c", "gc1"]);
    cluster.wait_state("gc1", "stopped", DEADLINE).await;

    cluster.create("gc2", ts_from_now(-1_000), &[]);
    cluster.wait_state("gc2", "normal", DEADLINE).await;
    let held = wait_safe_point(&cluster, &standin).await;
    assert_stable(&cluster, &standin, held, "gc1 paused, gc2 running").await;
    let paused_checkpoint = checkpoint(&cluster, "gc1");
    assert!(
        held < paused_checkpoint,
        "the paused gc1 (checkpoint {paused_checkpoint}) still holds GC at {held}"
    );

    cluster.cli_ok(&["changefeed", "remove", "-c", "gc1"]);
    cluster.cli_ok(&["changefeed", "remove", "-c", "gc2"]);
    wait_until(DEADLINE, "the service safe point is removed", || async {
        safe_point(&cluster, &standin).await.is_none()
    })
    .await;
}

/// TiCDC's forward checks: with its 500 ms update interval, the safe point moves while a
/// changefeed runs, again after resume, and after the paused changefeed that held it back is
/// removed. rcdc's owner pushes a higher safe point once a minute, with no setting or
/// failpoint to shorten it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rcdc has no GC safe point update interval setting or failpoint (TiCDC's \
            InjectGcSafepointUpdateInterval); its owner moves the safe point forward once a \
            minute, past this scenario's budget"]
async fn gc_safepoint_forward_needs_gc_update_interval_setting() {
    let (cluster, standin) = start().await;
    cluster.create("fwd", ts_from_now(-2_000), &[]);
    let first = wait_safe_point(&cluster, &standin).await;
    wait_until(
        Duration::from_secs(10),
        "the safe point moves forward",
        || async {
            safe_point(&cluster, &standin)
                .await
                .is_some_and(|now| now > first)
        },
    )
    .await;
}
