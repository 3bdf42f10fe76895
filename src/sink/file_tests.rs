//! File sink: round trips, rotation, durability, checkpoint metadata, errors, folding.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcdc_state::{ChangefeedId, TableId, Ts};

use super::file::{escape_component, table_dir, unescape_component};
use super::*;
use crate::event::{RowChange, RowOp, TableSchema, Value};
use crate::upstream::demo::demo_table_schema;

/// The table version every test table has.
const VERSION: Ts = Ts(445_652_213_612_937_000);

fn schema() -> TableSchema {
    demo_table_schema(VERSION, "CREATE TABLE t".into())
}

/// How a table reads back.
fn dir_of(t: &TableIdent) -> TableDir {
    TableDir {
        schema: t.schema.clone(),
        table: t.table.clone(),
        version: VERSION,
    }
}

fn cf() -> ChangefeedId {
    ChangefeedId::new("cf-1")
}

fn t1() -> TableIdent {
    TableIdent::new("demo", "t1", TableId(101))
}

fn t2() -> TableIdent {
    TableIdent::new("demo", "t2", TableId(102))
}

fn row(t: &TableIdent, ts: u64, op: RowOp, key: i64, v: Value) -> RowChange {
    RowChange {
        table: t.table_id,
        schema: t.schema.clone(),
        table_name: t.table.clone(),
        commit_ts: Ts::from_parts(1_700_000_000_000 + ts, ts),
        start_ts: Ts::from_parts(1_700_000_000_000 + ts, 0),
        op,
        key,
        columns: vec![
            ("id".into(), Value::Int(key)),
            ("v".into(), v.clone()),
            ("n".into(), Value::Int(key.wrapping_mul(10))),
        ],
        // An update replaced `v` = "before"; a delete's pre-image is the row it removes.
        pre_columns: match op {
            RowOp::Insert => None,
            RowOp::Update => Some(vec![
                ("id".into(), Value::Int(key)),
                ("v".into(), Value::Text("before".into())),
                ("n".into(), Value::Int(key.wrapping_add(1))),
            ]),
            RowOp::Delete => Some(vec![
                ("id".into(), Value::Int(key)),
                ("v".into(), v),
                ("n".into(), Value::Int(key.wrapping_mul(10))),
            ]),
        },
    }
}

/// How `r` reads back from canal-json with old values on (an UPDATE carries its pre-image).
fn decoded(r: &RowChange) -> DecodedRow {
    DecodedRow {
        op: r.op,
        commit_ts: r.commit_ts,
        key: r.key,
        columns: r.columns.clone(),
        old: r.pre_columns.clone().filter(|_| r.op == RowOp::Update),
    }
}

/// How `r` reads back from `protocol` (CSV carries no pre-images).
fn decoded_as(r: &RowChange, protocol: FileProtocol) -> DecodedRow {
    let mut d = decoded(r);
    if protocol == FileProtocol::Csv {
        d.old = None;
    }
    d
}

struct ManualClock(Arc<AtomicU64>);

impl rcdc_reactor::Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn fixed_clock(ms: Arc<AtomicU64>) -> Clock {
    Arc::new(ManualClock(ms))
}

/// A sink config whose canal-json can be read back (`_tidb` carries the commit ts).
fn cfg(dir: &Path, protocol: FileProtocol) -> FileSinkConfig {
    let mut c = FileSinkConfig::new(dir, protocol);
    c.enable_tidb_extension = true;
    c
}

fn open(cfg: &FileSinkConfig, t: &TableIdent) -> FileTableSink {
    let clock = fixed_clock(Arc::new(AtomicU64::new(1_000)));
    FileTableSink::open(cfg, &cf(), t, &schema(), clock).unwrap()
}

/// Rows of all three ops with awkward values.
fn workload(t: &TableIdent) -> Vec<RowChange> {
    vec![
        row(t, 1, RowOp::Insert, 1, Value::Text("plain".into())),
        row(
            t,
            1,
            RowOp::Insert,
            2,
            Value::Text("a,b \"q\"\r\nline2".into()),
        ),
        row(t, 2, RowOp::Insert, 3, Value::Null),
        row(t, 3, RowOp::Update, 1, Value::Text("\\N".into())),
        row(t, 4, RowOp::Insert, -4, Value::Text(String::new())),
        row(
            t,
            5,
            RowOp::Update,
            3,
            Value::Text("ünïcødé ✓ {\"json\":1}".into()),
        ),
        row(
            t,
            6,
            RowOp::Delete,
            2,
            Value::Text("a,b \"q\"\r\nline2".into()),
        ),
        row(t, 7, RowOp::Insert, i64::MAX, Value::Int(i64::MIN)),
    ]
}

fn data_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("CDC"))
        .collect();
    names.sort();
    names
}

fn round_trip(protocol: FileProtocol) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), protocol);
    let spec = SinkSpec::File(cfg.clone());
    let mut expected = Vec::new();
    for t in [t1(), t2()] {
        let mut sink = open_table_sink(&spec, &cf(), &t, &schema()).unwrap();
        let rows = workload(&t);
        sink.write(&rows[..3]).unwrap();
        sink.write(&rows[3..]).unwrap();
        let resolved = rows.last().unwrap().commit_ts;
        assert_eq!(sink.flush(resolved).unwrap(), resolved);
        assert_eq!(sink.rows_written(), rows.len() as u64);
        sink.close();
        let want = rows
            .iter()
            .map(|r| decoded_as(r, protocol))
            .collect::<Vec<_>>();
        expected.push((dir_of(&t), want));
    }
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    assert_eq!(got, expected);
    let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
    assert_eq!(
        data_files(&dir),
        vec![format!("CDC000001.{}", protocol.extension())]
    );
    let index = fs::read_to_string(dir.join("meta/CDC.index")).unwrap();
    assert_eq!(index.trim(), format!("CDC000001.{}", protocol.extension()));
}

#[test]
fn round_trip_canal_json() {
    round_trip(FileProtocol::CanalJson);
}

#[test]
fn round_trip_csv() {
    round_trip(FileProtocol::Csv);
}

#[test]
fn canal_json_line_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::CanalJson), &t1());
    let r = row(&t1(), 9, RowOp::Update, 7, Value::Text("x".into()));
    let mut null_row = row(&t1(), 10, RowOp::Delete, 8, Value::Null);
    null_row.columns[2].1 = Value::Null;
    sink.write(&[r.clone(), null_row]).unwrap();
    sink.flush(r.commit_ts).unwrap();
    let path = table_dir(tmp.path(), &cf(), &t1(), VERSION).join("CDC000001.json");
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let want = serde_json::json!({
        "id": 0, "database": "demo", "table": "t1", "pkNames": ["id"], "isDdl": false,
        "type": "UPDATE", "es": r.commit_ts.physical_ms(), "ts": 1000, "sql": "",
        "sqlType": {"id": -5, "v": 12, "n": -5},
        "mysqlType": {"id": "bigint", "v": "varchar", "n": "bigint"},
        "data": [{"id": "7", "v": "x", "n": "70"}],
        "old": [{"id": "7", "v": "before", "n": "8"}],
        "_tidb": {"commitTs": r.commit_ts.get()}
    });
    assert_eq!(v, want);
    // Key order is Canal's.
    assert!(lines[0].starts_with("{\"id\":0,\"database\":\"demo\",\"table\":\"t1\",\"pkNames\""));
    // A NULL keeps its column's learnt type.
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["mysqlType"]["n"], "bigint");
    assert_eq!(v["data"][0]["n"], serde_json::Value::Null);
    assert_eq!(v["type"], "DELETE");
}

#[test]
fn csv_sample_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::Csv), &t1());
    let r = row(&t1(), 9, RowOp::Insert, 7, Value::Text("x\"y".into()));
    let mut d = row(&t1(), 10, RowOp::Delete, 7, Value::Null);
    d.columns[2].1 = Value::Null;
    sink.write(&[r.clone(), d.clone()]).unwrap();
    sink.flush(d.commit_ts).unwrap();
    let path = table_dir(tmp.path(), &cf(), &t1(), VERSION).join("CDC000001.csv");
    let text = fs::read_to_string(path).unwrap();
    let want = format!(
        "ticdc-meta$operation,ticdc-meta$table,ticdc-meta$schema,ticdc-meta$commit-ts,id,v,n\r\n\
         \"I\",\"t1\",\"demo\",{},7,\"x\"\"y\",70\r\n\
         \"D\",\"t1\",\"demo\",{},7,\\N,\\N\r\n",
        r.commit_ts.get(),
        d.commit_ts.get()
    );
    assert_eq!(text, want);
}

#[test]
fn rotation_by_size_spans_files_in_order() {
    for protocol in [FileProtocol::CanalJson, FileProtocol::Csv] {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(tmp.path(), protocol);
        c.file_size = 600;
        let mut sink = open(&c, &t1());
        let rows: Vec<RowChange> = (1..=60)
            .map(|i| {
                row(
                    &t1(),
                    i / 2,
                    RowOp::Insert,
                    i as i64,
                    Value::Text(format!("r{i}")),
                )
            })
            .collect();
        for chunk in rows.chunks(7) {
            sink.write(chunk).unwrap();
        }
        sink.flush(rows.last().unwrap().commit_ts).unwrap();
        let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
        let files = data_files(&dir);
        assert!(files.len() >= 5, "{protocol:?}: {files:?}");
        for (i, name) in files.iter().enumerate() {
            assert_eq!(*name, format!("CDC{:06}.{}", i + 1, protocol.extension()));
        }
        // Files end at commit-ts boundaries: a transaction is never split.
        let mut per_file_ts = Vec::new();
        for name in &files {
            let one = tempfile::tempdir().unwrap();
            let d = table_dir(one.path(), &cf(), &t1(), VERSION);
            fs::create_dir_all(&d).unwrap();
            fs::copy(dir.join(name), d.join(name)).unwrap();
            let got = read_table_files(one.path(), &cf()).unwrap();
            let ts: Vec<Ts> = got[0].1.iter().map(|r| r.commit_ts).collect();
            per_file_ts.push(ts);
        }
        for pair in per_file_ts.windows(2) {
            assert!(pair[0].last() < pair[1].first(), "{protocol:?}: split txn");
        }
        let got = read_table_files(tmp.path(), &cf()).unwrap();
        let want = rows.iter().map(|r| decoded_as(r, protocol)).collect();
        assert_eq!(got, vec![(dir_of(&t1()), want)]);
    }
}

#[test]
fn rotation_by_age_uses_the_injected_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path(), FileProtocol::CanalJson);
    c.flush_interval_ms = 5_000;
    let now = Arc::new(AtomicU64::new(10_000));
    let mut sink =
        FileTableSink::open(&c, &cf(), &t1(), &schema(), fixed_clock(now.clone())).unwrap();
    let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
    sink.write(&[row(&t1(), 1, RowOp::Insert, 1, Value::Null)])
        .unwrap();
    now.store(14_999, Ordering::SeqCst);
    sink.flush(Ts(1)).unwrap();
    sink.write(&[row(&t1(), 2, RowOp::Insert, 2, Value::Null)])
        .unwrap();
    assert_eq!(data_files(&dir).len(), 1);
    // Aged: rotated on flush, the next write opens file 2.
    now.store(15_000, Ordering::SeqCst);
    sink.flush(Ts(2)).unwrap();
    sink.write(&[row(&t1(), 3, RowOp::Insert, 3, Value::Null)])
        .unwrap();
    // Aged on write (at a commit-ts boundary).
    now.store(20_000, Ordering::SeqCst);
    sink.write(&[row(&t1(), 4, RowOp::Insert, 4, Value::Null)])
        .unwrap();
    sink.flush(Ts(4)).unwrap();
    assert_eq!(
        data_files(&dir),
        vec!["CDC000001.json", "CDC000002.json", "CDC000003.json"]
    );
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    assert_eq!(
        got[0].1.iter().map(|r| r.key).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

#[test]
fn csv_column_change_starts_a_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::Csv), &t1());
    let a = row(&t1(), 1, RowOp::Insert, 1, Value::Int(5));
    let mut b = row(&t1(), 1, RowOp::Insert, 2, Value::Int(6));
    b.columns.push(("added".into(), Value::Text("new".into())));
    sink.write(&[a.clone(), b.clone()]).unwrap();
    sink.flush(b.commit_ts).unwrap();
    let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
    assert_eq!(data_files(&dir), vec!["CDC000001.csv", "CDC000002.csv"]);
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    assert_eq!(
        got[0].1,
        vec![
            decoded_as(&a, FileProtocol::Csv),
            decoded_as(&b, FileProtocol::Csv)
        ]
    );
}

#[test]
fn flushed_data_is_visible_to_a_fresh_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::CanalJson), &t1());
    let rows = workload(&t1());
    sink.write(&rows).unwrap();
    // Buffered, not yet written.
    let before = read_table_files(tmp.path(), &cf()).unwrap();
    assert!(before.iter().all(|(_, r)| r.is_empty()), "{before:?}");
    let cp = sink.flush(rows[3].commit_ts).unwrap();
    assert_eq!(cp, rows[3].commit_ts);
    let after = read_table_files(tmp.path(), &cf()).unwrap();
    assert_eq!(after[0].1.len(), rows.len());
    // The checkpoint never goes back.
    assert_eq!(sink.flush(Ts(1)).unwrap(), cp);
}

#[test]
fn checkpoint_metadata_is_atomic_and_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SinkSpec::File(cfg(tmp.path(), FileProtocol::Csv));
    assert_eq!(read_checkpoint(tmp.path(), &cf()).unwrap(), None);
    let w = open_checkpoint_writer(&spec, &cf()).unwrap();
    w.write_checkpoint(Ts(445_652_213_612_937_217)).unwrap();
    let dir = changefeed_dir(tmp.path(), &cf());
    assert_eq!(
        fs::read_to_string(dir.join("metadata")).unwrap(),
        "{\"checkpoint-ts\":445652213612937217}"
    );
    assert!(!dir.join("metadata.tmp").exists());
    w.write_checkpoint(Ts(445_652_213_612_937_300)).unwrap();
    w.write_checkpoint(Ts(445_652_213_612_937_300)).unwrap();
    assert_eq!(
        read_checkpoint(tmp.path(), &cf()).unwrap(),
        Some(Ts(445_652_213_612_937_300))
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("metadata")]);
    // The metadata file is not mistaken for a table.
    assert!(read_table_files(tmp.path(), &cf()).unwrap().is_empty());

    fs::write(dir.join("metadata"), "{nope").unwrap();
    assert!(matches!(
        read_checkpoint(tmp.path(), &cf()),
        Err(SinkError::Corrupt { .. })
    ));
}

#[test]
fn unwritable_dir_is_an_io_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("regular-file");
    fs::write(&blocker, "x").unwrap();
    let root = blocker.join("sink");
    let spec = parse_sink_uri(&format!("file://{}?protocol=canal-json", root.display())).unwrap();
    let e = match open_table_sink(&spec, &cf(), &t1(), &schema()) {
        Err(e) => e,
        Ok(_) => panic!("opened a sink under a regular file"),
    };
    match &e {
        SinkError::Io { path, .. } => assert!(path.starts_with(&root), "{path:?}"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(e.to_string().contains(&root.display().to_string()), "{e}");
    let e = match open_checkpoint_writer(&spec, &cf()) {
        Err(e) => e,
        Ok(_) => panic!("opened a checkpoint writer under a regular file"),
    };
    assert!(e.to_string().contains(&root.display().to_string()), "{e}");
}

#[test]
fn bad_row_poisons_the_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::CanalJson), &t1());
    let mut bad = row(&t1(), 1, RowOp::Insert, 1, Value::Null);
    bad.key = 2;
    let e = sink.write(&[bad]).unwrap_err();
    assert!(e.to_string().contains("demo.t1"), "{e}");
    assert!(matches!(sink.flush(Ts(5)), Err(SinkError::Poisoned { .. })));
    // A delete without an image is written as its key.
    let mut sink = open(&cfg(tmp.path(), FileProtocol::Csv), &t2());
    let mut d = row(&t2(), 1, RowOp::Delete, 9, Value::Null);
    d.columns.clear();
    sink.write(&[d.clone()]).unwrap();
    sink.flush(d.commit_ts).unwrap();
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    let t2_rows = &got.iter().find(|(t, _)| *t == dir_of(&t2())).unwrap().1;
    assert_eq!(t2_rows[0].key, 9);
    assert_eq!(t2_rows[0].columns, vec![("id".to_owned(), Value::Int(9))]);
}

/// A crash after a partial, torn write; the pipeline restarts from the checkpoint and re-sends.
#[test]
fn duplicates_and_torn_tails_fold_to_the_final_state() {
    for protocol in [FileProtocol::CanalJson, FileProtocol::Csv] {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), protocol);
        let rows = workload(&t1());
        let mut sink = open(&c, &t1());
        sink.write(&rows[..5]).unwrap();
        let cp = sink.flush(rows[4].commit_ts).unwrap();
        sink.write(&rows[5..7]).unwrap(); // above the checkpoint, written by close
        sink.close();
        drop(sink);
        let dir = table_dir(tmp.path(), &cf(), &t1(), VERSION);
        let first = dir.join(format!("CDC000001.{}", protocol.extension()));
        let mut bytes = fs::read(&first).unwrap();
        bytes.extend_from_slice("\"U\",\"t1\",\"demo\",12,{\"id\":\"ü".as_bytes());
        bytes.truncate(bytes.len() - 1); // cut inside a UTF-8 sequence
        fs::write(&first, bytes).unwrap();

        // Restart from the checkpoint: rows after cp again, then the rest.
        let mut sink = open(&c, &t1());
        let resend: Vec<RowChange> = rows.iter().filter(|r| r.commit_ts > cp).cloned().collect();
        sink.write(&resend).unwrap();
        let end = sink.flush(rows.last().unwrap().commit_ts).unwrap();
        assert_eq!(
            data_files(&dir),
            vec![
                format!("CDC000001.{}", protocol.extension()),
                format!("CDC000002.{}", protocol.extension())
            ]
        );
        let got = read_table_files(tmp.path(), &cf()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 7 + resend.len(), "{protocol:?}");

        let mut want: BTreeMap<i64, DecodedRow> = BTreeMap::new();
        for r in &rows {
            want.insert(r.key, decoded_as(r, protocol));
        }
        assert_eq!(fold_rows(&got[0].1, end), want);
        // Folding up to an earlier checkpoint gives the state at that ts.
        let mut at_cp: BTreeMap<i64, DecodedRow> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.commit_ts <= cp) {
            at_cp.insert(r.key, decoded_as(r, protocol));
        }
        assert_eq!(fold_rows(&got[0].1, cp), at_cp);
        let deleted = fold_rows(&got[0].1, end);
        assert_eq!(deleted[&2].op, RowOp::Delete);
    }
}

#[test]
fn odd_names_are_escaped_and_round_trip() {
    for name in ["a/b", "..", ".", "", "50%", "x\\y", "ok-name", "%2F"] {
        assert_eq!(
            unescape_component(&escape_component(name)),
            name,
            "{name:?}"
        );
        let esc = escape_component(name);
        assert!(!esc.contains('/') && esc != "." && esc != ".." && !esc.is_empty());
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = TableIdent::new("sch/ema", "..", TableId(7));
    let mut sink = open(&cfg(tmp.path(), FileProtocol::Csv), &t);
    let r = row(&t, 1, RowOp::Insert, 1, Value::Int(1));
    sink.write(std::slice::from_ref(&r)).unwrap();
    sink.flush(r.commit_ts).unwrap();
    let got = read_table_files(tmp.path(), &cf()).unwrap();
    assert_eq!(
        got,
        vec![(dir_of(&t), vec![decoded_as(&r, FileProtocol::Csv)])]
    );
}

/// `cargo test --release --lib sink::file_tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput_canal_json() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(&cfg(tmp.path(), FileProtocol::CanalJson), &t1());
    let batch: Vec<RowChange> = (0..1_000)
        .map(|i| {
            row(
                &t1(),
                i / 10,
                RowOp::Update,
                i as i64,
                Value::Text(format!("value-{i}")),
            )
        })
        .collect();
    let n = 500;
    #[allow(clippy::disallowed_methods)] // measuring, not deciding
    let start = std::time::Instant::now();
    for _ in 0..n {
        sink.write(&batch).unwrap();
    }
    sink.flush(Ts(u64::MAX)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let rows = (n * batch.len()) as f64;
    println!(
        "canal-json: {rows} rows in {secs:.3}s = {:.0} rows/s",
        rows / secs
    );
}
