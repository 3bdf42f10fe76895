//! TiCDC's CSV protocol with `include-commit-ts = true` and `output-field-header = true`:
//! delimiter `,`, quote `"`, null `\N`, terminator CRLF. Each file starts with a header; each
//! record is op (`I`/`U`/`D`), table, schema, commit ts, then the row image:
//!
//! ```text
//! ticdc-meta$operation,ticdc-meta$table,ticdc-meta$schema,ticdc-meta$commit-ts,id,v
//! "I","t1","demo",445652213612937217,7,"x"
//! "D","t1","demo",445652213612937300,7,\N
//! ```
//! As in TiCDC, strings are always quoted (a quote doubled inside) and numbers and `\N` are
//! not, so a decoder tells `Text("\N")` (`"\N"`) from NULL (`\N`) and text from integers. The
//! key is the first column. A new file is started when the column names change.
//!
//! An UPDATE is one `U` record with the new row, whatever the changefeed's `enable-old-value`:
//! that is TiCDC's CSV with its `[sink.csv] output-old-value = false` default (the TiCDC CSV
//! protocol docs). With `output-old-value = true` TiCDC writes an update as a `D` record with
//! the old row and an `I` record with the new one, behind an extra `is-update` column; rcdc
//! has no such setting yet, so CSV output carries no pre-images.

use rcdc_state::Ts;

use super::DecodedRow;
use crate::event::{RowChange, RowOp, Value};

/// The record terminator.
pub const TERMINATOR: &str = "\r\n";
/// The null marker.
pub const NULL: &str = "\\N";
const META_HEADER: [&str; 4] = [
    "ticdc-meta$operation",
    "ticdc-meta$table",
    "ticdc-meta$schema",
    "ticdc-meta$commit-ts",
];

fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn op_code(op: RowOp) -> &'static str {
    match op {
        RowOp::Insert => "I",
        RowOp::Update => "U",
        RowOp::Delete => "D",
    }
}

/// Appends the header line of a file whose rows have these column names.
pub fn encode_header<'a>(out: &mut Vec<u8>, names: impl Iterator<Item = &'a str>) {
    out.extend_from_slice(META_HEADER.join(",").as_bytes());
    for name in names {
        out.push(b',');
        if name.contains([',', '"', '\r', '\n']) || name == NULL {
            push_quoted(out, name);
        } else {
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(TERMINATOR.as_bytes());
}

/// Appends one record for `row` (whose image is `columns`, key column first).
pub fn encode(out: &mut Vec<u8>, row: &RowChange, columns: &[(String, Value)]) {
    push_quoted(out, op_code(row.op));
    out.push(b',');
    push_quoted(out, &row.table_name);
    out.push(b',');
    push_quoted(out, &row.schema);
    out.push(b',');
    out.extend_from_slice(row.commit_ts.get().to_string().as_bytes());
    for (_, value) in columns {
        out.push(b',');
        match value {
            Value::Null => out.extend_from_slice(NULL.as_bytes()),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Text(s) => push_quoted(out, s),
        }
    }
    out.extend_from_slice(TERMINATOR.as_bytes());
}

/// A decode failure: 1-based record number and reason.
pub type CsvError = (usize, String);
/// Decoded rows with their (schema, table).
pub type DecodedRows = Vec<(String, String, DecodedRow)>;

/// One parsed field.
#[derive(Debug, PartialEq, Eq)]
struct Field {
    text: String,
    quoted: bool,
}

/// Splits CSV text into terminated records (1-based record number, fields). A final record
/// without terminator is a torn write (never covered by a checkpoint) and is dropped.
fn parse_records(content: &str) -> Result<Vec<(usize, Vec<Field>)>, CsvError> {
    let bytes = content.as_bytes();
    let mut records = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut after_quote = false;
    let mut record_no = 1;
    let mut i = 0;
    let finish = |field: &mut Vec<u8>, quoted: &mut bool, rec: usize| -> Result<Field, CsvError> {
        let text = String::from_utf8(std::mem::take(field))
            .map_err(|_| (rec, "field is not UTF-8".to_owned()))?;
        let f = Field {
            text,
            quoted: *quoted,
        };
        *quoted = false;
        Ok(f)
    };
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                    after_quote = true;
                }
            } else {
                field.push(b);
            }
            i += 1;
            continue;
        }
        match b {
            b'"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            b',' => {
                fields.push(finish(&mut field, &mut quoted, record_no)?);
                after_quote = false;
            }
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' => {
                fields.push(finish(&mut field, &mut quoted, record_no)?);
                after_quote = false;
                records.push((record_no, std::mem::take(&mut fields)));
                record_no += 1;
            }
            _ if after_quote => {
                return Err((
                    record_no,
                    "unexpected character after a closing quote".into(),
                ))
            }
            b'"' => return Err((record_no, "stray quote inside an unquoted field".into())),
            _ => field.push(b),
        }
        i += 1;
    }
    Ok(records)
}

/// Decodes a whole CSV file to (schema, table, row) triples in file order.
pub fn decode_file(content: &str) -> Result<DecodedRows, CsvError> {
    let mut records = parse_records(content)?.into_iter();
    let Some((hno, header)) = records.next() else {
        return Ok(Vec::new());
    };
    if header.len() < META_HEADER.len()
        || header
            .iter()
            .zip(META_HEADER)
            .any(|(f, want)| f.text != want)
    {
        return Err((
            hno,
            format!("the header must start with {}", META_HEADER.join(",")),
        ));
    }
    let names: Vec<String> = header
        .into_iter()
        .skip(META_HEADER.len())
        .map(|f| f.text)
        .collect();
    if names.is_empty() {
        return Err((hno, "the header names no columns".into()));
    }
    let mut out = Vec::new();
    for (no, fields) in records {
        if fields.len() != META_HEADER.len() + names.len() {
            return Err((
                no,
                format!(
                    "expected {} fields, found {}",
                    META_HEADER.len() + names.len(),
                    fields.len()
                ),
            ));
        }
        let mut it = fields.into_iter();
        let (Some(op), Some(table), Some(schema), Some(ts)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err((no, "missing meta fields".into()));
        };
        let op = match op.text.as_str() {
            "I" => RowOp::Insert,
            "U" => RowOp::Update,
            "D" => RowOp::Delete,
            other => return Err((no, format!("unknown operation '{other}'"))),
        };
        let commit_ts: u64 = ts
            .text
            .parse()
            .map_err(|_| (no, format!("commit ts '{}' is not a number", ts.text)))?;
        let mut columns = Vec::with_capacity(names.len());
        for (name, f) in names.iter().zip(it) {
            let value = if f.quoted {
                Value::Text(f.text)
            } else if f.text == NULL {
                Value::Null
            } else {
                Value::Int(f.text.parse().map_err(|_| {
                    (
                        no,
                        format!("column '{name}': '{}' is not an integer", f.text),
                    )
                })?)
            };
            columns.push((name.clone(), value));
        }
        let key = match columns.first() {
            Some((_, Value::Int(k))) => *k,
            _ => return Err((no, "the first (key) column is not an integer".into())),
        };
        out.push((
            schema.text,
            table.text,
            DecodedRow {
                op,
                commit_ts: Ts(commit_ts),
                key,
                columns,
                old: None,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_quotes_nulls_and_torn_tail() {
        let text = "a,b\r\n\"x,\"\"y\"\"\r\nz\",\\N\r\n\"\\N\",12\r\n\"torn";
        let recs = parse_records(text).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].1[0].text, "x,\"y\"\r\nz");
        assert!(recs[1].1[0].quoted);
        assert_eq!(recs[1].1[1].text, "\\N");
        assert!(!recs[1].1[1].quoted);
        assert!(recs[2].1[0].quoted);
        assert!(parse_records("\"a\"b\r\n").is_err());
        assert!(parse_records("a\"b\r\n").is_err());
    }
}
