//! A consumer that knows only TiCDC's documented storage-sink format reads rcdc's `file://`
//! output and finds the demo oracle's rows, including every UPDATE's `old`.
//!
//! The reader below is written from TiCDC's docs, not from rcdc's writer or decoder (it calls
//! nothing in `rcdc::sink`):
//! - "Replicate Data to Storage Services" (pingcap/docs `ticdc/ticdc-sink-to-cloud-storage.md`):
//!   `<prefix>/metadata` holds `checkpoint-ts`; data files are
//!   `<prefix>/<schema>/<table>/<table-version>/CDC<num>.<json|csv>` (here `date-separator` is
//!   `none`), `meta/CDC.index` beside them names the newest file; a table version's schema
//!   file has `Table`, `Schema`, `TableVersion`, `TableColumns` (`ColumnName`, `ColumnType`,
//!   `ColumnIsPk: "true"`) and `TableColumnsTotal`; v6.5 keeps it as `schema.json` in the version
//!   directory, later versions as `<schema>/<table>/meta/schema_<version>_<hash>.json`.
//! - "TiCDC Canal-JSON Protocol": one message per row, `type` INSERT/UPDATE/DELETE, `data` the
//!   row (a DELETE's: the removed row), `old` the UPDATE's pre-image (all columns in TiCDC),
//!   values as strings or null, `_tidb.commitTs` with `enable-tidb-extension=true`.
//! - "TiCDC CSV Protocol": per record op (`I`/`U`/`D`), table, schema, commit ts (with
//!   `include-commit-ts`), then the columns in table order; `"` quotes, `\N` is NULL; a header
//!   line starting `ticdc-meta$operation` with `output-field-header`.
//! - The storage sink's terminator default is CRLF; a record not ended by it is not complete.
//!
//! rcdc's extra level: every changefeed writes under `<dir>/<changefeed>/`, which is the TiCDC
//! "prefix" this reader is pointed at.

// The demo upstream plays the wall clock; the test reads it to pick timestamps.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rcdc::data_plane::DataPlane;
use rcdc::event::{RowOp, Value};
use rcdc::upstream::DemoUpstream;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::SystemClock;
use rcdc_state::{TableId, Ts};
use serde_json::Value as Json;

const PREFIX: &str = "/t/storage-reader";
const TTL: Duration = Duration::from_secs(2);
const CDC: &str = env!("CARGO_BIN_EXE_cdc");

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One row as the consumer reads it.
#[derive(Clone, Debug)]
struct Row {
    op: RowOp,
    commit_ts: Ts,
    key: i64,
    columns: Vec<(String, Value)>,
    old: Option<Vec<(String, Value)>>,
}

/// A table version's schema file, as far as the consumer needs it.
struct SchemaFile {
    columns: Vec<(String, bool)>, // name, is BIGINT
    pk: String,
}

fn read_json(path: &Path) -> Json {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_dir(path: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| {
            let e = e.expect("dir entry");
            (e.file_name().to_string_lossy().into_owned(), e.path())
        })
        .collect();
    out.sort();
    out
}

/// Reads and checks a version's schema file against the directory it sits in.
fn read_schema(table_path: &Path, schema: &str, table: &str, version: u64) -> SchemaFile {
    let path = table_path.join(version.to_string()).join("schema.json");
    let json = read_json(&path);
    assert_eq!(json["Schema"], schema, "{}", path.display());
    assert_eq!(json["Table"], table, "{}", path.display());
    assert_eq!(json["TableVersion"].as_u64(), Some(version));
    let cols = json["TableColumns"].as_array().expect("TableColumns");
    // The docs show TableColumnsTotal both as a number and as a string.
    let total = match &json["TableColumnsTotal"] {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    };
    assert_eq!(total, Some(cols.len() as u64));
    let columns: Vec<(String, bool)> = cols
        .iter()
        .map(|c| {
            let name = c["ColumnName"].as_str().expect("ColumnName").to_owned();
            let ty = c["ColumnType"]
                .as_str()
                .expect("ColumnType")
                .to_ascii_uppercase();
            (name, ty.contains("INT"))
        })
        .collect();
    let pk = cols
        .iter()
        .find(|c| c["ColumnIsPk"] == "true")
        .and_then(|c| c["ColumnName"].as_str())
        .expect("a primary key column")
        .to_owned();
    // The later layout: the same definition under the table's meta/.
    let later = sorted_dir(&table_path.join("meta"))
        .into_iter()
        .find(|(n, _)| n.starts_with(&format!("schema_{version}_")) && n.ends_with(".json"))
        .map(|(_, p)| read_json(&p))
        .expect("meta/schema_<version>_<hash>.json");
    assert_eq!(later, json);
    SchemaFile { columns, pk }
}

/// A canal-json string or null, typed by the schema file (not by the message's `mysqlType`).
fn typed(is_int: bool, v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::String(s) if is_int => Value::Int(s.parse().expect("an integer string")),
        Json::String(s) => Value::Text(s.clone()),
        other => panic!("canal-json values are strings or null, got {other}"),
    }
}

fn canal_image(schema: &SchemaFile, v: &Json) -> Vec<(String, Value)> {
    let obj = v.as_object().expect("a row object");
    schema
        .columns
        .iter()
        .map(|(name, is_int)| (name.clone(), typed(*is_int, &obj[name])))
        .collect()
}

fn canal_rows(schema: &SchemaFile, text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let msg: Json = serde_json::from_str(line).expect("a canal-json message");
        let op = match msg["type"].as_str() {
            Some("INSERT") => RowOp::Insert,
            Some("UPDATE") => RowOp::Update,
            Some("DELETE") => RowOp::Delete,
            other => panic!("unexpected type {other:?}"),
        };
        let columns = canal_image(schema, &msg["data"][0]);
        let old = match &msg["old"] {
            Json::Null => None,
            old => Some(canal_image(schema, &old[0])),
        };
        let key = match columns.iter().find(|(n, _)| *n == schema.pk) {
            Some((_, Value::Int(k))) => *k,
            other => panic!("key column: {other:?}"),
        };
        let commit_ts = Ts(msg["_tidb"]["commitTs"].as_u64().expect("_tidb.commitTs"));
        out.push(Row {
            op,
            commit_ts,
            key,
            columns,
            old,
        });
    }
    out
}

/// Splits CSV text into records of (field, was quoted); text after the last CRLF is dropped.
fn csv_records(text: &str) -> Vec<Vec<(String, bool)>> {
    let complete = &text[..text.rfind("\r\n").map_or(0, |p| p + 2)];
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = complete.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                    // Closing quote: the field is complete, remember it was quoted.
                    record.push((std::mem::take(&mut field), true));
                    match chars.next() {
                        Some(',') => {}
                        Some('\r') => {
                            chars.next();
                            records.push(std::mem::take(&mut record));
                        }
                        other => panic!("after a closing quote: {other:?}"),
                    }
                }
            }
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => record.push((std::mem::take(&mut field), false)),
            '\r' if !quoted && chars.peek() == Some(&'\n') => {
                chars.next();
                record.push((std::mem::take(&mut field), false));
                records.push(std::mem::take(&mut record));
            }
            c => field.push(c),
        }
    }
    records
}

fn csv_rows(schema: &SchemaFile, text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for rec in csv_records(text) {
        if rec[0].0 == "ticdc-meta$operation" {
            continue; // the header line
        }
        assert_eq!(rec.len(), 4 + schema.columns.len(), "{rec:?}");
        let op = match rec[0].0.as_str() {
            "I" => RowOp::Insert,
            "U" => RowOp::Update,
            "D" => RowOp::Delete,
            other => panic!("unexpected op {other}"),
        };
        let commit_ts = Ts(rec[3].0.parse().expect("commit ts"));
        let columns: Vec<(String, Value)> = schema
            .columns
            .iter()
            .zip(&rec[4..])
            .map(|((name, is_int), (text, quoted))| {
                let v = match (quoted, text.as_str()) {
                    (false, "\\N") => Value::Null,
                    (_, t) if *is_int => Value::Int(t.parse().expect("an integer")),
                    (_, t) => Value::Text(t.to_owned()),
                };
                (name.clone(), v)
            })
            .collect();
        let key = match columns.iter().find(|(n, _)| *n == schema.pk) {
            Some((_, Value::Int(k))) => *k,
            other => panic!("key column: {other:?}"),
        };
        out.push(Row {
            op,
            commit_ts,
            key,
            columns,
            old: None,
        });
    }
    out
}

/// Reads a whole prefix: (checkpoint, rows per (schema, table)) in index order per version.
fn read_prefix(prefix: &Path) -> (Ts, BTreeMap<(String, String), Vec<Row>>) {
    let checkpoint = Ts(read_json(&prefix.join("metadata"))["checkpoint-ts"]
        .as_u64()
        .expect("checkpoint-ts"));
    let mut tables = BTreeMap::new();
    for (schema, schema_path) in sorted_dir(prefix).into_iter().filter(|(_, p)| p.is_dir()) {
        for (table, table_path) in sorted_dir(&schema_path) {
            let mut versions: Vec<u64> = sorted_dir(&table_path)
                .into_iter()
                .filter_map(|(n, _)| n.parse().ok())
                .collect();
            versions.sort_unstable();
            let rows: &mut Vec<Row> = tables.entry((schema.clone(), table.clone())).or_default();
            for version in versions {
                let def = read_schema(&table_path, &schema, &table, version);
                let dir = table_path.join(version.to_string());
                let newest = fs::read_to_string(dir.join("meta/CDC.index")).expect("CDC.index");
                let mut files: Vec<(u64, String)> = sorted_dir(&dir)
                    .into_iter()
                    .filter_map(|(n, _)| {
                        let num = n.strip_prefix("CDC")?.split('.').next()?.parse().ok()?;
                        Some((num, n))
                    })
                    .collect();
                files.sort();
                assert_eq!(files.last().map(|f| f.1.as_str()), Some(newest.trim()));
                for (_, name) in files {
                    let text = fs::read_to_string(dir.join(&name)).expect("data file");
                    let complete = &text[..text.rfind("\r\n").map_or(0, |p| p + 2)];
                    rows.extend(if name.ends_with(".json") {
                        canal_rows(&def, complete)
                    } else {
                        csv_rows(&def, &text)
                    });
                }
            }
        }
    }
    (checkpoint, tables)
}

/// Compares what the consumer read with the demo oracle over `(start, checkpoint]`; returns
/// one line per difference.
fn check(demo: &DemoUpstream, prefix: &Path, start: Ts, with_old: bool) -> (Vec<String>, usize) {
    let (cp, tables) = read_prefix(prefix);
    let mut bad = Vec::new();
    let mut updates = 0;
    for ((schema, table), rows) in tables {
        assert_eq!(schema, "demo");
        let id = TableId(
            table
                .trim_start_matches('t')
                .parse()
                .expect("demo table name"),
        );
        let mut folded: BTreeMap<i64, &Row> = BTreeMap::new();
        let mut ordered: Vec<&Row> = rows.iter().filter(|r| r.commit_ts <= cp).collect();
        ordered.sort_by_key(|r| r.commit_ts); // stable: duplicates keep file order
        for r in ordered {
            folded.insert(r.key, r);
            if r.op == RowOp::Update && with_old {
                updates += 1;
                let want = demo.row_before(id, r.key, r.commit_ts);
                if r.old != want {
                    bad.push(format!(
                        "{table} key {} old {:?} want {want:?}",
                        r.key, r.old
                    ));
                }
            }
        }
        let want = demo.rows_in_window(id, start.prev(), cp);
        for (key, w) in &want {
            let got = folded
                .get(key)
                .filter(|r| r.op != RowOp::Delete)
                .map(|r| &r.columns);
            if got != w.as_ref() {
                bad.push(format!("{table} key {key}: got {got:?} want {w:?}"));
            }
        }
        for key in folded.keys().filter(|k| !want.contains_key(k)) {
            bad.push(format!(
                "{table} key {key}: in the files, not in the window"
            ));
        }
    }
    (bad, updates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticdc_storage_consumer_reads_canal_json_and_csv_with_old_values() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let dir = tempfile::tempdir().expect("sink dir");
    let epoch = now_ms() - 60_000;
    // Table 5 is created 1 s into the run: its files go to its own table version.
    let upstream_uri = format!(
        "demo://?tables=2&rows-per-second=200&key-space=30&seed=11&start={epoch}\
         &retention=none&ddl=create:5@61s"
    );
    let plane = || Arc::new(DataPlane::new(upstream_uri.clone(), Arc::new(SystemClock)));
    let cap = start(etcd.endpoints(), "a", data_roles(plane()), PREFIX, TTL);
    wait_until(DEADLINE, "an owner", || async { cap.is_owner() }).await;

    let start_ts = Ts::from_parts(now_ms(), 0);
    let feeds = [
        ("json", "protocol=canal-json&enable-tidb-extension=true"),
        ("csv", "protocol=csv"),
    ];
    for (id, params) in feeds {
        let uri = format!("file://{}?{params}", dir.path().display());
        let info = format!(
            r#"{{"sink-uri":"{uri}","start-ts":{},"state":"normal","config":{{"enable-old-value":true}}}}"#,
            start_ts.0
        );
        put(&store, &format!("{PREFIX}/changefeed/info/{id}"), &info).await;
    }
    let target = Ts::from_parts(now_ms() + 3_000, 0);
    for (id, _) in feeds {
        let checkpoint = || async {
            get(&store, &format!("{PREFIX}/job/{id}"))
                .await
                .and_then(|kv| {
                    serde_json::from_slice::<rcdc_state::model::ChangeFeedStatus>(&kv.value).ok()
                })
                .map(|s| s.checkpoint_ts)
        };
        wait_until(DEADLINE, "checkpoint passes T", || async {
            checkpoint().await.is_some_and(|c| c >= target)
        })
        .await;
    }
    // The sink's metadata follows the status checkpoint by a flush; wait for it too.
    wait_until(DEADLINE, "metadata passes T", || async {
        feeds.iter().all(|(id, _)| {
            fs::read_to_string(dir.path().join(id).join("metadata"))
                .ok()
                .and_then(|t| serde_json::from_str::<Json>(&t).ok())
                .and_then(|j| j["checkpoint-ts"].as_u64())
                .is_some_and(|c| c >= target.0)
        })
    })
    .await;

    let demo = DemoUpstream::from_uri(&upstream_uri).expect("demo");
    let json_prefix = dir.path().join("json");
    let (bad, updates) = check(&demo, &json_prefix, start_ts, true);
    assert!(bad.is_empty(), "canal-json: {bad:#?}");
    assert!(updates > 50, "only {updates} UPDATEs checked");
    assert!(json_prefix.join("demo/t5").is_dir(), "the created table");
    let (bad, _) = check(&demo, &dir.path().join("csv"), start_ts, false);
    assert!(bad.is_empty(), "csv: {bad:#?}");

    // Negative control: one UPDATE's `old` changed in a copy is found.
    let tampered = tempfile::tempdir().expect("copy");
    copy_tree(&json_prefix, tampered.path());
    assert!(
        tamper_first_old(tampered.path()),
        "no UPDATE with old to tamper with"
    );
    let (bad, _) = check(&demo, tampered.path(), start_ts, true);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0].contains(" old "), "{bad:#?}");

    // cdc verify agrees on the canal-json feed, and refuses one without the extension.
    let out = std::process::Command::new(CDC)
        .args(["verify", "--upstream", &upstream_uri, "-c", "json"])
        .args([
            "--sink-uri",
            &format!(
                "file://{}?protocol=canal-json&enable-tidb-extension=true",
                dir.path().display()
            ),
        ])
        .output()
        .expect("cdc verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(CDC)
        .args(["verify", "--upstream", &upstream_uri, "-c", "json"])
        .args([
            "--sink-uri",
            &format!("file://{}?protocol=canal-json", dir.path().display()),
        ])
        .output()
        .expect("cdc verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("enable-tidb-extension=true"),
        "{stderr}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for (name, path) in sorted_dir(from) {
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// Changes the `v` of the first UPDATE's `old` under `root`; false if there is none.
fn tamper_first_old(root: &Path) -> bool {
    for (_, path) in sorted_dir(root) {
        if path.is_dir() {
            if tamper_first_old(&path) {
                return true;
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "json") || !path.to_string_lossy().contains("CDC") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
        for line in lines
            .iter_mut()
            .filter(|l| l.contains("\"type\":\"UPDATE\""))
        {
            let mut msg: Json = serde_json::from_str(line).expect("json");
            if msg["old"].is_null() {
                continue;
            }
            msg["old"][0]["v"] = Json::String("tampered".into());
            *line = msg.to_string();
            fs::write(&path, lines.join("\r\n")).expect("write");
            return true;
        }
    }
    false
}
