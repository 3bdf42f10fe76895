//! File sink output as a TiCDC consumer sees it: `old` under `enable-old-value`, `_tidb` only
//! with `enable-tidb-extension`, and the table-version layout with its schema files.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rcdc_state::{ChangefeedId, TableId, Ts};

use super::file::{table_dir, table_root};
use super::schema_file::{self, SCHEMA_FILE};
use super::*;
use crate::event::{RowChange, RowOp, TableSchema, Value};
use crate::upstream::demo::demo_table_schema;

const VERSION: Ts = Ts(445_652_213_612_937_000);

struct FixedClock;

impl rcdc_reactor::Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_000
    }
}

fn cf() -> ChangefeedId {
    ChangefeedId::new("cf-1")
}

fn t1() -> TableIdent {
    TableIdent::new("demo", "t1", TableId(101))
}

fn schema() -> TableSchema {
    demo_table_schema(VERSION, "CREATE TABLE `demo`.`t1` (...)".into())
}

fn image(key: i64, v: &str) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int(key)),
        ("v".into(), Value::Text(v.into())),
        ("n".into(), Value::Int(key * 10)),
    ]
}

/// An insert, an update of it, and its delete.
fn rows() -> Vec<RowChange> {
    let row = |ts: u64, op, columns, pre_columns| RowChange {
        table: TableId(101),
        schema: "demo".into(),
        table_name: "t1".into(),
        commit_ts: Ts::from_parts(1_700_000_000_000 + ts, 0),
        start_ts: Ts::from_parts(1_700_000_000_000 + ts - 1, 0),
        op,
        key: 7,
        columns,
        pre_columns,
    };
    vec![
        row(1, RowOp::Insert, image(7, "a"), None),
        row(2, RowOp::Update, image(7, "b"), Some(image(7, "a"))),
        row(3, RowOp::Delete, image(7, "b"), Some(image(7, "b"))),
    ]
}

/// Writes `rows()` through a canal-json sink and returns its messages.
fn canal_lines(root: &Path, old_value: bool, extension: bool) -> Vec<serde_json::Value> {
    let mut cfg = FileSinkConfig::new(root, FileProtocol::CanalJson);
    cfg.enable_old_value = old_value;
    cfg.enable_tidb_extension = extension;
    let clock: Clock = Arc::new(FixedClock);
    let mut sink = FileTableSink::open(&cfg, &cf(), &t1(), &schema(), clock).unwrap();
    let rows = rows();
    sink.write(&rows).unwrap();
    sink.flush(rows[2].commit_ts).unwrap();
    let path = table_dir(root, &cf(), &t1(), VERSION).join("CDC000001.json");
    fs::read_to_string(path)
        .unwrap()
        .split_terminator("\r\n")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn old_value_on_puts_the_whole_pre_image_in_an_updates_old_only() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = canal_lines(tmp.path(), true, true);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["INSERT", "UPDATE", "DELETE"]);
    assert_eq!(lines[0]["old"], serde_json::Value::Null);
    assert_eq!(
        lines[1]["old"],
        serde_json::json!([{"id": "7", "v": "a", "n": "70"}])
    );
    assert_eq!(
        lines[1]["data"],
        serde_json::json!([{"id": "7", "v": "b", "n": "70"}])
    );
    // TiCDC's DELETE: the removed row in `data`, no `old`.
    assert_eq!(lines[2]["old"], serde_json::Value::Null);
    assert_eq!(lines[2]["data"][0]["v"], "b");
    // Read back by rcdc's decoder too.
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    let old: Vec<_> = got[0].1.iter().map(|r| r.old.clone()).collect();
    assert_eq!(old, [None, Some(image(7, "a")), None]);
}

#[test]
fn old_value_off_leaves_old_null() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = canal_lines(tmp.path(), false, true);
    assert!(lines.iter().all(|l| l["old"].is_null()), "{lines:?}");
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    assert!(got[0].1.iter().all(|r| r.old.is_none()));
}

#[test]
fn tidb_extension_decides_the_tidb_field() {
    let tmp = tempfile::tempdir().unwrap();
    let with = canal_lines(tmp.path(), true, true);
    let rows = rows();
    for (line, row) in with.iter().zip(&rows) {
        assert_eq!(
            line["_tidb"],
            serde_json::json!({"commitTs": row.commit_ts.get()})
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let without = canal_lines(tmp.path(), true, false);
    assert!(
        without.iter().all(|l| l.get("_tidb").is_none()),
        "{without:?}"
    );
    // Nothing else in the message changes.
    for (mut a, b) in with.into_iter().zip(without) {
        a.as_object_mut().unwrap().remove("_tidb");
        assert_eq!(a, b);
    }
    // Without the commit ts the files cannot be folded; the error names the parameter.
    let e = read_table_files(tmp.path(), &cf()).unwrap_err().to_string();
    assert!(e.contains("enable-tidb-extension=true"), "{e}");
}

#[test]
fn schema_files_are_written_once_before_any_data_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig::new(tmp.path(), FileProtocol::Csv);
    let clock: Clock = Arc::new(FixedClock);
    let sink = FileTableSink::open(&cfg, &cf(), &t1(), &schema(), clock.clone()).unwrap();
    let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
    assert_eq!(dir, tmp.path().join("cf-1/demo/t1/445652213612937000"));
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [SCHEMA_FILE], "no data file yet");
    let content = fs::read(dir.join(SCHEMA_FILE)).unwrap();
    assert_eq!(content, schema_file::encode("demo", "t1", &schema()));
    let meta = table_root(tmp.path(), &cf(), &t1()).join("meta");
    let meta_name = schema_file::meta_name(&schema(), &content);
    assert_eq!(fs::read(meta.join(&meta_name)).unwrap(), content);
    drop(sink);

    // A reopened sink of the same version leaves the files alone.
    fs::write(dir.join(SCHEMA_FILE), "kept").unwrap();
    let sink = FileTableSink::open(&cfg, &cf(), &t1(), &schema(), clock.clone()).unwrap();
    drop(sink);
    assert_eq!(fs::read_to_string(dir.join(SCHEMA_FILE)).unwrap(), "kept");

    // A new table version gets its own directory and schema files.
    let mut v2 = schema();
    v2.version = Ts(VERSION.get() + 1);
    let _sink = FileTableSink::open(&cfg, &cf(), &t1(), &v2, clock).unwrap();
    let dir2 = table_dir(tmp.path(), &cf(), &t1(), v2.version);
    let v2_content = fs::read(dir2.join(SCHEMA_FILE)).unwrap();
    let v2_json: serde_json::Value = serde_json::from_slice(&v2_content).unwrap();
    assert_eq!(v2_json["TableVersion"], v2.version.get());
    assert!(meta
        .join(schema_file::meta_name(&v2, &v2_content))
        .is_file());
    let tmp_left: Vec<_> = fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
}
