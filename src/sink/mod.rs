//! Sinks: where a changefeed's row changes go (target-design §8).
//!
//! - `blackhole://` discards everything and counts rows (benchmarks).
//! - `file:///abs/dir?protocol=canal-json|csv` writes per-table-version files in the layout of
//!   TiCDC's storage sink, with a `schema.json` per table version (see [`file`]), plus a
//!   changefeed `metadata` file holding the checkpoint.
//!
//! Delivery is at least once, in commit-ts order per table. The contract between the table
//! pipeline and a [`TableSink`]:
//! 1. [`TableSink::write`] is given rows in commit-ts order; it may buffer them.
//! 2. [`TableSink::flush`]`(resolved)` is called once every row with commit ts ≤ `resolved` has
//!    been written; when it returns `Ok(cp)`, every row with commit ts ≤ `cp` is durable
//!    (fsync'ed). The table's checkpoint may then advance to `cp`, never further.
//! 3. After any error the sink is poisoned: the pipeline must drop it and open a new one,
//!    re-sending from the table checkpoint (the duplicates fold away, see [`fold_rows`]).
//!
//! The owner writes the changefeed checkpoint through a [`CheckpointWriter`]; a consumer folds
//! the files by key in commit-ts order up to that checkpoint ([`read_table_files`],
//! [`read_checkpoint`], [`fold_rows`]).
//!
//! Everything here is synchronous and may block for as long as the disk takes (writes, fsync).
//! Where it runs:
//! - table sinks are opened, written, flushed and closed only by table pipelines, on the
//!   data-plane runtime's bounded blocking pool (see [`crate::pipeline::executor`]), never on
//!   a thread that runs the session keep-alive or an etcd worker;
//! - the checkpoint writer is called by the owner's effect executor, a task on the control
//!   plane's runtime. `DataPlane` keeps one writer per changefeed and skips unchanged values,
//!   so that is one small write + fsync + rename per changefeed whose checkpoint moved, per
//!   owner flush.

pub mod blackhole;
pub mod canal_json;
pub mod csv;
pub mod file;
mod file_read;
pub mod schema_file;
mod uri;

#[cfg(test)]
mod file_format_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod uri_tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcdc_state::{ChangefeedId, TableId, Ts};

use crate::event::{RowChange, RowOp, TableSchema, Value};

pub use blackhole::{BlackholeCheckpointWriter, BlackholeSink};
pub use file::{FileCheckpointWriter, FileTableSink};
pub use file_read::{read_checkpoint, read_start_ts, read_table_files, recorded_changefeeds};
pub use uri::{mask_uri, parse_sink_uri};

/// Errors of sink URIs, sink IO and sink file decoding.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink URI was rejected at changefeed-create time. `uri` is masked.
    #[error("invalid sink URI '{uri}': {reason}")]
    InvalidUri {
        /// The URI with any password masked.
        uri: String,
        /// What is wrong, naming the offending part.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("sink I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A row cannot be represented by the sink (a bug upstream of the sink).
    #[error("invalid row for table {table}: {reason}")]
    InvalidRow {
        /// `schema.table`.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A sink file or the metadata file does not decode.
    #[error("corrupt sink file {} line {line}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line (record) number; 0 for the whole file.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An earlier error left the sink in an unknown state; it must be reopened.
    #[error("table sink for {table} failed earlier and must be reopened")]
    Poisoned {
        /// `schema.table`.
        table: String,
    },
    /// A failpoint injected this failure (failpoint builds only).
    #[cfg(feature = "failpoints")]
    #[error("failpoint {point}: {message}")]
    Failpoint {
        /// The failpoint's name.
        point: &'static str,
        /// Its `return(...)` argument, or a default.
        message: String,
    },
}

impl SinkError {
    /// The error a failpoint's `return(msg)` injects.
    #[cfg(feature = "failpoints")]
    pub(crate) fn failpoint(point: &'static str, message: Option<String>) -> Self {
        SinkError::Failpoint {
            point,
            message: message.unwrap_or_else(|| "injected".to_owned()),
        }
    }

    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SinkError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The encoding of a file sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileProtocol {
    /// Canal JSON, one message per line (`.json` files).
    CanalJson,
    /// TiCDC's CSV (`.csv` files).
    Csv,
}

impl FileProtocol {
    /// The name used in `protocol=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileProtocol::CanalJson => "canal-json",
            FileProtocol::Csv => "csv",
        }
    }
    /// The data file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileProtocol::CanalJson => "json",
            FileProtocol::Csv => "csv",
        }
    }
}

/// Default `file-size`: 64 MiB (TiCDC's storage sink).
pub const DEFAULT_FILE_SIZE: u64 = 64 * 1024 * 1024;
/// Default `flush-interval`: 5 s (TiCDC's storage sink).
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 5_000;
/// Default `worker-count`: 16 (TiCDC's storage sink; accepted, unused by the file sink).
pub const DEFAULT_WORKER_COUNT: u32 = 16;

/// A validated `file://` sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Absolute root directory.
    pub dir: PathBuf,
    /// Encoding.
    pub protocol: FileProtocol,
    /// A data file is rotated once it holds at least this many bytes (at a commit-ts boundary).
    pub file_size: u64,
    /// A data file is rotated once it is older than this (checked on write and flush).
    pub flush_interval_ms: u64,
    /// Accepted for TiCDC compatibility; the file sink writes each table on its caller's thread.
    pub worker_count: u32,
    /// `enable-tidb-extension` (TiCDC's name and default `false`): canal-json messages carry
    /// the `_tidb` field with the commit ts. `cdc verify` needs it for canal-json.
    pub enable_tidb_extension: bool,
    /// The changefeed's `enable-old-value` (replica config, not a URI parameter; TiCDC v5's
    /// default `true`): canal-json UPDATEs carry the row before the change in `old`.
    pub enable_old_value: bool,
}

impl FileSinkConfig {
    /// A config with TiCDC's defaults.
    pub fn new(dir: impl Into<PathBuf>, protocol: FileProtocol) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            protocol,
            file_size: DEFAULT_FILE_SIZE,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            worker_count: DEFAULT_WORKER_COUNT,
            enable_tidb_extension: false,
            enable_old_value: true,
        }
    }
}

/// A parsed, validated sink URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// `blackhole://`.
    Blackhole,
    /// `file:///abs/dir?protocol=...`.
    File(FileSinkConfig),
}

/// One table as the sink names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableIdent {
    /// Schema (database) name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Physical table id (a re-created table gets a new id, hence a new directory).
    pub table_id: TableId,
}

impl TableIdent {
    /// Builds an ident.
    pub fn new(schema: impl Into<String>, table: impl Into<String>, table_id: TableId) -> Self {
        TableIdent {
            schema: schema.into(),
            table: table.into(),
            table_id,
        }
    }
    /// The ident of a row's table.
    pub fn of_row(row: &RowChange) -> Self {
        TableIdent::new(row.schema.clone(), row.table_name.clone(), row.table)
    }
    /// `schema.table`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// One row read back from sink files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRow {
    /// What happened.
    pub op: RowOp,
    /// Commit ts of the upstream transaction.
    pub commit_ts: Ts,
    /// The primary key (the first column of the image).
    pub key: i64,
    /// The row image, in table order.
    pub columns: Vec<(String, Value)>,
    /// The row before the change, when the file carries it (canal-json's `old` of an UPDATE).
    pub old: Option<Vec<(String, Value)>>,
}

/// One table version's directory as read back from a file sink.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableDir {
    /// Schema (database) name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The table version (the directory's name).
    pub version: Ts,
}

/// One table's output. Owned by the table pipeline; see the module docs for the contract.
pub trait TableSink: Send {
    /// Accepts rows in commit-ts order; may buffer them.
    fn write(&mut self, rows: &[RowChange]) -> Result<(), SinkError>;
    /// Makes every row written so far durable and returns the table checkpoint: every row
    /// with commit ts ≤ it is durable. Never less than an earlier return.
    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError>;
    /// Releases files. Unflushed rows may be lost (they are above the checkpoint).
    fn close(&mut self);
    /// Rows accepted by `write` since open.
    fn rows_written(&self) -> u64;
}

/// The owner's changefeed-level checkpoint record.
pub trait CheckpointWriter: Send + Sync {
    /// Durably records that every table's files are complete up to `ts`.
    fn write_checkpoint(&self, ts: Ts) -> Result<(), SinkError>;
    /// Also record the changefeed's start ts with every checkpoint (rcdc's additive
    /// `rcdc-start-ts` field), so a consumer knows the window the files cover.
    fn set_start_ts(&mut self, _start: Ts) {}
}

/// The clock a sink reads (Unix milliseconds): the reactor's, so tests and simulation inject
/// time and only `SystemClock` reads the wall clock.
pub type Clock = Arc<dyn rcdc_reactor::Clock>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(rcdc_reactor::SystemClock)
}

/// Opens the sink of one table of a changefeed, whose definition is `schema`.
pub fn open_table_sink(
    spec: &SinkSpec,
    changefeed: &ChangefeedId,
    table: &TableIdent,
    schema: &TableSchema,
) -> Result<Box<dyn TableSink>, SinkError> {
    match spec {
        SinkSpec::Blackhole => Ok(Box::new(BlackholeSink::new())),
        SinkSpec::File(cfg) => Ok(Box::new(FileTableSink::open(
            cfg,
            changefeed,
            table,
            schema,
            system_clock(),
        )?)),
    }
}

/// Opens the owner's checkpoint writer of a changefeed.
pub fn open_checkpoint_writer(
    spec: &SinkSpec,
    changefeed: &ChangefeedId,
) -> Result<Box<dyn CheckpointWriter>, SinkError> {
    match spec {
        SinkSpec::Blackhole => Ok(Box::new(BlackholeCheckpointWriter::default())),
        SinkSpec::File(cfg) => Ok(Box::new(FileCheckpointWriter::open(&cfg.dir, changefeed)?)),
    }
}

/// Folds decoded rows by key in commit-ts order, keeping rows with commit ts ≤ `upto`: the last
/// write per key wins (a `Delete` entry means the key is absent). Rows with equal commit ts keep
/// their file order, so duplicates from at-least-once delivery fold to the same state.
pub fn fold_rows(rows: &[DecodedRow], upto: Ts) -> BTreeMap<i64, DecodedRow> {
    let mut ordered: Vec<&DecodedRow> = rows.iter().filter(|r| r.commit_ts <= upto).collect();
    ordered.sort_by_key(|r| r.commit_ts);
    let mut out = BTreeMap::new();
    for row in ordered {
        out.insert(row.key, row.clone());
    }
    out
}

/// The directory of a changefeed under a file sink's root.
pub fn changefeed_dir(root: &Path, changefeed: &ChangefeedId) -> PathBuf {
    root.join(file::escape_component(changefeed.as_str()))
}

/// The image a sink writes for a row: its columns, key column first. A row without columns
/// (a delete whose image is unknown) is written as `id = key`.
pub(crate) fn row_image(row: &RowChange) -> Result<Cow<'_, [(String, Value)]>, SinkError> {
    match row.columns.first() {
        None => Ok(Cow::Owned(vec![("id".to_owned(), Value::Int(row.key))])),
        Some((_, Value::Int(k))) if *k == row.key => Ok(Cow::Borrowed(&row.columns)),
        Some((name, v)) => Err(SinkError::InvalidRow {
            table: format!("{}.{}", row.schema, row.table_name),
            reason: format!(
                "the first column '{name}' = {v:?} is not the key {} (the key column must come first)",
                row.key
            ),
        }),
    }
}
