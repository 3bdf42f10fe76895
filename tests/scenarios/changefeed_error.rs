//! `changefeed_error`: a changefeed whose errors persist is marked, and can be removed.
//!
//! TiCDC's script has four parts, each with an owner failpoint:
//! 1. a new changefeed fails once with a non-retryable error: state `failed` with
//!    `ErrStartTsBeforeGC`; `changefeed resume` makes it replicate (sync_diff, twice);
//! 2. the capture is killed (no capture left) and restarted with a retryable error injected
//!    at every changefeed start: state `error` with "failpoint injected retriable error";
//!    `changefeed remove` leaves no changefeed;
//! 3. an injected DDL execution error: state `error` with `[CDC:ErrExecDDLFailed]`;
//! 4. an injected actual GC safe point of i64::MAX: state `failed` with `ErrStartTsBeforeGC`.
//!
//! `changefeed_error` ports part 2 with rcdc's `sink-write` failpoint (every write fails,
//! so the changefeed keeps erroring): replicate and verify first, stop the capture until none
//! is registered, restart it with the failpoint, and the changefeed is `error` with the
//! injected message; after `changefeed remove` the list is empty. Parts 1, 3 and 4 need what
//! rcdc lacks and are ignored tests naming the gap.
#[cfg(feature = "failpoints")]
use std::time::Duration;

#[cfg(feature = "failpoints")]
use serde_json::Value;

#[cfg(feature = "failpoints")]
use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
#[cfg(feature = "failpoints")]
use crate::common::{wait_until, DEADLINE};

#[cfg(feature = "failpoints")]
const MESSAGE: &str = "failpoint injected retriable error";

#[cfg(feature = "failpoints")]
fn error_message(q: &Value) -> String {
    q["info"]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changefeed_error() {
    let mut spec = ClusterSpec::new(1, demo_upstream(2, 50), "/t/scenario/changefeed_error");
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.create("err", ts_from_now(-2_000), &[]);
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("err", t, Duration::from_secs(20))
        .await;
    cluster.verify("err", t);

    cluster.terminate(0).await;
    cluster.wait_captures(0).await;
    cluster.spec.failpoints = Some(format!("sink-write=return({MESSAGE})"));
    cluster.add_capture();
    wait_until(
        Duration::from_secs(30),
        "the changefeed is error with the injected message",
        || async {
            let q = cluster.query("err");
            q["info"]["state"] == "error" && error_message(&q).contains(MESSAGE)
        },
    )
    .await;
    cluster.cli_ok(&["changefeed", "remove", "-c", "err"]);
    wait_until(DEADLINE, "no changefeed is left", || async {
        cluster.changefeed_count() == 0
    })
    .await;
}

/// Part 1: a changefeed that fails once at its start is `failed`, and resumes.
#[tokio::test]
#[ignore = "rcdc has no failpoint that fails a new changefeed once with a non-retryable \
            error (TiCDC's NewChangefeedNoRetryError); its sink failpoints only make a \
            changefeed `error`, which retries by itself"]
async fn changefeed_error_failed_then_resume_needs_new_changefeed_failpoint() {
    panic!("needs a failpoint that fails a changefeed's start permanently");
}

/// Part 3: a failed DDL puts the changefeed in `error` with `ErrExecDDLFailed`.
#[tokio::test]
#[ignore = "rcdc's owner retries a failed DDL without marking the changefeed (owner-ddl \
            failpoint: 'DDL query failed; retrying'), and no sink executes DDL that could \
            fail, so there is no ErrExecDDLFailed state to observe"]
async fn changefeed_error_ddl_needs_ddl_execution_error_state() {
    panic!("needs an error state for DDL execution failures");
}

/// Part 4: an actual GC safe point past the start-ts fails the changefeed.
#[tokio::test]
#[ignore = "rcdc has no failpoint to inject PD's actual GC safe point (TiCDC's \
            InjectActualGCSafePoint); the real path (GC passes a checkpoint) is covered by \
            tests/pd.rs a_changefeed_whose_checkpoint_pd_gc_passed_fails_with_snapshot_lost"]
async fn changefeed_error_gc_needs_actual_safe_point_failpoint() {
    panic!("needs an injected actual GC safe point");
}
