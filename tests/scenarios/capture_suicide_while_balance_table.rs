//! `capture_suicide_while_balance_table`: a capture's session ends while one of its tables
//! is being moved away and its sink lags; no row is lost.
//!
//! TiCDC's script starts two captures, the second with a failpoint that hangs its MySQL sink
//! once for a long time, creates a changefeed and four tables, inserts rows into a table the
//! second capture holds, moves that table to the first capture (`/capture/owner/move_table`),
//! then revokes the second capture's etcd lease, and checks with sync_diff.
//!
//! Here: two captures, the second started with `sink-flush=1*sleep(3000)` (its first sink
//! flush hangs 3 s, so its table lags behind the move's boundary); one changefeed over four
//! demo tables; one of the second capture's tables is moved to the first through the v1 API,
//! the second capture's lease is revoked, and: the moved table ends on the first capture,
//! every table is held exactly once, and `cdc verify` finds 0 mismatches.

#[cfg(feature = "failpoints")]
use std::time::Duration;

#[cfg(feature = "failpoints")]
use serde_json::json;

#[cfg(feature = "failpoints")]
use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TOML};
#[cfg(feature = "failpoints")]
use crate::common::{wait_until, DEADLINE};

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_suicide_while_balance_table() {
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream(4, 50),
        "/t/scenario/capture_suicide_while_balance_table",
    );
    spec.config_toml = Some(FAST_TOML.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.wait_owner().await;
    let first = cluster.wait_capture_id(0).await;
    cluster.spec.failpoints = Some("sink-flush=1*sleep(3000)".to_owned());
    let slow = cluster.add_capture();
    let slow_id = cluster.wait_capture_id(slow).await;

    cluster.create("bal", ts_from_now(-2_000), &[]);
    wait_until(DEADLINE, "the slow capture holds tables", || async {
        !cluster.processor_tables("bal", &slow_id).is_empty()
    })
    .await;
    let table = cluster.processor_tables("bal", &slow_id)[0];
    let moved = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/changefeeds/bal/tables/move_table",
            cluster.api(0)
        ))
        .json(&json!({"capture_id": first, "table_id": table}))
        .send()
        .await
        .expect("move_table");
    assert!(
        moved.status().is_success(),
        "move_table: {}",
        moved.status()
    );
    cluster.revoke_session(slow).await;

    wait_until(
        DEADLINE,
        "the moved table is on the first capture",
        || async { cluster.processor_tables("bal", &first).contains(&table) },
    )
    .await;
    let t = ts_from_now(1_500);
    cluster
        .wait_sink_checkpoint("bal", t, Duration::from_secs(30))
        .await;
    let processors = cluster.cli_ok(&["processor", "list"]);
    let mut held: Vec<i64> = Vec::new();
    for p in processors.as_array().into_iter().flatten() {
        let (cf, capture) = (p["changefeed-id"].as_str(), p["capture-id"].as_str());
        if let (Some("bal"), Some(capture)) = (cf, capture) {
            held.extend(cluster.processor_tables("bal", capture));
        }
    }
    held.sort_unstable();
    assert_eq!(
        held.len(),
        4,
        "every table held exactly once: {held:?} ({processors})"
    );
    held.dedup();
    assert_eq!(held.len(), 4, "no table held twice: {processors}");
    cluster.verify("bal", t);
}
