use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rcdc_state::{TableId, Ts};

use super::*;
use crate::event::{RowChange, RowOp, TableEvent, Value};
use crate::upstream::{parse_upstream_uri, DdlKind, Upstream, UpstreamError};

type Image = Vec<(String, Value)>;

const START: u64 = DEFAULT_START_MS;

fn demo(uri: &str) -> DemoUpstream {
    match DemoUpstream::from_uri(uri) {
        Ok(d) => d,
        Err(e) => panic!("{uri}: {e}"),
    }
}

fn at(ms_after_start: u64) -> Ts {
    Ts::from_parts(START + ms_after_start, 0)
}

fn rows(events: &[TableEvent]) -> Vec<&RowChange> {
    events
        .iter()
        .filter_map(|e| match e {
            TableEvent::Row(r) => Some(r),
            TableEvent::Resolved(_) => None,
        })
        .collect()
}

fn events(d: &DemoUpstream, t: i64, after: Ts, upto: Ts) -> Vec<TableEvent> {
    match d.table_events(TableId(t), after, upto) {
        Ok(e) => e,
        Err(e) => panic!("table {t} ({after}, {upto}]: {e}"),
    }
}

/// Folds rows by key in commit order, as a sink consumer would.
fn fold(events: &[TableEvent]) -> BTreeMap<i64, Option<Image>> {
    let mut out = BTreeMap::new();
    for r in rows(events) {
        let image = (r.op != RowOp::Delete).then(|| r.columns.clone());
        out.insert(r.key, image);
    }
    out
}

#[test]
fn same_uri_same_events_and_any_start_regenerates_the_tail() {
    let uri = "demo://?tables=4&rows-per-second=500&key-space=64&txn-rows=3&seed=7&retention=none";
    let (a, b) = (demo(uri), demo(uri));
    let (lo, hi) = (at(0), at(3_000));
    for t in 1..=4 {
        let full = events(&a, t, lo, hi);
        assert_eq!(
            full,
            events(&b, t, lo, hi),
            "table {t}: two instances agree"
        );
        let n = rows(&full).len();
        assert!((1_494..=1_506).contains(&n), "≈ 500 rows/s for 3 s: {n}");
        // Regenerating from any ts yields exactly the tail of the full run.
        for mid_ms in [1, 999, 1_000, 1_777, 2_999] {
            let mid = at(mid_ms);
            let tail = events(&a, t, mid, hi);
            let expected: Vec<&RowChange> = rows(&full)
                .into_iter()
                .filter(|r| r.commit_ts > mid)
                .collect();
            assert_eq!(rows(&tail), expected, "table {t} from +{mid_ms} ms");
            // And slices concatenate to the whole.
            let mut joined = rows(&events(&a, t, lo, mid))
                .into_iter()
                .cloned()
                .collect::<Vec<_>>();
            joined.extend(rows(&tail).into_iter().cloned());
            assert_eq!(joined.iter().collect::<Vec<_>>(), rows(&full));
        }
    }
    let other = demo(&uri.replace("seed=7", "seed=8"));
    assert_ne!(
        events(&a, 1, lo, hi),
        events(&other, 1, lo, hi),
        "the seed matters"
    );
    assert_ne!(
        events(&a, 1, lo, hi)[..10],
        events(&a, 2, lo, hi)[..10],
        "tables differ"
    );
}

#[test]
fn events_are_ordered_within_the_range_and_end_resolved() {
    let d = demo("demo://?tables=2&rows-per-second=3000&key-space=10&txn-rows=4&retention=none");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..200 {
        let after = Ts(at(0).0 + rng.gen_range(0..5_000u64 << 18));
        let upto = Ts(after.0 + rng.gen_range(0..300u64 << 18));
        let evs = events(&d, 1, after, upto);
        assert_eq!(evs.last(), Some(&TableEvent::Resolved(upto)));
        assert_eq!(
            evs.iter()
                .filter(|e| matches!(e, TableEvent::Resolved(_)))
                .count(),
            1
        );
        let rs = rows(&evs);
        let mut keys_in_txn = BTreeSet::new();
        for (i, r) in rs.iter().enumerate() {
            assert!(r.commit_ts > after && r.commit_ts <= upto, "{r:?}");
            assert!(r.start_ts < r.commit_ts);
            assert_eq!((r.schema.as_str(), r.table_name.as_str()), ("demo", "t1"));
            assert_eq!(r.columns[0], ("id".to_owned(), Value::Int(r.key)));
            if i > 0 && rs[i - 1].commit_ts != r.commit_ts {
                assert!(rs[i - 1].commit_ts < r.commit_ts, "commit-ts order");
                keys_in_txn.clear();
            }
            if i > 0 && rs[i - 1].commit_ts == r.commit_ts {
                assert_eq!(rs[i - 1].start_ts, r.start_ts, "one txn, one start ts");
            }
            assert!(keys_in_txn.insert(r.key), "a txn writes a key once");
            assert!(keys_in_txn.len() <= 4);
        }
    }
    assert_eq!(
        d.table_events(TableId(1), at(5), at(4)),
        Err(UpstreamError::InvalidRange {
            after: at(5),
            upto: at(4)
        })
    );
    assert_eq!(
        events(&d, 1, at(7), at(7)),
        vec![TableEvent::Resolved(at(7))]
    );
}

#[test]
fn ops_are_consistent_from_the_beginning() {
    // Insert only when absent; update/delete only when present; a delete carries the row.
    for seed in [1u64, 2, 3] {
        let d = demo(&format!(
            "demo://?tables=1&rows-per-second=2000&key-space=50&txn-rows=5&seed={seed}&retention=none"
        ));
        let mut state: BTreeMap<i64, Image> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for r in rows(&events(&d, 1, Ts(0), at(10_000))) {
            *counts.entry(r.op).or_insert(0u32) += 1;
            match r.op {
                RowOp::Insert => assert!(state.insert(r.key, r.columns.clone()).is_none()),
                RowOp::Update => assert!(state.insert(r.key, r.columns.clone()).is_some()),
                RowOp::Delete => assert_eq!(state.remove(&r.key).as_ref(), Some(&r.columns)),
            }
        }
        let deletes = counts[&RowOp::Delete];
        assert!(
            (1_200..2_400).contains(&deletes),
            "≈ 9% of 20,000: {counts:?}"
        );
        assert!(counts[&RowOp::Insert] >= deletes && counts[&RowOp::Update] > 10_000);
    }
}

#[test]
fn pre_images_are_the_rows_replaced_and_the_oracle_agrees() {
    // Every UPDATE and DELETE carries the row the key held before it; an INSERT none.
    let d = demo("demo://?tables=1&rows-per-second=2000&key-space=50&txn-rows=5&retention=none");
    let mut state: BTreeMap<i64, Image> = BTreeMap::new();
    let mut updates = 0;
    for r in rows(&events(&d, 1, Ts(0), at(5_000))) {
        let before = state.get(&r.key).cloned();
        assert_eq!(r.pre_columns, before, "{r:?}");
        assert_eq!(d.row_before(TableId(1), r.key, r.commit_ts), before);
        if r.op == RowOp::Update {
            updates += 1;
        }
        match r.op {
            RowOp::Delete => state.remove(&r.key),
            _ => state.insert(r.key, r.columns.clone()),
        };
    }
    assert!(updates > 1_000, "{updates}");
}

#[test]
fn table_schema_versions_and_names_resolve() {
    let d = demo("demo://?tables=2&ddl=create:5@10s,drop:2@20s");
    let initial = d.table_schema(TableId(1)).expect("t1");
    assert_eq!(initial.version, Ts::from_parts(START, 0));
    let created = d.table_schema(TableId(5)).expect("t5");
    assert_eq!(
        created.version,
        d.ddl_events(Ts(0), at(15_000))[0].commit_ts
    );
    assert!(created.query.starts_with("CREATE TABLE `demo`.`t5`"));
    let names: Vec<&str> = created.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "v", "n"]);
    assert!(d.table_schema(TableId(9)).is_none());
    assert_eq!(d.table_id_of("demo", "t2"), Some(TableId(2)));
    assert_eq!(d.table_id_of("demo", "t5"), Some(TableId(5)));
    for (schema, table) in [
        ("demo", "t9"),
        ("other", "t1"),
        ("demo", "t01"),
        ("demo", "x1"),
    ] {
        assert_eq!(d.table_id_of(schema, table), None, "{schema}.{table}");
    }
}

#[test]
fn oracle_matches_the_folded_stream() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for (seed, kspace, rows_per_txn, rps) in [
        (1u64, 100u64, 1u64, 1000u64),
        (2, 37, 4, 777),
        (3, 5, 5, 200),
        (4, 1, 1, 50),
        (5, 1000, 7, 5000),
    ] {
        let d = demo(&format!(
            "demo://?tables=3&rows-per-second={rps}&key-space={kspace}&txn-rows={rows_per_txn}\
             &seed={seed}&retention=none&ddl=drop:3@2s"
        ));
        for _ in 0..40 {
            let t = rng.gen_range(1..=3i64);
            let after = Ts(at(0).0.saturating_sub(1 << 18) + rng.gen_range(0..4_000u64 << 18));
            let span = if rng.gen_bool(0.5) { 50u64 } else { 3_000 };
            let upto = Ts(after.0 + rng.gen_range(0..span << 18));
            let folded = fold(&events(&d, t, after, upto));
            let oracle = d.rows_in_window(TableId(t), after, upto);
            assert_eq!(oracle, folded, "seed {seed} t{t} ({after}, {upto}]");
            // Both oracle strategies agree wherever a window is non-empty.
            if let (Some(life), Some((lo, hi))) = (
                d.life(TableId(t)),
                d.life(TableId(t))
                    .and_then(|l| d.txns_in(TableId(t), &l, after, upto)),
            ) {
                assert_eq!(d.window_by_scan(TableId(t), lo, hi), oracle);
                assert_eq!(d.window_by_keys(TableId(t), &life, lo, upto), oracle);
            }
            // last_write agrees with the full history of a few keys.
            let history = events(&d, t, Ts(0), upto);
            for _ in 0..5 {
                let key = rng.gen_range(0..kspace as i64);
                let last = rows(&history).into_iter().rfind(|r| r.key == key);
                let expected = last.map(|r| (r.commit_ts, r.op, r.columns.clone()));
                assert_eq!(d.last_write(TableId(t), key, upto), expected, "key {key}");
            }
        }
    }
}

#[test]
fn oracle_ignores_keys_and_tables_it_does_not_have() {
    let d = demo("demo://?tables=2&key-space=10");
    assert_eq!(d.last_write(TableId(1), -1, at(10_000)), None);
    assert_eq!(d.last_write(TableId(1), 10, at(10_000)), None);
    assert_eq!(d.last_write(TableId(9), 0, at(10_000)), None);
    assert_eq!(
        d.last_write(TableId(1), 0, at(0)),
        None,
        "nothing before the epoch"
    );
    assert!(d.rows_in_window(TableId(9), at(0), at(10_000)).is_empty());
    assert!(d.last_write(TableId(1), 0, at(10_000)).is_some());
}

#[test]
fn ddl_schedule_drives_tables_and_streams() {
    let d = demo("demo://?tables=3&rows-per-second=100&ddl=create:17@30s,drop:3@1m,create:5-6@1m,drop:17@2m&retention=none");
    let set = |ts: Ts| {
        d.tables_at(ts)
            .map(|s| s.into_iter().map(|t| t.0).collect::<Vec<_>>())
    };
    assert_eq!(set(Ts(0)), Ok(vec![1, 2, 3]));
    assert_eq!(set(at(29_999)), Ok(vec![1, 2, 3]));
    assert_eq!(
        set(at(30_000)),
        Ok(vec![1, 2, 3]),
        "the DDL's logical part is 1"
    );
    assert_eq!(set(Ts(at(30_000).0 + 1)), Ok(vec![1, 2, 3, 17]));
    assert_eq!(set(at(60_001)), Ok(vec![1, 2, 5, 6, 17]));
    assert_eq!(set(at(120_001)), Ok(vec![1, 2, 5, 6]));

    let ddl = d.ddl_events(Ts(0), Ts::MAX);
    let summary: Vec<_> = ddl
        .iter()
        .map(|e| (e.kind, e.table.0, e.commit_ts))
        .collect();
    assert_eq!(
        summary,
        vec![
            (DdlKind::CreateTable, 17, Ts::from_parts(START + 30_000, 1)),
            (DdlKind::DropTable, 3, Ts::from_parts(START + 60_000, 1)),
            (DdlKind::CreateTable, 5, Ts::from_parts(START + 60_000, 2)),
            (DdlKind::CreateTable, 6, Ts::from_parts(START + 60_000, 3)),
            (DdlKind::DropTable, 17, Ts::from_parts(START + 120_000, 1)),
        ]
    );
    assert!(ddl[0].query.starts_with("CREATE TABLE `demo`.`t17`"));
    assert_eq!(
        d.ddl_events(ddl[0].commit_ts, ddl[2].commit_ts),
        ddl[1..3].to_vec()
    );
    assert_eq!(d.ddl_events(ddl[4].commit_ts, Ts::MAX), vec![]);

    // Table 17 writes only while it exists; table 3 stops at its drop.
    let t17 = events(&d, 17, Ts(0), at(200_000));
    let r17 = rows(&t17);
    assert_eq!(r17.len(), 9_000, "100 rows/s for 90 s");
    assert!(r17
        .iter()
        .all(|r| r.commit_ts > ddl[0].commit_ts && r.commit_ts < ddl[4].commit_ts));
    assert_eq!(r17[0].op, RowOp::Insert);
    let r3 = events(&d, 3, at(50_000), at(200_000));
    assert!(rows(&r3).iter().all(|r| r.commit_ts < ddl[1].commit_ts));
    assert_eq!(rows(&r3).len(), 1_000);
    assert_eq!(
        d.last_write(TableId(3), 0, at(1_000_000)),
        d.last_write(TableId(3), 0, at(60_000))
    );
    assert_eq!(
        d.table_events(TableId(4), at(0), at(1)),
        Err(UpstreamError::UnknownTable(TableId(4)))
    );
    assert_eq!(
        d.table_name(TableId(17)).map(|n| n.table),
        Some("t17".to_owned())
    );
    assert_eq!(d.table_name(TableId(4)), None);
}

#[test]
fn bad_ddl_schedules_are_rejected() {
    for (ddl, needle) in [
        ("create:2@1s", "already exists"),
        ("drop:9@1s", "does not exist"),
        ("create:9@2s,drop:9@1s", "does not exist"),
        ("drop:1@1s,drop:1@2s", "does not exist"),
        ("drop:1@1s,create:1@2s", "already exists"),
        ("rename:1@1s", "unknown DDL 'rename'"),
        ("create:9", "missing '@"),
        ("create:x@1s", "table id 'x'"),
        ("create:9@soon", "offset"),
        ("create:9-7@1s", "empty table range"),
    ] {
        let err = DemoUpstream::from_uri(&format!("demo://?tables=3&ddl={ddl}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("'ddl'") && err.contains(needle),
            "{ddl}: {err}"
        );
    }
}

#[test]
fn retention_loses_old_snapshots() {
    let d = demo("demo://?tables=1&retention=10s");
    assert!(d.table_events(TableId(1), at(5_000), at(15_000)).is_ok());
    let err = d.table_events(TableId(1), at(4_999), at(15_000));
    let Err(e @ UpstreamError::SnapshotLost { .. }) = err else {
        panic!("expected SnapshotLost, got {err:?}");
    };
    assert_eq!(
        e,
        UpstreamError::SnapshotLost {
            table: TableId(1),
            after: at(4_999),
            horizon: at(5_000),
            at: at(15_000),
            retention_ms: 10_000,
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("snapshot lost") && msg.contains("garbage-collected"),
        "{msg}"
    );
    assert!(d.check_snapshot(TableId(1), at(4_999), at(14_999)).is_ok());
    assert!(d.check_snapshot(TableId(1), at(4_999), at(15_000)).is_err());
    assert_eq!(d.gc_safe_point(START + 15_000), at(5_000));
    // No retention: nothing is ever lost.
    let keep = demo("demo://?tables=1&retention=none&rows-per-second=1");
    assert!(keep.table_events(TableId(1), Ts(0), at(1_000_000)).is_ok());
    assert_eq!(keep.gc_safe_point(START + 1_000_000), Ts(0));
}

#[test]
fn service_safe_points_answer_the_minimum_not_behind_gc() {
    let d = demo("demo://?retention=10s");
    let now = START + 60_000;
    let gc = d.gc_safe_point(now);
    assert_eq!(gc, at(50_000));
    assert_eq!(
        d.update_service_safe_point("ticdc", 60, at(55_000), now),
        Ok(at(55_000))
    );
    assert_eq!(
        d.update_service_safe_point("other", 60, at(52_000), now),
        Ok(at(52_000))
    );
    assert_eq!(
        d.update_service_safe_point("other", 0, Ts(0), now),
        Ok(at(55_000)),
        "removed"
    );
    // Behind GC: not stored; the answer shows the caller's snapshot is lost.
    let answer = d.update_service_safe_point("late", 60, at(40_000), now);
    assert_eq!(answer, Ok(at(55_000)));
    assert!(matches!(answer, Ok(min) if at(40_000) < min));
    // Expired after its TTL; then GC itself is the minimum.
    let later = now + 61_000;
    assert_eq!(
        d.update_service_safe_point("x", 0, Ts(0), later),
        Ok(d.gc_safe_point(later))
    );
}

#[test]
fn tso_composition() {
    let d = demo("demo://");
    assert_eq!(d.now(START), Ts(START << 18));
    assert_eq!(d.now(START).physical_ms(), START);
    // Row commit ts lie on the grid: 1000 rows/s in txns of 4 → a txn every 4 ms.
    let evs = events(&d, 1, at(1_000), at(2_000));
    let txns: BTreeSet<Ts> = rows(&evs).iter().map(|r| r.commit_ts).collect();
    assert_eq!(txns.len(), 250);
    let phys: Vec<u64> = txns.iter().map(|t| t.physical_ms() - START).collect();
    assert!(phys.windows(2).all(|w| w[1] - w[0] == 4), "{phys:?}");
}

#[test]
fn parse_upstream_uri_builds_a_demo_with_an_oracle() {
    let up = match parse_upstream_uri("demo://?tables=2&seed=5") {
        Ok(u) => u,
        Err(e) => panic!("{e}"),
    };
    let d = up.as_demo().map(|d| d.config().clone());
    assert_eq!(d.map(|c| (c.tables, c.seed)), Some((2, 5)));
}

#[test]
fn oversized_ranges_are_refused() {
    let d = demo("demo://?tables=1&rows-per-second=1000000&retention=none");
    let err = d.table_events(TableId(1), at(0), at(3_000));
    assert!(
        matches!(
            err,
            Err(UpstreamError::RangeTooLarge {
                limit: MAX_EVENTS_PER_CALL,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(d.table_events(TableId(1), at(0), at(1_000)).is_ok());
}

/// Throughput sanity figure (release build, one core, shared machine): table_events
/// ≈ 1.8 M rows/s; rows_in_window over 100,000 keys ≈ 60 ms. Run with
/// `cargo test --release --lib upstream::demo::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)]
fn throughput() {
    let d =
        demo("demo://?tables=1&rows-per-second=1000000&key-space=100000&txn-rows=8&retention=none");
    let t0 = std::time::Instant::now();
    let mut n = 0usize;
    for s in 0..10u64 {
        n += rows(&events(&d, 1, at(s * 1_000), at((s + 1) * 1_000))).len();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "table_events: {n} rows in {secs:.3} s = {:.0} rows/s",
        n as f64 / secs
    );
    let t0 = std::time::Instant::now();
    let mut k = 0usize;
    for s in 0..10u64 {
        k += d
            .rows_in_window(TableId(1), at(s * 1_000), at(s * 1_000 + 100))
            .len();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("rows_in_window (100k keys): {k} keys in {secs:.3} s");
}
