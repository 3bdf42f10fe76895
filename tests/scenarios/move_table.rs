//! `move_table`: an operator moves every table of one capture to another while rows flow,
//! and nothing is lost.
//!
//! TiCDC's script loads a table, starts one capture and a changefeed, adds two captures,
//! creates a `check1` table, and runs a mover that picks a capture holding tables and asks
//! the owner (`POST /capture/owner/move_table`, form `cf-id`, `target-cp-id`, `table-id`) to
//! move each of its tables to another capture, then waits until the source holds none. It
//! waits for `check1` downstream and checks with sync_diff, truncates the table and checks
//! again, creates `check2`, waits for it and checks a last time. Here: the same cluster and
//! route on six demo tables with rows flowing; `check1` and `check2` are tables created at
//! +2 s and +8 s. The test asserts that every move is accepted (2xx), that the moved tables
//! end on the target and none on the source, that both check tables reach the sink, and that
//! `cdc verify` finds 0 mismatches after `check1` and after `check2`. The demo upstream has
//! no TRUNCATE: `move_table_truncate_table` is the ignored gap.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};
use crate::common::{wait_until, DEADLINE};

const CHECK1: i64 = 7;
const CHECK2: i64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_table() {
    let check1 = format!("create:{CHECK1}");
    let check2 = format!("create:{CHECK2}");
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream_ddl(6, 50, &[(&check1, 2_000), (&check2, 8_000)]),
        "/t/scenario/move_table",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let mut cluster = Cluster::start(spec).await;
    cluster.create("move", ts_from_now(-1_000), &[]);
    cluster.add_capture();
    cluster.add_capture();
    cluster.wait_captures(3).await;

    cluster
        .wait_sink_table("move", CHECK1, Duration::from_secs(30))
        .await;
    let t1 = ts_from_now(500);
    cluster
        .wait_sink_checkpoint("move", t1, Duration::from_secs(30))
        .await;
    cluster.verify("move", t1);

    // The mover's choice: the first capture holding tables, and another one.
    let held = cluster.tables_by_capture("move");
    let (source, moved) = held
        .iter()
        .find(|(_, tables)| !tables.is_empty())
        .map(|(c, t)| (c.clone(), t.clone()))
        .expect("a capture holds tables");
    let target = (0..3)
        .filter_map(|i| cluster.capture_id(i))
        .find(|c| *c != source)
        .expect("another capture");
    let owner = cluster.wait_owner().await;
    for table in &moved {
        let table = table.to_string();
        let (status, body) = cluster
            .post_form(
                owner,
                "/capture/owner/move_table",
                &[
                    ("cf-id", "move"),
                    ("target-cp-id", &target),
                    ("table-id", &table),
                ],
            )
            .await;
        assert!(
            (200..300).contains(&status),
            "move of table {table}: {status} {body}"
        );
    }
    wait_until(
        DEADLINE,
        "the moved tables are on the target only",
        || async {
            let held = cluster.tables_by_capture("move");
            let on = |c: &str| held.get(c).cloned().unwrap_or_default();
            on(&target).is_superset(&moved) && on(&source).is_disjoint(&moved)
        },
    )
    .await;

    cluster
        .wait_sink_table("move", CHECK2, Duration::from_secs(30))
        .await;
    let t2 = ts_from_now(500);
    cluster
        .wait_sink_checkpoint("move", t2, Duration::from_secs(30))
        .await;
    cluster.verify("move", t2);
}

/// TiCDC truncates the moved table and checks again: a truncate gives the table a new id
/// under the same name. The demo upstream has CREATE and DROP only.
#[tokio::test]
#[ignore = "gap: the demo upstream has no TRUNCATE TABLE (only create and drop)"]
async fn move_table_truncate_table() {
    // Fails when run with --ignored: there is nothing to run until the upstream can do it.
    unimplemented!("the demo upstream cannot truncate a table");
}
