//! Spilled runs: one sorted slice of a table's rows, in a file of its own under the sort dir.
//!
//! # Format
//! ```text
//! "RCDCRUN1"                                   magic, 8 bytes
//! block*:  len u32 LE | rows u32 LE | crc32 u32 LE | payload (`rows` postcard-encoded rows)
//! ```
//! A block holds about [`BLOCK_BYTES`] of encoded rows, so a reader keeps one block per run in
//! memory while the runs are merged. The CRC32 covers the payload; a wrong checksum, a
//! truncated block, an implausible length or a payload that does not decode to exactly `rows`
//! rows is a [`SpillError::Corrupt`] naming the file and the offset: a corrupt run is never
//! used. A file lives only as long as the process that wrote it (stale ones are removed at the
//! next start), so the format has no version to migrate.
//!
//! Nothing is fsync'ed: a spilled run is never the only copy of a change. A crash loses the
//! run and the table restarts from its checkpoint, which the upstream still holds.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rcdc_state::{TableId, Ts};
use serde::{Deserialize, Serialize};

use crate::event::{RowChange, RowOp, Value};

const MAGIC: &[u8; 8] = b"RCDCRUN1";
const BLOCK_HEADER: usize = 12;
/// Encoded bytes per block (a block ends after the row that crosses this).
pub const BLOCK_BYTES: usize = 32 << 10;
/// A block longer than this is garbage, not a row (rows are bounded by TiDB's 6 MiB entry
/// limit, far below it).
const MAX_BLOCK: u32 = 256 << 20;

/// A row in the sorter, with its arrival number (the tie-break that keeps a transaction's rows
/// in arrival order when their commit ts are equal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Arrival number within the sorter.
    pub seq: u64,
    /// The row.
    pub row: RowChange,
}

impl Entry {
    /// The merge order: commit ts, then arrival.
    pub fn order(&self) -> (Ts, u64) {
        (self.row.commit_ts, self.seq)
    }
}

/// What goes to disk for one row (borrowed, so spilling clones nothing).
#[derive(Serialize)]
struct RowRef<'a> {
    seq: u64,
    table: i64,
    schema: &'a str,
    table_name: &'a str,
    commit_ts: Ts,
    start_ts: Ts,
    op: RowOp,
    key: i64,
    columns: &'a [(String, Value)],
    pre_columns: Option<&'a [(String, Value)]>,
}

/// [`RowRef`] read back.
#[derive(Deserialize)]
struct RowOwned {
    seq: u64,
    table: i64,
    schema: String,
    table_name: String,
    commit_ts: Ts,
    start_ts: Ts,
    op: RowOp,
    key: i64,
    columns: Vec<(String, Value)>,
    pre_columns: Option<Vec<(String, Value)>>,
}

impl<'a> From<&'a Entry> for RowRef<'a> {
    fn from(e: &'a Entry) -> Self {
        let r = &e.row;
        RowRef {
            seq: e.seq,
            table: r.table.0,
            schema: &r.schema,
            table_name: &r.table_name,
            commit_ts: r.commit_ts,
            start_ts: r.start_ts,
            op: r.op,
            key: r.key,
            columns: &r.columns,
            pre_columns: r.pre_columns.as_deref(),
        }
    }
}

impl From<RowOwned> for Entry {
    fn from(r: RowOwned) -> Self {
        Entry {
            seq: r.seq,
            row: RowChange {
                table: TableId(r.table),
                schema: r.schema,
                table_name: r.table_name,
                commit_ts: r.commit_ts,
                start_ts: r.start_ts,
                op: r.op,
                key: r.key,
                columns: r.columns,
                pre_columns: r.pre_columns,
            },
        }
    }
}

/// Spilling or reading back failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The sort dir's file system is full (or the user's quota is spent).
    #[error("no space left for the sorter in {dir}: the table stops and restarts from its checkpoint once space is freed")]
    DiskFull {
        /// The sort dir.
        dir: PathBuf,
    },
    /// Another IO error on a spill file.
    #[error("cannot {action} spill file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A spill file does not read back as written.
    #[error("spill file {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Offset of the bad block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl SpillError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        if matches!(
            source.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        ) {
            let dir = path.parent().unwrap_or(path).to_path_buf();
            return SpillError::DiskFull { dir };
        }
        SpillError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The file of a run; removed when the run is dropped (consumed, or its table stopped).
#[derive(Debug)]
struct RunFile {
    path: PathBuf,
    file: File,
}

impl Drop for RunFile {
    fn drop(&mut self) {
        // Already gone when the sort dir was cleaned at exit; nothing else can be done here.
        let _ = fs::remove_file(&self.path);
    }
}

/// Writes `entries` (sorted by [`Entry::order`]) as a new run file at `path` and returns its
/// reader, positioned at the first row. A failed write removes the partial file.
pub fn write_run<'a>(
    path: PathBuf,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<RunReader, SpillError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SpillError::io("create", &path, e))?;
    // From here on, dropping `run` removes the file, on success or failure alike.
    let mut run = RunFile { path, file };
    let mut writer = BlockWriter::default();
    writer.buf.extend_from_slice(MAGIC);
    for entry in entries {
        writer.push(&RowRef::from(entry), &run.path)?;
        if writer.payload_len() >= BLOCK_BYTES {
            writer.flush(&mut run)?;
        }
    }
    writer.flush(&mut run)?;
    let bytes = writer.written;
    run.file
        .seek(SeekFrom::Start(MAGIC.len() as u64))
        .map_err(|e| SpillError::io("rewind", &run.path, e))?;
    Ok(RunReader {
        run,
        offset: MAGIC.len() as u64,
        bytes,
        block: VecDeque::new(),
        done: false,
    })
}

/// Builds blocks in memory and writes each with one `write_all`.
#[derive(Default)]
struct BlockWriter {
    /// Bytes not yet written: pending header + payload (or the magic before the first block).
    buf: Vec<u8>,
    /// Where the current block's header starts in `buf`, once a row is pushed.
    header_at: Option<usize>,
    rows: u32,
    written: u64,
}

impl BlockWriter {
    fn push(&mut self, row: &RowRef<'_>, path: &Path) -> Result<(), SpillError> {
        if self.header_at.is_none() {
            self.header_at = Some(self.buf.len());
            self.buf.extend_from_slice(&[0; BLOCK_HEADER]);
        }
        // Encoding into a growable Vec fails only on a bug (a type postcard cannot encode).
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(row, buf)
            .map_err(|e| SpillError::io("encode a row for", path, io::Error::other(e)))?;
        self.rows += 1;
        Ok(())
    }

    fn payload_len(&self) -> usize {
        self.header_at
            .map_or(0, |at| self.buf.len() - at - BLOCK_HEADER)
    }

    fn flush(&mut self, run: &mut RunFile) -> Result<(), SpillError> {
        if let Some(at) = self.header_at.take() {
            let payload = &self.buf[at + BLOCK_HEADER..];
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            let crc = crc32fast::hash(payload);
            self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            self.buf[at + 4..at + 8].copy_from_slice(&self.rows.to_le_bytes());
            self.buf[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        injected_write_error(&run.path)?;
        run.file
            .write_all(&self.buf)
            .map_err(|e| SpillError::io("write", &run.path, e))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.rows = 0;
        Ok(())
    }
}

/// The `sorter-spill-write` failpoint: `return(enospc)` is a full disk, `return(msg)` another
/// write error.
fn injected_write_error(path: &Path) -> Result<(), SpillError> {
    fail::fail_point!("sorter-spill-write", |msg: Option<String>| {
        let msg = msg.unwrap_or_default();
        let err = if msg == "enospc" {
            io::Error::from(ErrorKind::StorageFull)
        } else {
            io::Error::other(format!("failpoint sorter-spill-write: {msg}"))
        };
        Err(SpillError::io("write", path, err))
    });
    let _ = path;
    Ok(())
}

/// A run being merged: its rows in order, one block in memory at a time.
#[derive(Debug)]
pub struct RunReader {
    run: RunFile,
    /// Offset of the next block.
    offset: u64,
    /// Size of the file.
    bytes: u64,
    block: VecDeque<Entry>,
    done: bool,
}

impl RunReader {
    /// Bytes the run's file takes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The run's next row, reading its next block when the current one is used up; `None`
    /// once the run is exhausted.
    pub fn head(&mut self) -> Result<Option<&Entry>, SpillError> {
        if self.block.is_empty() && !self.done {
            self.read_block()?;
        }
        Ok(self.block.front())
    }

    /// Takes the row [`Self::head`] returned.
    pub fn pop(&mut self) -> Option<Entry> {
        self.block.pop_front()
    }

    /// Whether every row has been taken.
    pub fn is_exhausted(&self) -> bool {
        self.done && self.block.is_empty()
    }

    fn corrupt(&self, reason: impl Into<String>) -> SpillError {
        SpillError::Corrupt {
            path: self.run.path.clone(),
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn read_block(&mut self) -> Result<(), SpillError> {
        fail::fail_point!("sorter-spill-read", |msg: Option<String>| {
            Err(self.corrupt(format!(
                "failpoint sorter-spill-read: {}",
                msg.unwrap_or_default()
            )))
        });
        if self.offset == self.bytes {
            self.done = true;
            return Ok(());
        }
        let mut header = [0u8; BLOCK_HEADER];
        self.read_exact(&mut header)?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, rows, crc) = (word(0), word(4), word(8));
        if len > MAX_BLOCK || u64::from(len) > self.bytes - self.offset - BLOCK_HEADER as u64 {
            return Err(self.corrupt(format!("block length {len} runs past the end of the file")));
        }
        let mut payload = vec![0u8; len as usize];
        self.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Err(self.corrupt("checksum mismatch"));
        }
        let mut rest = payload.as_slice();
        for _ in 0..rows {
            let (row, tail) = postcard::take_from_bytes::<RowOwned>(rest)
                .map_err(|e| self.corrupt(format!("undecodable row: {e}")))?;
            self.block.push_back(row.into());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(self.corrupt(format!(
                "{} bytes after the block's {rows} rows",
                rest.len()
            )));
        }
        self.offset += (BLOCK_HEADER + payload.len()) as u64;
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SpillError> {
        self.run.file.read_exact(buf).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => self.corrupt("truncated block"),
            _ => SpillError::io("read", &self.run.path, e),
        })
    }
}

#[cfg(test)]
mod tests;
