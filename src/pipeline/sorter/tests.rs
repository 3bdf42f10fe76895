use rcdc_state::TableId;

use super::*;
use crate::event::RowOp;

fn row(commit: u64, key: i64) -> RowChange {
    RowChange {
        table: TableId(1),
        schema: "demo".into(),
        table_name: "t1".into(),
        commit_ts: Ts(commit),
        start_ts: Ts(commit - 1),
        op: RowOp::Insert,
        key,
        columns: vec![
            ("id".into(), Value::Int(key)),
            ("v".into(), Value::Text("x".repeat(10))),
        ],
        pre_columns: None,
    }
}

fn keys(rows: &[RowChange]) -> Vec<(u64, i64)> {
    rows.iter().map(|r| (r.commit_ts.0, r.key)).collect()
}

#[test]
fn releases_only_up_to_resolved_in_commit_order() {
    let mut s = Sorter::new(1 << 20, Ts(0));
    for (c, k) in [(30, 1), (10, 2), (20, 3), (10, 4), (40, 5)] {
        s.push(TableEvent::Row(row(c, k))).expect("room");
    }
    assert!(
        s.take_ready().is_empty(),
        "nothing is released before a resolved ts"
    );
    s.push(TableEvent::Resolved(Ts(30))).expect("resolved");
    assert_eq!(
        keys(&s.take_ready()),
        vec![(10, 2), (10, 4), (20, 3), (30, 1)],
        "commit order; arrival order within a ts"
    );
    assert_eq!(s.len(), 1);
    s.push(TableEvent::Resolved(Ts(40))).expect("resolved");
    assert_eq!(keys(&s.take_ready()), vec![(40, 5)]);
    assert!(
        s.is_empty() && s.used_bytes() == 0,
        "memory accounting returns to zero"
    );
}

#[test]
fn the_resolved_ts_never_goes_back_and_late_rows_are_dropped() {
    let mut s = Sorter::new(1 << 20, Ts(100));
    s.push(TableEvent::Row(row(90, 1))).expect("room");
    s.push(TableEvent::Resolved(Ts(50))).expect("resolved");
    assert_eq!(s.resolved(), Ts(100));
    s.push(TableEvent::Resolved(Ts(200))).expect("resolved");
    assert!(
        s.take_ready().is_empty(),
        "a row at or before the start was already replicated"
    );
}

#[test]
fn the_byte_budget_pushes_back_and_resolving_frees_it() {
    let one = approx_size(&row(1, 1));
    let mut s = Sorter::new(one * 3, Ts(0));
    for c in 1..=3 {
        s.push(TableEvent::Row(row(c, c as i64))).expect("room");
    }
    let err = s.push(TableEvent::Row(row(4, 4))).expect_err("full");
    assert_eq!(err.limit, one * 3);
    s.push(TableEvent::Resolved(Ts(2)))
        .expect("a resolved marker is always accepted");
    assert_eq!(s.take_ready().len(), 2);
    s.push(TableEvent::Row(row(4, 4))).expect("room again");
}

#[test]
fn a_single_row_larger_than_the_budget_still_passes() {
    let mut s = Sorter::new(1, Ts(0));
    s.push(TableEvent::Row(row(5, 1)))
        .expect("an empty sorter takes one row");
    assert!(s.push(TableEvent::Row(row(6, 2))).is_err());
    s.push(TableEvent::Resolved(Ts(5))).expect("resolved");
    assert_eq!(s.take_ready().len(), 1);
}
