//! `file://` sink: TiCDC's storage-sink layout on a local directory.
//!
//! ```text
//! <dir>/<changefeed>/metadata                        {"checkpoint-ts":N}, owner-written
//! <dir>/<changefeed>/<schema>/<table>/<version>/schema.json        the table's definition
//! <dir>/<changefeed>/<schema>/<table>/<version>/CDC000001.json     (or .csv)
//! <dir>/<changefeed>/<schema>/<table>/<version>/CDC000002.json
//! <dir>/<changefeed>/<schema>/<table>/<version>/meta/CDC.index     name of the newest file
//! <dir>/<changefeed>/<schema>/<table>/meta/schema_<version>_<crc32>.json   (same bytes)
//! ```
//! Below `<dir>/<changefeed>` this is TiCDC's storage-sink layout with `date-separator=none`
//! and no partition separator: `<version>` is the table version (the commit ts of the DDL
//! that gave the table its definition), and the schema file is written before the first data
//! file of its version (see [`super::schema_file`]). The extra `<changefeed>` level is rcdc's:
//! a TiCDC sink URI belongs to one changefeed, while in rcdc several changefeeds may name the
//! same `file://` directory, so each gets its own directory, which is the "prefix" a TiCDC
//! storage consumer is pointed at.
//!
//! Names are used as given, except that `/`, `\`, `%`, NUL and the names `.`, `..` and the
//! empty name are percent-escaped. File indexes increase monotonically: a reopened table sink
//! continues after the highest existing index and never appends to an old file, so a torn
//! record from a crash stays at the end of its file, where decoding drops it (it was never
//! covered by a checkpoint: only terminated, fsync'ed records are).
//!
//! Rotation happens at a commit-ts boundary once the current file holds `file-size` bytes or
//! is older than `flush-interval` (age read from the injected clock on write and on flush),
//! and for CSV whenever the column names change (each CSV file has one header).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rcdc_state::{ChangefeedId, Ts};

use super::canal_json::{self, ColumnTypes, EncodeOptions};
use super::{
    changefeed_dir, csv, row_image, schema_file, CheckpointWriter, Clock, FileProtocol,
    FileSinkConfig, SinkError, TableIdent, TableSink,
};
use crate::event::{RowChange, TableSchema};

/// Name of the changefeed checkpoint file (TiCDC's storage sink uses the same).
pub const METADATA_FILE: &str = "metadata";
const METADATA_TMP: &str = "metadata.tmp";
const INDEX_DIGITS: usize = 6;
/// Encoded bytes kept in memory before they are written to the file.
const WRITE_BUFFER: usize = 1 << 20;

/// Percent-escapes what cannot be a single path component.
pub(crate) fn escape_component(s: &str) -> String {
    if s.is_empty() {
        return "%".to_owned();
    }
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '\\' => out.push_str("%5C"),
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// Inverse of [`escape_component`].
pub(crate) fn unescape_component(s: &str) -> String {
    if s == "%" {
        return String::new();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 3);
        let decoded = match code {
            Some("2F") => Some('/'),
            Some("5C") => Some('\\'),
            Some("25") => Some('%'),
            Some("00") => Some('\0'),
            Some("2E") => Some('.'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The directory of one table (its versions and `meta/` below it).
pub fn table_root(root: &Path, changefeed: &ChangefeedId, table: &TableIdent) -> PathBuf {
    changefeed_dir(root, changefeed)
        .join(escape_component(&table.schema))
        .join(escape_component(&table.table))
}

/// The directory of one table version's data files.
pub fn table_dir(
    root: &Path,
    changefeed: &ChangefeedId,
    table: &TableIdent,
    version: Ts,
) -> PathBuf {
    table_root(root, changefeed, table).join(version.get().to_string())
}

/// The index of a data file name `CDC<digits>.<json|csv>`.
pub(crate) fn data_file_index(name: &str) -> Option<u64> {
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".csv"))?;
    let digits = stem.strip_prefix("CDC")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(path: &Path) -> Result<(), SinkError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::io(path, e))
}

/// Writes the version's `schema.json` and the table's `meta/schema_<version>_<crc>.json`
/// (same bytes) unless they exist, then fsyncs the directories whose entries changed, so the
/// schema is durable before the version's first data file.
fn write_schema_files(
    dir: &Path,
    table: &TableIdent,
    schema: &TableSchema,
) -> Result<(), SinkError> {
    let content = schema_file::encode(&table.schema, &table.table, schema);
    if schema_file::write_once(&dir.join(schema_file::SCHEMA_FILE), &content)? {
        sync_dir(dir)?;
    }
    let Some(table_root) = dir.parent() else {
        return Ok(());
    };
    let meta = table_root.join("meta");
    fs::create_dir_all(&meta).map_err(|e| SinkError::io(&meta, e))?;
    let name = schema_file::meta_name(schema, &content);
    if schema_file::write_once(&meta.join(name), &content)? {
        sync_dir(&meta)?;
        sync_dir(table_root)?;
    }
    Ok(())
}

struct OpenFile {
    file: File,
    path: PathBuf,
    /// Bytes in the file plus bytes buffered for it.
    bytes: u64,
    opened_ms: u64,
    last_ts: Option<Ts>,
    /// CSV: the column names of the header.
    columns: Vec<String>,
}

/// One table's `file://` sink.
pub struct FileTableSink {
    dir: PathBuf,
    ident: TableIdent,
    protocol: FileProtocol,
    file_size: u64,
    max_age_ms: u64,
    clock: Clock,
    next_index: u64,
    current: Option<OpenFile>,
    buf: Vec<u8>,
    types: ColumnTypes,
    encode: EncodeOptions,
    rows: u64,
    checkpoint: Ts,
    dir_dirty: bool,
    poisoned: bool,
}

impl std::fmt::Debug for FileTableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTableSink")
            .field("dir", &self.dir)
            .field("next_index", &self.next_index)
            .field("rows", &self.rows)
            .finish()
    }
}

impl FileTableSink {
    /// Creates the table version's directory (fsync'ing new directories), writes its schema
    /// files if they are missing, and continues after the highest existing file index.
    pub fn open(
        cfg: &FileSinkConfig,
        changefeed: &ChangefeedId,
        table: &TableIdent,
        schema: &TableSchema,
        clock: Clock,
    ) -> Result<Self, SinkError> {
        let dir = table_dir(&cfg.dir, changefeed, table, schema.version);
        fs::create_dir_all(&dir).map_err(|e| SinkError::io(&dir, e))?;
        write_schema_files(&dir, table, schema)?;
        // Make the new directory entries durable, up to the sink root's parent.
        let mut d: Option<&Path> = Some(&dir);
        while let Some(p) = d {
            sync_dir(p)?;
            if p == cfg.dir {
                break;
            }
            d = p.parent();
        }
        let mut max_index = 0;
        for entry in fs::read_dir(&dir).map_err(|e| SinkError::io(&dir, e))? {
            let entry = entry.map_err(|e| SinkError::io(&dir, e))?;
            if let Some(i) = entry.file_name().to_str().and_then(data_file_index) {
                max_index = max_index.max(i);
            }
        }
        Ok(FileTableSink {
            dir,
            ident: table.clone(),
            protocol: cfg.protocol,
            file_size: cfg.file_size,
            max_age_ms: cfg.flush_interval_ms,
            clock,
            next_index: max_index + 1,
            current: None,
            buf: Vec::with_capacity(64 * 1024),
            types: ColumnTypes::default(),
            encode: EncodeOptions {
                old_value: cfg.enable_old_value,
                tidb_extension: cfg.enable_tidb_extension,
            },
            rows: 0,
            checkpoint: Ts(0),
            dir_dirty: false,
            poisoned: false,
        })
    }

    /// The table's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn poisoned_error(&self) -> SinkError {
        SinkError::Poisoned {
            table: self.ident.display_name(),
        }
    }

    /// Writes buffered bytes to the current file.
    fn drain_buf(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(cur) = &mut self.current {
            cur.file
                .write_all(&self.buf)
                .map_err(|e| SinkError::io(&cur.path, e))?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Finishes the current file: written out and fsync'ed.
    fn finish_file(&mut self) -> Result<(), SinkError> {
        self.drain_buf()?;
        if let Some(cur) = self.current.take() {
            cur.file
                .sync_data()
                .map_err(|e| SinkError::io(&cur.path, e))?;
        }
        Ok(())
    }

    fn open_file(&mut self, now_ms: u64, columns: Vec<String>) -> Result<(), SinkError> {
        loop {
            let name = format!(
                "CDC{:0width$}.{}",
                self.next_index,
                self.protocol.extension(),
                width = INDEX_DIGITS
            );
            let path = self.dir.join(&name);
            self.next_index += 1;
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let meta = self.dir.join("meta");
                    fs::create_dir_all(&meta).map_err(|e| SinkError::io(&meta, e))?;
                    let index = meta.join("CDC.index");
                    fs::write(&index, format!("{name}\n")).map_err(|e| SinkError::io(&index, e))?;
                    if self.protocol == FileProtocol::Csv {
                        csv::encode_header(&mut self.buf, columns.iter().map(String::as_str));
                    }
                    self.current = Some(OpenFile {
                        file,
                        path,
                        bytes: self.buf.len() as u64,
                        opened_ms: now_ms,
                        last_ts: None,
                        columns,
                    });
                    self.dir_dirty = true;
                    return Ok(());
                }
                // Someone else's file (should not happen): take the next index.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SinkError::io(&path, e)),
            }
        }
    }

    fn write_inner(&mut self, rows: &[RowChange]) -> Result<(), SinkError> {
        // Inside the poisoning wrapper, so an injected failure leaves the sink as a real one.
        fail::fail_point!("sink-write", |m| Err(SinkError::failpoint("sink-write", m)));
        let now_ms = self.clock.now_ms();
        for row in rows {
            let image = row_image(row)?;
            if let Some(cur) = &self.current {
                let boundary = cur.last_ts != Some(row.commit_ts);
                let full = cur.bytes >= self.file_size;
                let old = now_ms.saturating_sub(cur.opened_ms) >= self.max_age_ms;
                let header_changed = self.protocol == FileProtocol::Csv
                    && (cur.columns.len() != image.len()
                        || cur
                            .columns
                            .iter()
                            .zip(image.iter())
                            .any(|(a, (b, _))| a != b));
                if header_changed || (boundary && (full || old)) {
                    self.finish_file()?;
                }
            }
            if self.current.is_none() {
                let columns = match self.protocol {
                    FileProtocol::Csv => image.iter().map(|(n, _)| n.clone()).collect(),
                    FileProtocol::CanalJson => Vec::new(),
                };
                self.open_file(now_ms, columns)?;
            }
            let before = self.buf.len();
            match self.protocol {
                FileProtocol::CanalJson => canal_json::encode(
                    &mut self.buf,
                    row,
                    &image,
                    now_ms,
                    &mut self.types,
                    self.encode,
                ),
                FileProtocol::Csv => csv::encode(&mut self.buf, row, &image),
            }
            let added = (self.buf.len() - before) as u64;
            if let Some(cur) = &mut self.current {
                cur.bytes += added;
                cur.last_ts = Some(row.commit_ts);
            }
            self.rows += 1;
            if self.buf.len() >= WRITE_BUFFER {
                self.drain_buf()?;
            }
        }
        Ok(())
    }

    fn flush_inner(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        fail::fail_point!("sink-flush", |m| Err(SinkError::failpoint("sink-flush", m)));
        self.drain_buf()?;
        if let Some(cur) = &self.current {
            cur.file
                .sync_data()
                .map_err(|e| SinkError::io(&cur.path, e))?;
            let now_ms = self.clock.now_ms();
            if now_ms.saturating_sub(cur.opened_ms) >= self.max_age_ms {
                self.current = None;
            }
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.checkpoint = self.checkpoint.max(resolved);
        Ok(self.checkpoint)
    }
}

impl TableSink for FileTableSink {
    fn write(&mut self, rows: &[RowChange]) -> Result<(), SinkError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let r = self.write_inner(rows);
        self.poisoned = r.is_err();
        r
    }

    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let r = self.flush_inner(resolved);
        self.poisoned = r.is_err();
        r
    }

    fn close(&mut self) {
        // Best effort: what is not flushed is above the checkpoint anyway.
        if !self.poisoned {
            let _ = self.drain_buf();
        }
        self.buf.clear();
        self.current = None;
        self.poisoned = true;
    }

    fn rows_written(&self) -> u64 {
        self.rows
    }
}

impl Drop for FileTableSink {
    fn drop(&mut self) {
        self.close();
    }
}

/// The owner's writer of `<dir>/<changefeed>/metadata`.
#[derive(Debug)]
pub struct FileCheckpointWriter {
    dir: PathBuf,
    last: Mutex<Option<Ts>>,
    start: Option<Ts>,
}

impl FileCheckpointWriter {
    /// Creates the changefeed directory if needed.
    pub fn open(root: &Path, changefeed: &ChangefeedId) -> Result<Self, SinkError> {
        let dir = changefeed_dir(root, changefeed);
        fs::create_dir_all(&dir).map_err(|e| SinkError::io(&dir, e))?;
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(FileCheckpointWriter {
            dir,
            last: Mutex::new(None),
            start: None,
        })
    }

    /// The metadata file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(METADATA_FILE)
    }
}

impl CheckpointWriter for FileCheckpointWriter {
    /// Writes `{"checkpoint-ts":N}` to a temp file, fsyncs it, renames it over `metadata` and
    /// fsyncs the directory. A repeat of the last value is skipped.
    fn write_checkpoint(&self, ts: Ts) -> Result<(), SinkError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(ts) {
            return Ok(());
        }
        let tmp = self.dir.join(METADATA_TMP);
        let body = match self.start {
            Some(start) => format!(
                "{{\"checkpoint-ts\":{},\"rcdc-start-ts\":{}}}",
                ts.get(),
                start.get()
            ),
            None => format!("{{\"checkpoint-ts\":{}}}", ts.get()),
        };
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| SinkError::io(&tmp, e))?;
        let path = self.path();
        fs::rename(&tmp, &path).map_err(|e| SinkError::io(&path, e))?;
        sync_dir(&self.dir)?;
        *last = Some(ts);
        Ok(())
    }

    fn set_start_ts(&mut self, start: Ts) {
        self.start = Some(start);
    }
}
