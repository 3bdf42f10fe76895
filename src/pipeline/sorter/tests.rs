use std::sync::Arc;

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

fn memory_only(quota: usize) -> SorterConfig {
    SorterConfig {
        table_quota: quota,
        ..SorterConfig::default()
    }
}

fn spilling(quota: usize, dir: &tempfile::TempDir) -> (SorterConfig, Arc<SortDir>) {
    let (sort_dir, _) = SortDir::open(dir.path()).expect("sort dir");
    let sort_dir = Arc::new(sort_dir);
    let config = SorterConfig {
        table_quota: quota,
        spill: Some(sort_dir.clone()),
        ..SorterConfig::default()
    };
    (config, sort_dir)
}

fn sorter(config: SorterConfig, start: u64) -> Sorter {
    Sorter::new(config, Ts(start), "cf-1".into())
}

/// Everything ready, as (commit, key), with the batch sizes seen.
fn drain(s: &mut Sorter, batch: usize) -> (Vec<(u64, i64)>, Vec<usize>) {
    let (mut rows, mut batches) = (Vec::new(), Vec::new());
    s.drain_ready(batch, |b: &[RowChange]| -> Result<(), ()> {
        batches.push(b.len());
        rows.extend(b.iter().map(|r| (r.commit_ts.0, r.key)));
        Ok(())
    })
    .expect("drain");
    (rows, batches)
}

fn files_in(dir: &SortDir) -> usize {
    std::fs::read_dir(dir.own())
        .expect("own dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".run"))
        })
        .count()
}

#[test]
fn releases_only_up_to_resolved_in_commit_order() {
    let mut s = sorter(memory_only(1 << 20), 0);
    for (c, k) in [(30, 1), (10, 2), (20, 3), (10, 4), (40, 5)] {
        s.push(TableEvent::Row(row(c, k))).expect("room");
    }
    assert!(
        drain(&mut s, 100).0.is_empty(),
        "nothing is released before a resolved ts"
    );
    s.push(TableEvent::Resolved(Ts(30))).expect("resolved");
    assert_eq!(
        drain(&mut s, 100).0,
        vec![(10, 2), (10, 4), (20, 3), (30, 1)],
        "commit order; arrival order within a ts"
    );
    assert_eq!(s.len(), 1);
    s.push(TableEvent::Resolved(Ts(40))).expect("resolved");
    assert_eq!(drain(&mut s, 100).0, vec![(40, 5)]);
    assert!(
        s.is_empty() && s.used_bytes() == 0,
        "memory accounting returns to zero"
    );
}

#[test]
fn the_resolved_ts_never_goes_back_and_late_rows_are_dropped() {
    let mut s = sorter(memory_only(1 << 20), 100);
    s.push(TableEvent::Row(row(90, 1))).expect("room");
    s.push(TableEvent::Resolved(Ts(50))).expect("resolved");
    assert_eq!(s.resolved(), Ts(100));
    s.push(TableEvent::Resolved(Ts(200))).expect("resolved");
    assert!(
        drain(&mut s, 100).0.is_empty(),
        "a row at or before the start was already replicated"
    );
}

#[test]
fn without_a_sort_dir_a_full_buffer_is_an_error_naming_the_quota() {
    let one = heap_size(&row(1, 1));
    let mut s = sorter(memory_only(one * 3), 0);
    for c in 1..=3 {
        s.push(TableEvent::Row(row(c, c as i64))).expect("room");
    }
    let err = s.push(TableEvent::Row(row(4, 4))).expect_err("full");
    assert!(
        matches!(err, SorterError::Full { limit, .. } if limit == one * 3),
        "{err}"
    );
    assert!(err.to_string().contains("no sort dir"), "{err}");
}

#[test]
fn a_single_row_larger_than_the_quota_still_passes() {
    let mut s = sorter(memory_only(1), 0);
    s.push(TableEvent::Row(row(5, 1)))
        .expect("an empty sorter takes one row");
    assert!(s.push(TableEvent::Row(row(6, 2))).is_err());
    s.push(TableEvent::Resolved(Ts(5))).expect("resolved");
    assert_eq!(drain(&mut s, 100).0.len(), 1);
}

#[test]
fn past_the_quota_runs_spill_and_merge_back_in_order_in_bounded_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = heap_size(&row(1, 1));
    let (config, dir) = spilling(one * 10, &tmp);
    let mut s = sorter(config, 0);
    // 100 rows in a scrambled commit order, with ties: 10 runs of 10, and the rest in memory.
    let rows: Vec<(u64, i64)> = (0..105).map(|i| (1 + (i * 37) % 50, i as i64)).collect();
    for &(c, k) in &rows {
        s.push(TableEvent::Row(row(c, k)))
            .expect("spills instead of failing");
        assert!(s.used_bytes() <= one * 10, "memory stays within the quota");
    }
    assert_eq!(s.runs(), 10);
    assert_eq!(files_in(&dir), 10);
    assert!(dir.on_disk_bytes() > 0);
    s.push(TableEvent::Resolved(Ts(25))).expect("resolved");
    let (first, batches) = drain(&mut s, 7);
    let mut expected: Vec<(u64, i64)> = rows.iter().copied().filter(|r| r.0 <= 25).collect();
    expected.sort_by_key(|&(c, k)| (c, k)); // arrival order = key order here
    assert_eq!(first, expected);
    assert!(batches.iter().all(|&b| b <= 7), "{batches:?}");

    s.push(TableEvent::Resolved(Ts(50))).expect("resolved");
    let (rest, _) = drain(&mut s, 1000);
    let mut expected: Vec<(u64, i64)> = rows.iter().copied().filter(|r| r.0 > 25).collect();
    expected.sort_by_key(|&(c, k)| (c, k));
    assert_eq!(rest, expected);
    assert!(s.is_empty());
    assert_eq!(files_in(&dir), 0, "consumed runs are removed");
    assert_eq!(dir.on_disk_bytes(), 0);
}

#[test]
fn dropping_a_sorter_removes_its_runs_and_gives_back_its_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = heap_size(&row(1, 1));
    let (config, dir) = spilling(one * 4, &tmp);
    let memory = config.memory.clone();
    let mut s = sorter(config, 0);
    for c in 1..=10 {
        s.push(TableEvent::Row(row(c, c as i64))).expect("push");
    }
    assert_eq!(files_in(&dir), 2);
    assert!(memory.used() > 0);
    drop(s);
    assert_eq!(files_in(&dir), 0);
    assert_eq!(memory.used(), 0);
    assert_eq!(dir.on_disk_bytes(), 0);
}

#[test]
fn the_process_bound_spills_a_table_below_its_own_quota() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut config, _dir) = spilling(64 << 20, &tmp);
    config.memory = Arc::new(SorterMemory::new(MIN_RUN_BYTES * 2));
    let mut a = sorter(config.clone(), 0);
    let mut b = sorter(config.clone(), 0);
    for c in 1..=20_000u64 {
        a.push(TableEvent::Row(row(c, 1))).expect("push a");
        b.push(TableEvent::Row(row(c, 2))).expect("push b");
    }
    assert!(a.runs() + b.runs() > 0, "the process bound forced spills");
    assert!(config.memory.used() <= MIN_RUN_BYTES * 2 + 2 * heap_size(&row(1, 1)));
    a.push(TableEvent::Resolved(Ts(20_000))).expect("resolved");
    assert_eq!(drain(&mut a, 512).0.len(), 20_000);
}

#[test]
fn the_estimate_counts_every_allocation() {
    let r = row(1, 1);
    let strings = ["demo", "t1", "id", "v", "xxxxxxxxxx"];
    let at_least = std::mem::size_of::<Entry>()
        + strings.iter().map(|s| s.len()).sum::<usize>()
        + 2 * std::mem::size_of::<(String, Value)>();
    assert!(heap_size(&r) >= at_least, "{} < {at_least}", heap_size(&r));
}
