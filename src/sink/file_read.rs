//! Reading a `file://` sink back: the changefeed `metadata` and every table version's data
//! files in index order (what `cdc verify` folds). See [`super::file`] for the layout.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rcdc_state::{ChangefeedId, Ts};

use super::file::{data_file_index, unescape_component, METADATA_FILE};
use super::{canal_json, changefeed_dir, csv, DecodedRow, SinkError, TableDir};

/// Reads the changefeed start ts recorded in `<root>/<changefeed>/metadata`, if any.
pub fn read_start_ts(root: &Path, changefeed: &ChangefeedId) -> Result<Option<Ts>, SinkError> {
    let path = changefeed_dir(root, changefeed).join(METADATA_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SinkError::io(&path, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| SinkError::Corrupt {
        path: path.clone(),
        line: 0,
        reason: e.to_string(),
    })?;
    Ok(v.get("rcdc-start-ts")
        .and_then(serde_json::Value::as_u64)
        .map(Ts))
}

/// The changefeeds that have a `metadata` file under `root`, by directory name.
pub fn recorded_changefeeds(root: &Path) -> Result<Vec<String>, SinkError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| SinkError::io(root, e))? {
        let entry = entry.map_err(|e| SinkError::io(root, e))?;
        if entry.path().join(METADATA_FILE).is_file() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `<root>/<changefeed>/metadata`; `None` if it does not exist yet.
pub fn read_checkpoint(root: &Path, changefeed: &ChangefeedId) -> Result<Option<Ts>, SinkError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(rename = "checkpoint-ts")]
        checkpoint_ts: u64,
    }
    let path = changefeed_dir(root, changefeed).join(METADATA_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SinkError::io(&path, e)),
    };
    let m: Metadata = serde_json::from_str(&text).map_err(|e| SinkError::Corrupt {
        path: path.clone(),
        line: 0,
        reason: e.to_string(),
    })?;
    Ok(Some(Ts(m.checkpoint_ts)))
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, SinkError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| SinkError::io(dir, e))? {
        let entry = entry.map_err(|e| SinkError::io(dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| SinkError::io(entry.path(), e))?
            .is_dir();
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), entry.path(), is_dir));
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes every data file of a changefeed, per table version, rows in file order (files by
/// index). Torn records at the end of a file (unterminated) are dropped. A missing changefeed
/// directory yields no tables. Directories that are not a table version (`meta`, ...) are
/// skipped.
pub fn read_table_files(
    root: &Path,
    changefeed: &ChangefeedId,
) -> Result<Vec<(TableDir, Vec<DecodedRow>)>, SinkError> {
    let cf_dir = changefeed_dir(root, changefeed);
    if !cf_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut tables = Vec::new();
    for (schema, schema_path, is_dir) in sorted_entries(&cf_dir)? {
        if !is_dir {
            continue;
        }
        for (table, table_path, is_dir) in sorted_entries(&schema_path)? {
            if !is_dir {
                continue;
            }
            for (version, version_path, is_dir) in sorted_entries(&table_path)? {
                let Ok(version) = version.parse::<u64>() else {
                    continue;
                };
                if !is_dir {
                    continue;
                }
                let dir = TableDir {
                    schema: unescape_component(&schema),
                    table: unescape_component(&table),
                    version: Ts(version),
                };
                let rows = read_one_table(&dir, &version_path)?;
                tables.push((dir, rows));
            }
        }
    }
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tables)
}

fn read_one_table(ident: &TableDir, dir: &Path) -> Result<Vec<DecodedRow>, SinkError> {
    let mut files: Vec<(u64, String, PathBuf)> = sorted_entries(dir)?
        .into_iter()
        .filter(|(_, _, is_dir)| !is_dir)
        .filter_map(|(name, path, _)| data_file_index(&name).map(|i| (i, name, path)))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for (_, name, path) in files {
        let bytes = fs::read(&path).map_err(|e| SinkError::io(&path, e))?;
        // Everything after the last newline is a torn record.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let corrupt = |line: usize, reason: String| SinkError::Corrupt {
            path: path.clone(),
            line,
            reason,
        };
        let text = std::str::from_utf8(&bytes[..end])
            .map_err(|e| corrupt(0, format!("not UTF-8: {e}")))?;
        let decoded = if name.ends_with(".csv") {
            csv::decode_file(text).map_err(|(line, reason)| corrupt(line, reason))?
        } else {
            let mut out = Vec::new();
            for (i, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(r) =
                    canal_json::decode(line).map_err(|reason| corrupt(i + 1, reason))?
                {
                    out.push(r);
                }
            }
            out
        };
        for (schema, table, row) in decoded {
            if schema != ident.schema || table != ident.table {
                return Err(corrupt(
                    0,
                    format!(
                        "row of {schema}.{table} in the directory of {}.{}",
                        ident.schema, ident.table
                    ),
                ));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}
