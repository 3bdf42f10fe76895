//! Canal JSON as TiCDC writes it, one message per row, each followed by the terminator (CRLF,
//! TiCDC's storage-sink default). With `enable-tidb-extension=true` and an UPDATE under
//! `enable-old-value`:
//!
//! ```text
//! {"id":0,"database":"demo","table":"t1","pkNames":["id"],"isDdl":false,"type":"UPDATE",
//!  "es":1700000000000,"ts":1700000000123,"sql":"","sqlType":{"id":-5,"v":12},
//!  "mysqlType":{"id":"bigint","v":"varchar"},"data":[{"id":"7","v":"x"}],
//!  "old":[{"id":"7","v":"w"}],"_tidb":{"commitTs":445652213612937217}}
//! ```
//! (one line in the file). `es` is the commit ts' physical milliseconds, `ts` the time the
//! message was built. Values are strings or `null`; `mysqlType` says how to read them back
//! (`bigint` → integer, anything else → text). `old` is the UPDATE's whole pre-image with
//! old values on, else `null`; a `DELETE`'s `data` is the removed row and its `old` `null`.
//! Without the extension there is no `_tidb`, and nothing in the message says the commit ts
//! (`es` has only its milliseconds), so reading rows back for `cdc verify` needs it.

use std::collections::BTreeMap;

use serde::Deserialize;

use rcdc_state::Ts;

use super::DecodedRow;
use crate::event::{RowChange, RowOp, Value};

/// The record terminator.
pub const TERMINATOR: &str = "\r\n";

/// Column types learnt from non-null values, so a `NULL` keeps its column's type.
#[derive(Debug, Default)]
pub struct ColumnTypes {
    is_int: BTreeMap<String, bool>,
}

impl ColumnTypes {
    fn observe(&mut self, name: &str, v: &Value) -> bool {
        match v {
            Value::Int(_) => {
                self.note(name, true);
                true
            }
            Value::Text(_) => {
                self.note(name, false);
                false
            }
            Value::Null => self.is_int.get(name).copied().unwrap_or(false),
        }
    }
    fn note(&mut self, name: &str, is_int: bool) {
        if self.is_int.get(name) != Some(&is_int) {
            self.is_int.insert(name.to_owned(), is_int);
        }
    }
}

fn op_name(op: RowOp) -> &'static str {
    match op {
        RowOp::Insert => "INSERT",
        RowOp::Update => "UPDATE",
        RowOp::Delete => "DELETE",
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// What a message carries besides the row (the file sink's URI and changefeed settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Write the UPDATE's pre-image in `old` (the changefeed's `enable-old-value`).
    pub old_value: bool,
    /// Write `_tidb` with the commit ts (the URI's `enable-tidb-extension`).
    pub tidb_extension: bool,
}

/// Appends `[{"col":"value",...}]`: one row image as canal-json's `data`/`old` hold it.
fn push_image(out: &mut Vec<u8>, columns: &[(String, Value)]) {
    out.extend_from_slice(b"[{");
    for (i, (name, value)) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
        out.push(b':');
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Int(n) => out.extend_from_slice(format!("\"{n}\"").as_bytes()),
            Value::Text(s) => push_json_str(out, s),
        }
    }
    out.extend_from_slice(b"}]");
}

/// Appends `{"col":<type>,...}` for `sqlType` (`sql`) or `mysqlType` (not `sql`).
fn push_types(out: &mut Vec<u8>, columns: &[(String, Value)], ints: &[bool], sql: bool) {
    out.push(b'{');
    for (i, ((name, _), is_int)) in columns.iter().zip(ints).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
        let t: &[u8] = match (sql, *is_int) {
            (true, true) => b":-5",
            (true, false) => b":12",
            (false, true) => b":\"bigint\"",
            (false, false) => b":\"varchar\"",
        };
        out.extend_from_slice(t);
    }
    out.push(b'}');
}

/// Appends one message for `row` (whose image is `columns`, key column first) to `out`.
///
/// As TiCDC's canal-json docs ("TiCDC Canal-JSON Protocol", pingcap/docs
/// `ticdc/ticdc-canal-json.md`) describe it: `old` holds every column of an UPDATE's pre-image
/// (not only the changed ones, unlike the official Canal) when old values are on, and is `null`
/// for every other message; a DELETE's `data` is the removed row and its `old` is `null`, as
/// since TiCDC v5.4.0 (before, it repeated `data`; the storage sink, v6.5+, has only the new
/// form).
pub fn encode(
    out: &mut Vec<u8>,
    row: &RowChange,
    columns: &[(String, Value)],
    now_ms: u64,
    types: &mut ColumnTypes,
    opts: EncodeOptions,
) {
    let old = match (row.op, &row.pre_columns) {
        (RowOp::Update, Some(pre)) if opts.old_value => Some(pre),
        _ => None,
    };
    let ints: Vec<bool> = columns.iter().map(|(n, v)| types.observe(n, v)).collect();
    for (n, v) in old.into_iter().flatten() {
        types.observe(n, v);
    }
    out.extend_from_slice(b"{\"id\":0,\"database\":");
    push_json_str(out, &row.schema);
    out.extend_from_slice(b",\"table\":");
    push_json_str(out, &row.table_name);
    out.extend_from_slice(b",\"pkNames\":[");
    if let Some((name, _)) = columns.first() {
        push_json_str(out, name);
    }
    out.extend_from_slice(b"],\"isDdl\":false,\"type\":\"");
    out.extend_from_slice(op_name(row.op).as_bytes());
    out.extend_from_slice(
        format!(
            "\",\"es\":{},\"ts\":{},\"sql\":\"\",\"sqlType\":",
            row.commit_ts.physical_ms(),
            now_ms
        )
        .as_bytes(),
    );
    push_types(out, columns, &ints, true);
    out.extend_from_slice(b",\"mysqlType\":");
    push_types(out, columns, &ints, false);
    out.extend_from_slice(b",\"data\":");
    push_image(out, columns);
    out.extend_from_slice(b",\"old\":");
    match old {
        Some(pre) => push_image(out, pre),
        None => out.extend_from_slice(b"null"),
    }
    if opts.tidb_extension {
        out.extend_from_slice(
            format!(",\"_tidb\":{{\"commitTs\":{}}}", row.commit_ts.get()).as_bytes(),
        );
    }
    out.push(b'}');
    out.extend_from_slice(TERMINATOR.as_bytes());
}

#[derive(Deserialize)]
struct Message {
    database: String,
    table: String,
    #[serde(rename = "pkNames", default)]
    pk_names: Option<Vec<String>>,
    #[serde(rename = "isDdl", default)]
    is_ddl: bool,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "mysqlType", default)]
    mysql_type: Option<BTreeMap<String, String>>,
    #[serde(default)]
    data: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default)]
    old: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    #[serde(rename = "_tidb", default)]
    tidb: Option<TidbExtension>,
}

#[derive(Deserialize)]
struct TidbExtension {
    #[serde(rename = "commitTs", default)]
    commit_ts: Option<u64>,
}

/// A decoded line: `Ok(None)` for messages that carry no row (DDL, watermarks).
pub type DecodedLine = Option<(String, String, DecodedRow)>;

/// Decodes one message (without its terminator) to (schema, table, row).
pub fn decode(line: &str) -> Result<DecodedLine, String> {
    let msg: Message = serde_json::from_str(line).map_err(|e| format!("bad canal-json: {e}"))?;
    if msg.is_ddl || msg.kind == "TIDB_WATERMARK" {
        return Ok(None);
    }
    let op = match msg.kind.as_str() {
        "INSERT" => RowOp::Insert,
        "UPDATE" => RowOp::Update,
        "DELETE" => RowOp::Delete,
        other => return Err(format!("unknown message type '{other}'")),
    };
    let commit_ts = msg.tidb.and_then(|t| t.commit_ts).ok_or(
        "no _tidb.commitTs: reading rows back needs their commit ts, which canal-json carries \
         only with the sink URI parameter enable-tidb-extension=true",
    )?;
    let types = msg.mysql_type.unwrap_or_default();
    let mut data = msg.data.unwrap_or_default();
    if data.len() != 1 {
        return Err(format!("expected one row in data, found {}", data.len()));
    }
    let columns = decode_image(data.remove(0), &types)?;
    let old = match msg.old {
        None => None,
        Some(mut old) if old.len() == 1 => Some(decode_image(old.remove(0), &types)?),
        Some(old) => return Err(format!("expected one row in old, found {}", old.len())),
    };
    let key_col = msg
        .pk_names
        .and_then(|p| p.into_iter().next())
        .or_else(|| columns.first().map(|(n, _)| n.clone()))
        .ok_or("row without columns")?;
    let key = match columns.iter().find(|(n, _)| *n == key_col) {
        Some((_, Value::Int(k))) => *k,
        Some(_) => return Err(format!("key column '{key_col}' is not an integer")),
        None => return Err(format!("key column '{key_col}' is missing from data")),
    };
    Ok(Some((
        msg.database,
        msg.table,
        DecodedRow {
            op,
            commit_ts: Ts(commit_ts),
            key,
            columns,
            old,
        },
    )))
}

/// One `data`/`old` entry to column values, read by the message's `mysqlType`.
fn decode_image(
    image: serde_json::Map<String, serde_json::Value>,
    types: &BTreeMap<String, String>,
) -> Result<Vec<(String, Value)>, String> {
    let mut columns = Vec::with_capacity(image.len());
    for (name, v) in image {
        let value = match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::String(s) => {
                let is_int = types
                    .get(&name)
                    .map(|t| t.to_ascii_lowercase().contains("int"))
                    .unwrap_or(false);
                if is_int {
                    Value::Int(
                        s.parse()
                            .map_err(|_| format!("column '{name}': '{s}' is not an integer"))?,
                    )
                } else {
                    Value::Text(s)
                }
            }
            other => return Err(format!("column '{name}': expected a string, got {other}")),
        };
        columns.push((name, value));
    }
    Ok(columns)
}
