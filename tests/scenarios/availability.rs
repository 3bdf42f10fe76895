//! `availability`: owner, capture and processor high availability.
//!
//! TiCDC's script runs one changefeed over three tables and, one or two captures at a time:
//! - owner: killing the owner elects the other capture; SIGSTOP of the owner elects the other
//!   capture; a lone owner SIGSTOPped until `capture list` is empty recovers as owner after
//!   SIGCONT; with every capture killed and the task statuses deleted from etcd (stale task
//!   positions left), a new capture replicates inserts, updates and deletes; an owner that
//!   fails to campaign and to resign (failpoints) gives the ownership back; a 6 s sleep in the
//!   owner's tick while a capture dies does not stop replication;
//! - capture: after SIGKILL, and during SIGSTOP, of the working capture, the other replicates;
//!   a capture SIGSTOPped until its session expired replicates after SIGCONT;
//! - processor: a pause and resume through the v5 admin API (`/capture/owner/admin`,
//!   `admin-job` 1 then 2) replicates what was written meanwhile.
//!
//! Here, on one cluster with a 5 s session TTL and a demo upstream of three tables: SIGKILL
//! of the owner elects the other capture and rows keep arriving; SIGSTOP of the (new) owner
//! elects the other and rows keep arriving, and after SIGCONT the stopped capture registers
//! again; SIGSTOP of every capture until `capture list` is empty, the task statuses deleted
//! from etcd meanwhile, then SIGCONT: an owner is back and rows arrive; a pause and resume
//! through `/capture/owner/admin` go through `stopped` and `normal` and rows arrive. `cdc
//! verify` finds 0 mismatches after each step. The failpoint parts (campaign and resign
//! failures, a sleep in the owner's tick) are ignored tests naming the gap.

use std::time::Duration;

use rcdc_reactor::store::{MetaStore, Txn, TxnOp};

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
use crate::common::{wait_until, DEADLINE};

const CF: &str = "avail";

/// Waits until rows written after now reached the sink, then verifies there.
async fn rows_arrive(cluster: &Cluster, step: &str) {
    let t = ts_from_now(500);
    wait_until(
        Duration::from_secs(30),
        &format!("{step}: the sink checkpoint passes {t:?}"),
        || async { cluster.sink_checkpoint(CF) >= t },
    )
    .await;
    cluster.verify(CF, t);
}

/// Waits until the owner is one of `among`; returns it.
async fn wait_owner_among(cluster: &Cluster, among: &[usize], step: &str) -> usize {
    wait_until(
        DEADLINE,
        &format!("{step}: an owner among {among:?}"),
        || async { cluster.owner().is_some_and(|o| among.contains(&o)) },
    )
    .await;
    cluster.owner().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability() {
    let mut spec = ClusterSpec::new(2, demo_upstream(3, 50), "/t/scenario/availability");
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    let owner = cluster.wait_owner().await;
    cluster.create(CF, ts_from_now(-2_000), &[]);
    rows_arrive(&cluster, "start").await;

    // Kill the owner (also the working capture): the other is elected and replicates.
    let other = 1 - owner;
    cluster.kill(owner);
    wait_owner_among(&cluster, &[other], "owner killed").await;
    rows_arrive(&cluster, "owner killed").await;

    // Hang up the owner: a new capture is elected and replicates.
    let new = cluster.add_capture();
    cluster.wait_captures(2).await;
    cluster.signal(other, "STOP");
    wait_owner_among(&cluster, &[new], "owner stopped").await;
    rows_arrive(&cluster, "owner stopped").await;
    cluster.signal(other, "CONT");
    wait_until(DEADLINE, "the resumed capture registers again", || async {
        cluster.capture_id(other).is_some()
    })
    .await;
    assert!(cluster.is_running(other), "the resumed capture lives on");

    // Every capture hangs until its session expires; the task statuses go meanwhile (the
    // task positions stay, stale); both come back and replicate.
    let live = [other, new];
    for &i in &live {
        cluster.signal(i, "STOP");
    }
    wait_until(DEADLINE, "capture list is empty", || async {
        cluster.capture_count() == 0
    })
    .await;
    let store = cluster.etcd.store().await;
    let status_prefix = format!("{}/task/status/", cluster.spec.prefix);
    let (statuses, _) = store
        .get_prefix(&status_prefix)
        .await
        .expect("read task statuses");
    let deletes = statuses
        .iter()
        .map(|kv| TxnOp::Delete {
            key: kv.key.clone(),
        })
        .collect();
    store
        .txn(Txn {
            compares: vec![],
            success: deletes,
            failure: vec![],
        })
        .await
        .expect("delete the task statuses");
    for &i in &live {
        cluster.signal(i, "CONT");
    }
    wait_owner_among(&cluster, &live, "sessions expired").await;
    rows_arrive(&cluster, "sessions expired").await;

    // The processor stops and resumes through the v5 admin API.
    let http = reqwest::Client::new();
    let owner = cluster.owner().unwrap_or(other);
    for (job, state) in [("1", "stopped"), ("2", "normal")] {
        let r = http
            .post(format!("{}/capture/owner/admin", cluster.api(owner)))
            .form(&[("cf-id", CF), ("admin-job", job)])
            .send()
            .await
            .expect("POST /capture/owner/admin");
        assert!(r.status().is_success(), "admin-job {job}: {}", r.status());
        cluster.wait_state(CF, state, DEADLINE).await;
    }
    rows_arrive(&cluster, "paused and resumed").await;
}

/// TiCDC's `test_owner_retryable_error`: the new owner's campaign meets a compacted
/// revision, its run fails and its resign fails; the first capture becomes owner again and
/// the second exits.
#[tokio::test]
#[ignore = "rcdc has no failpoints for a compacted-revision campaign error, an owner run \
            error or a failed resign (TiCDC's capture-campaign-compacted-error, \
            owner-run-with-error, capture-resign-failed)"]
async fn availability_owner_retryable_error_needs_campaign_and_resign_failpoints() {
    panic!("needs campaign, owner-run and resign failpoints");
}

/// TiCDC's `test_gap_between_watch_capture`: the owner's tick sleeps 6 s while a capture
/// dies; every table still replicates inserts, updates and deletes.
#[tokio::test]
#[ignore = "rcdc has no failpoint that sleeps in the owner's tick (TiCDC's \
            sleep-in-owner-tick); the tick is pure and its IO has only owner-ddl"]
async fn availability_gap_between_watch_capture_needs_owner_tick_sleep_failpoint() {
    panic!("needs a sleep in the owner's tick");
}
