//! `drop_many_tables`: many tables dropped in one DDL leave the changefeed, the tables
//! created after them replicate, and the data is right.
//!
//! TiCDC's script starts one capture and a changefeed, then upstream creates two tables,
//! drops both in one statement, creates two tables of the same names with another schema,
//! writes a row into each, and creates a table `c`; it waits for `c` downstream and checks the
//! data with sync_diff. Here: one capture and a changefeed over one demo table; ten tables
//! are created, written to, and dropped in one DDL at the same ts; two new tables are created
//! and written to; then a finish-mark table. The test asserts that the finish mark reaches
//! the sink, that no capture holds a dropped table any more, and that `cdc verify` finds 0
//! mismatches past the finish mark. The demo upstream names a table by its id, so a new
//! table cannot take a dropped one's name: `drop_many_tables_recreate_same_name` is the
//! ignored gap.

use std::time::Duration;

use crate::common::cluster::{demo_upstream_ddl, ts_from_now, Cluster, ClusterSpec, FAST_TICKS};

/// Created at +1 s, all dropped at +3 s.
const DROPPED: std::ops::RangeInclusive<i64> = 2..=11;
/// Created after the drop.
const RECREATED: [i64; 2] = [12, 13];
const FINISH_MARK: i64 = 14;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_many_tables() {
    let (first, last) = (DROPPED.start(), DROPPED.end());
    let dropped = format!("{first}-{last}");
    let recreated = format!("{}-{}", RECREATED[0], RECREATED[1]);
    let ddl = [
        (format!("create:{dropped}"), 1_000),
        (format!("drop:{dropped}"), 3_000),
        (format!("create:{recreated}"), 3_500),
        (format!("create:{FINISH_MARK}"), 4_500),
    ];
    let ddl: Vec<(&str, i64)> = ddl.iter().map(|(op, at)| (op.as_str(), *at)).collect();
    let mut spec = ClusterSpec::new(
        1,
        demo_upstream_ddl(1, 50, &ddl),
        "/t/scenario/drop_many_tables",
    );
    spec.config_toml = Some(FAST_TICKS.to_owned());
    let cluster = Cluster::start(spec).await;
    cluster.create("drops", ts_from_now(-1_000), &[]);

    cluster
        .wait_sink_table("drops", FINISH_MARK, Duration::from_secs(30))
        .await;
    let t = ts_from_now(1_000);
    cluster
        .wait_sink_checkpoint("drops", t, Duration::from_secs(30))
        .await;
    for table in DROPPED {
        assert!(
            cluster.sink_has_table("drops", table),
            "t{table} replicated before its drop"
        );
    }
    let held: Vec<i64> = cluster
        .tables_by_capture("drops")
        .into_values()
        .flatten()
        .collect();
    assert_eq!(
        held,
        [1, RECREATED[0], RECREATED[1], FINISH_MARK],
        "the dropped tables are released, the new ones held"
    );
    cluster.verify("drops", t);
}

/// TiCDC re-creates the dropped tables under their old names with another schema; the demo
/// upstream names tables by id (`t<id>`, ids never reused), so a name cannot come back.
#[tokio::test]
#[ignore = "gap: the demo upstream cannot create a table under a dropped table's name (tables are named t<id>, one schema)"]
async fn drop_many_tables_recreate_same_name() {
    // Fails when run with --ignored: there is nothing to run until the upstream can do it.
    unimplemented!("the demo upstream cannot reuse a dropped table's name");
}
