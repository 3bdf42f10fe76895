//! `multi_changefeed`: two changefeeds on one upstream, one with old values and one without,
//! each gets the row images its config asks for.
//!
//! TiCDC's script starts one capture and two changefeeds into a blackhole sink, one with
//! `enable-old-value = true` and one with `false`; upstream it inserts a row, updates it and
//! deletes it, then greps the log for the emitted rows: an UPDATE with pre-columns and one
//! without, a DELETE with its complete pre-image and one with only the handle. Here: one
//! capture, the same two changefeed configs, each into its own file sink (canal-json), on a
//! demo table whose workload inserts, updates and deletes. The test asserts that the
//! old-value changefeed has UPDATEs whose `old` is the whole previous row and DELETEs with
//! the whole removed row, that the other has UPDATEs with `old` null, and that `cdc verify`
//! (with the matching `--enable-old-value`) finds 0 mismatches in both. Unlike TiCDC, rcdc's
//! DELETE carries the whole removed row with old values off too (README, "The file sink's
//! output"), so the handle-only DELETE is not asserted.

use std::time::Duration;

use serde_json::Value;

use crate::common::cluster::{demo_upstream, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

/// The demo table's columns: an UPDATE's or DELETE's complete image has them all.
fn is_whole_row(rows: &Value) -> bool {
    rows.as_array().is_some_and(|rows| {
        !rows.is_empty()
            && rows.iter().all(|r| {
                r.as_object()
                    .is_some_and(|o| o.len() > 1 && o.contains_key("id"))
            })
    })
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_changefeed() {
    let mut spec = ClusterSpec::new(1, demo_upstream(1, 100), "/t/scenario/multi_changefeed");
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let cluster = Cluster::start(spec).await;
    let with = cluster.write_file("changefeed1.toml", "enable-old-value = true\n");
    let without = cluster.write_file("changefeed2.toml", "enable-old-value = false\n");
    let start = ts_from_now(-1_000);
    for (id, config) in [("old-value-cf", &with), ("no-old-value-cf", &without)] {
        let config = config.to_str().expect("a UTF-8 temp path");
        cluster.create(id, start, &["--config", config]);
    }
    // 100 rows/s over 200 keys: every key is written again within ~2 s, and 1 in 8 deleted.
    let t = ts_from_now(4_000);
    for id in ["old-value-cf", "no-old-value-cf"] {
        cluster
            .wait_sink_checkpoint(id, t, Duration::from_secs(30))
            .await;
    }

    let old = cluster.sink_messages("old-value-cf");
    let updates = of_type(&old, "UPDATE");
    assert!(!updates.is_empty(), "old-value-cf has UPDATEs");
    assert!(
        updates.iter().all(|m| is_whole_row(&m["old"])),
        "every UPDATE carries its whole old row: {:?}",
        updates.iter().find(|m| !is_whole_row(&m["old"]))
    );
    let deletes = of_type(&old, "DELETE");
    assert!(!deletes.is_empty(), "old-value-cf has DELETEs");
    assert!(
        deletes.iter().all(|m| is_whole_row(&m["data"])),
        "every DELETE carries the whole removed row"
    );

    let plain = cluster.sink_messages("no-old-value-cf");
    let updates = of_type(&plain, "UPDATE");
    assert!(!updates.is_empty(), "no-old-value-cf has UPDATEs");
    assert!(
        updates.iter().all(|m| m["old"].is_null()),
        "no UPDATE carries an old row: {:?}",
        updates.iter().find(|m| !m["old"].is_null())
    );
    assert!(
        !of_type(&plain, "DELETE").is_empty(),
        "no-old-value-cf has DELETEs"
    );

    cluster.verify_with("old-value-cf", t, &["--enable-old-value", "true"]);
    cluster.verify_with("no-old-value-cf", t, &["--enable-old-value", "false"]);
}
