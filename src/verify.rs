//! Checking a file sink against the demo upstream's oracle (target-design §8): what
//! `cdc verify` reports.
//!
//! A changefeed carries the changes after its start, so the check covers the window
//! `(start, at]`: every key whose last upstream write at or before `at` lies in the window
//! must fold — by primary key, in commit-ts order, duplicates included — to exactly that
//! write's row (absent if it was a delete); no other key may appear.
//!
//! With old values on (the changefeed's `enable-old-value`), every UPDATE read back must also
//! carry the row it replaced, equal to the oracle's row just before its commit ts; with them
//! off, no UPDATE may carry one.

use std::collections::BTreeMap;
use std::path::Path;

use rcdc_state::{ChangefeedId, TableId, Ts};

use crate::event::RowOp;
use crate::sink::{fold_rows, read_table_files, DecodedRow};
use crate::upstream::demo::DemoUpstream;

/// The result for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    /// The table.
    pub table: TableId,
    /// Keys compared (written in the window upstream, or present in the sink).
    pub compared: usize,
    /// One line per mismatching key.
    pub mismatches: Vec<String>,
}

/// Compares the sink files of `changefeed` under `sink_root` with the oracle over
/// `(start, at]`, for every table that exists at `at` or has files. `old_value`: the
/// changefeed's `enable-old-value`.
pub fn verify(
    upstream: &DemoUpstream,
    sink_root: &Path,
    changefeed: &ChangefeedId,
    start: Ts,
    at: Ts,
    old_value: bool,
) -> Result<Vec<TableReport>, String> {
    let mut rows: BTreeMap<TableId, Vec<DecodedRow>> = BTreeMap::new();
    for (dir, table_rows) in read_table_files(sink_root, changefeed).map_err(|e| e.to_string())? {
        // Directories are named by table name and version; the demo names its tables by id.
        let table = upstream
            .table_id_of(&dir.schema, &dir.table)
            .ok_or_else(|| {
                format!(
                    "the sink has files of {}.{}, a table the demo upstream never had",
                    dir.schema, dir.table
                )
            })?;
        rows.entry(table).or_default().extend(table_rows);
    }
    compare(upstream, &rows, start, at, old_value)
}

/// Compares sink rows (any order, duplicates allowed) with the oracle over `(start, at]`, for
/// every table that exists at `at` or has rows.
pub fn compare(
    upstream: &DemoUpstream,
    rows: &BTreeMap<TableId, Vec<DecodedRow>>,
    start: Ts,
    at: Ts,
    old_value: bool,
) -> Result<Vec<TableReport>, String> {
    use crate::upstream::Upstream;
    let mut tables: Vec<TableId> = upstream
        .tables_at(at)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    tables.extend(rows.keys().copied());
    tables.sort();
    tables.dedup();
    let mut reports = Vec::new();
    for table in tables {
        let want = upstream.rows_in_window(table, start, at);
        let table_rows = rows.get(&table).map(Vec::as_slice).unwrap_or(&[]);
        let got = fold_rows(table_rows, at);
        let mut report = TableReport {
            table,
            compared: 0,
            mismatches: Vec::new(),
        };
        let mut keys: Vec<i64> = want.keys().chain(got.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            report.compared += 1;
            let sink = got
                .get(&key)
                .filter(|r| r.op != RowOp::Delete)
                .map(|r| &r.columns);
            match (want.get(&key), sink) {
                (Some(Some(w)), Some(s)) if w == s => {}
                (Some(None), None) => {}
                (None, None) => {} // an untouched key the sink only ever deleted: nothing shows
                (w, s) => report.mismatches.push(format!(
                    "table {table} key {key}: upstream {w:?}, sink {s:?}"
                )),
            }
        }
        check_old_values(upstream, table, table_rows, at, old_value, &mut report);
        reports.push(report);
    }
    Ok(reports)
}

/// Checks every UPDATE at or before `at`: with old values on, its `old` must be the oracle's
/// row just before its commit ts; with them off, it must have none. Duplicates are checked
/// each time (a re-sent UPDATE must carry the same pre-image).
fn check_old_values(
    upstream: &DemoUpstream,
    table: TableId,
    rows: &[DecodedRow],
    at: Ts,
    old_value: bool,
    report: &mut TableReport,
) {
    for row in rows {
        if row.op != RowOp::Update || row.commit_ts > at {
            continue;
        }
        let ts = row.commit_ts;
        let key = row.key;
        match (&row.old, old_value) {
            (None, false) => {}
            (Some(old), false) => report.mismatches.push(format!(
                "table {table} key {key}: the UPDATE at {ts} carries old {old:?} with old values off"
            )),
            (None, true) => report.mismatches.push(format!(
                "table {table} key {key}: the UPDATE at {ts} carries no old value"
            )),
            (Some(old), true) => {
                let want = upstream.row_before(table, key, ts);
                if want.as_ref() != Some(old) {
                    report.mismatches.push(format!(
                        "table {table} key {key}: the UPDATE at {ts} has old {old:?}, upstream \
                         had {want:?}"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RowChange, TableEvent, Value};
    use crate::upstream::Upstream;

    /// The demo's rows of table 1 over `(start, at]` as canal-json with old values reads back.
    fn demo_rows(d: &DemoUpstream, start: Ts, at: Ts) -> BTreeMap<TableId, Vec<DecodedRow>> {
        let rows = d
            .table_events(TableId(1), start, at)
            .expect("events")
            .into_iter()
            .filter_map(|e| match e {
                TableEvent::Row(r) => Some(decoded(r)),
                TableEvent::Resolved(_) => None,
            })
            .collect();
        BTreeMap::from([(TableId(1), rows)])
    }

    fn decoded(r: RowChange) -> DecodedRow {
        DecodedRow {
            op: r.op,
            commit_ts: r.commit_ts,
            key: r.key,
            old: r.pre_columns.filter(|_| r.op == RowOp::Update),
            columns: r.columns,
        }
    }

    fn mismatches(reports: &[TableReport]) -> Vec<String> {
        reports.iter().flat_map(|r| r.mismatches.clone()).collect()
    }

    #[test]
    fn a_wrong_missing_or_unexpected_old_value_is_a_mismatch() {
        let d = DemoUpstream::from_uri(
            "demo://?tables=1&rows-per-second=200&key-space=20&retention=none",
        )
        .expect("demo");
        let start = Ts::from_parts(crate::upstream::demo::DEFAULT_START_MS + 1_000, 0);
        let at = Ts::from_parts(crate::upstream::demo::DEFAULT_START_MS + 3_000, 0);
        let good = demo_rows(&d, start, at);
        assert!(mismatches(&compare(&d, &good, start, at, true).expect("compare")).is_empty());

        let first_update = |rows: &mut BTreeMap<TableId, Vec<DecodedRow>>| -> (i64, Ts) {
            let r = rows
                .get_mut(&TableId(1))
                .and_then(|rs| rs.iter_mut().find(|r| r.op == RowOp::Update))
                .expect("an update");
            if let Some(old) = &mut r.old {
                old[1].1 = Value::Text("not what it was".into());
            }
            (r.key, r.commit_ts)
        };
        // Wrong: the final state still folds right, only `old` lies.
        let mut wrong = good.clone();
        let (key, ts) = first_update(&mut wrong);
        let m = mismatches(&compare(&d, &wrong, start, at, true).expect("compare"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].contains(&format!("key {key}: the UPDATE at {ts} has old")),
            "{m:?}"
        );

        // Missing, with old values on.
        let mut missing = good.clone();
        for r in missing.values_mut().flatten() {
            r.old = None;
        }
        let m = mismatches(&compare(&d, &missing, start, at, true).expect("compare"));
        assert!(!m.is_empty() && m.iter().all(|l| l.contains("carries no old value")));
        assert!(mismatches(&compare(&d, &missing, start, at, false).expect("compare")).is_empty());

        // Present, with old values off.
        let m = mismatches(&compare(&d, &good, start, at, false).expect("compare"));
        assert!(!m.is_empty() && m.iter().all(|l| l.contains("with old values off")));
    }
}
