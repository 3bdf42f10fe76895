//! Canal JSON as TiCDC writes it (with the `_tidb` extension carrying the commit ts), one
//! message per row, each followed by the terminator (CRLF, TiCDC's storage-sink default):
//!
//! ```text
//! {"id":0,"database":"demo","table":"t1","pkNames":["id"],"isDdl":false,"type":"UPDATE",
//!  "es":1700000000000,"ts":1700000000123,"sql":"","sqlType":{"id":-5,"v":12},
//!  "mysqlType":{"id":"bigint","v":"varchar"},"data":[{"id":"7","v":"x"}],"old":null,
//!  "_tidb":{"commitTs":445652213612937217}}
//! ```
//! (one line in the file). `es` is the commit ts' physical milliseconds, `ts` the time the
//! message was built. Values are strings or `null`; `mysqlType` says how to read them back
//! (`bigint` → integer, anything else → text). The row events carry no pre-image, so `old` is
//! always `null`; a `DELETE`'s `data` is the removed row.

use std::collections::BTreeMap;

use serde::Deserialize;

use rcdc_state::Ts;

use super::DecodedRow;
use crate::event::{RowChange, RowOp, Value};

/// The record terminator.
pub const TERMINATOR: &str = "\r\n";

const SQL_TYPE_BIGINT: i32 = -5;
const SQL_TYPE_VARCHAR: i32 = 12;

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

/// Appends one message for `row` (whose image is `columns`, key column first) to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    row: &RowChange,
    columns: &[(String, Value)],
    now_ms: u64,
    types: &mut ColumnTypes,
) {
    let ints: Vec<bool> = columns.iter().map(|(n, v)| types.observe(n, v)).collect();
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
            "\",\"es\":{},\"ts\":{},\"sql\":\"\",\"sqlType\":{{",
            row.commit_ts.physical_ms(),
            now_ms
        )
        .as_bytes(),
    );
    for (i, ((name, _), is_int)) in columns.iter().zip(&ints).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
        let t = if *is_int {
            SQL_TYPE_BIGINT
        } else {
            SQL_TYPE_VARCHAR
        };
        out.extend_from_slice(format!(":{t}").as_bytes());
    }
    out.extend_from_slice(b"},\"mysqlType\":{");
    for (i, ((name, _), is_int)) in columns.iter().zip(&ints).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
        out.extend_from_slice(if *is_int {
            b":\"bigint\""
        } else {
            b":\"varchar\""
        });
    }
    out.extend_from_slice(b"},\"data\":[{");
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
    out.extend_from_slice(
        format!(
            "}}],\"old\":null,\"_tidb\":{{\"commitTs\":{}}}}}",
            row.commit_ts.get()
        )
        .as_bytes(),
    );
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
    let commit_ts = msg
        .tidb
        .and_then(|t| t.commit_ts)
        .ok_or("no _tidb.commitTs (the file sink always writes it)")?;
    let mut data = msg.data.unwrap_or_default();
    if data.len() != 1 {
        return Err(format!("expected one row in data, found {}", data.len()));
    }
    let image = data.remove(0);
    let types = msg.mysql_type.unwrap_or_default();
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
        },
    )))
}
