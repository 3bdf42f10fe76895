//! The sorter between a table's change stream and its sink (TiCDC's unified sorter).
//!
//! Row changes may arrive out of commit-ts order (a real upstream interleaves regions); the
//! sink must see them in commit-ts order, and only once it is known that nothing older can
//! still arrive, which is what the resolved ts says. So the sorter buffers rows and releases
//! exactly those with `commit_ts <= resolved`, in `(commit_ts, arrival)` order.
//!
//! Memory is bounded, and the bound never fails the table: when a row would take the buffer
//! past the table's quota (`per-table-memory-quota`, and `[sorter] chunk-size-limit` as the
//! largest in-memory run), or the process's sorters past theirs ([`memory`]), the buffer is
//! sorted and spilled as a run ([`spill`]) under the sort dir ([`dir`]). Releasing merges the
//! runs and the buffer k-way, one block per run in memory, and hands the sink bounded
//! batches. A run's file is removed when it is consumed or the sorter is dropped.
//!
//! All of it is blocking IO: the sorter lives in a table pipeline's pull, which runs on the
//! data plane's blocking pool (`pipeline::executor`), never on an async thread.

pub mod dir;
pub mod memory;
pub mod spill;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use rcdc_state::Ts;

use self::dir::SortDir;
use self::memory::{SorterMemory, MIN_RUN_BYTES};
use self::spill::{Entry, RunReader, SpillError};
use crate::event::{RowChange, TableEvent, Value};

/// How a table's sorter may use memory and disk.
#[derive(Clone, Debug)]
pub struct SorterConfig {
    /// `per-table-memory-quota`: rows buffered in memory, in (estimated heap) bytes.
    pub table_quota: usize,
    /// `[sorter] chunk-size-limit`: the largest run kept in memory.
    pub chunk_limit: usize,
    /// Where runs spill; `None` turns spilling off (a full buffer is then an error).
    pub spill: Option<Arc<SortDir>>,
    /// The process-wide bound shared by every sorter.
    pub memory: Arc<SorterMemory>,
}

impl Default for SorterConfig {
    /// TiCDC's defaults (20 MiB per table, 128 MiB chunks), no spilling, no process bound.
    fn default() -> Self {
        Self {
            table_quota: 20 << 20,
            chunk_limit: 128 << 20,
            spill: None,
            memory: Arc::new(SorterMemory::unlimited()),
        }
    }
}

/// The sorter could not take or release a row.
#[derive(Debug, thiserror::Error)]
pub enum SorterError {
    /// The buffer is at its quota and spilling is off.
    #[error("sorter is full ({used} of {limit} bytes) and has no sort dir to spill to")]
    Full {
        /// Bytes buffered.
        used: usize,
        /// The quota.
        limit: usize,
    },
    /// Spilling or reading a run failed.
    #[error(transparent)]
    Spill(#[from] SpillError),
}

/// Releasing failed: in the sorter, or in the caller's writer.
#[derive(Debug, thiserror::Error)]
pub enum DrainError<E> {
    /// Reading a run failed.
    #[error(transparent)]
    Sorter(#[from] SorterError),
    /// The writer failed.
    #[error(transparent)]
    Write(E),
}

/// A bounded, ordered buffer of one table's row changes (see the module docs).
#[derive(Debug)]
pub struct Sorter {
    config: SorterConfig,
    /// Names this table's run files.
    label: String,
    /// Rows in memory, in arrival order until [`Self::sort_memory`].
    memory: VecDeque<Entry>,
    memory_bytes: usize,
    sorted: bool,
    runs: Vec<RunReader>,
    arrivals: u64,
    resolved: Ts,
    spilled_runs: u64,
}

/// Rows handed to the writer at once.
pub const DRAIN_BATCH: usize = 1024;

impl Sorter {
    /// A sorter starting resolved at `start` (nothing at or before it will be released: it is
    /// already replicated). `label` names its run files (changefeed and table).
    pub fn new(config: SorterConfig, start: Ts, label: String) -> Self {
        Self {
            config,
            label,
            memory: VecDeque::new(),
            memory_bytes: 0,
            sorted: true,
            runs: Vec::new(),
            arrivals: 0,
            resolved: start,
            spilled_runs: 0,
        }
    }

    /// The resolved ts: every row at or before it has been pushed.
    pub fn resolved(&self) -> Ts {
        self.resolved
    }

    /// Estimated heap bytes of the rows in memory.
    pub fn used_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Rows in memory.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// Whether nothing is buffered, in memory or on disk.
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.runs.is_empty()
    }

    /// Runs on disk now.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Runs spilled since the sorter was made.
    pub fn spilled_runs(&self) -> u64 {
        self.spilled_runs
    }

    /// Buffers an event. Rows at or before the resolved ts are late duplicates of what was
    /// already released and are dropped; a resolved marker never moves backwards.
    pub fn push(&mut self, event: TableEvent) -> Result<(), SorterError> {
        let row = match event {
            TableEvent::Resolved(ts) => {
                self.resolved = self.resolved.max(ts);
                return Ok(());
            }
            TableEvent::Row(row) if row.commit_ts <= self.resolved => return Ok(()),
            TableEvent::Row(row) => row,
        };
        let size = heap_size(&row);
        // An empty buffer always takes one row, so a single huge row cannot wedge it.
        if !self.memory.is_empty() && self.over_budget(size) {
            self.spill()?;
        }
        self.arrivals += 1;
        let entry = Entry {
            seq: self.arrivals,
            row,
        };
        if self
            .memory
            .back()
            .is_some_and(|last| last.order() > entry.order())
        {
            self.sorted = false;
        }
        self.memory.push_back(entry);
        self.memory_bytes += size;
        self.config.memory.add(size);
        Ok(())
    }

    fn over_budget(&self, size: usize) -> bool {
        let table_limit = self.config.table_quota.min(self.config.chunk_limit);
        self.memory_bytes + size > table_limit
            || (self.memory_bytes >= MIN_RUN_BYTES && self.config.memory.would_exceed(size))
    }

    /// Writes the buffer as a sorted run.
    fn spill(&mut self) -> Result<(), SorterError> {
        let Some(dir) = self.config.spill.clone() else {
            return Err(SorterError::Full {
                used: self.memory_bytes,
                limit: self.config.table_quota.min(self.config.chunk_limit),
            });
        };
        self.sort_memory();
        let run = spill::write_run(dir.run_path(&self.label), self.memory.iter())?;
        dir.account_disk(run.bytes() as i64);
        self.runs.push(run);
        self.spilled_runs += 1;
        super::metrics::sorter_spilled();
        self.memory.clear();
        self.release_memory(self.memory_bytes);
        self.publish_sizes();
        Ok(())
    }

    /// The process's sorter sizes, for the gauges.
    fn publish_sizes(&self) {
        let on_disk = self.config.spill.as_ref().map_or(0, |d| d.on_disk_bytes());
        super::metrics::sorter_sizes(self.config.memory.used(), on_disk);
    }

    fn sort_memory(&mut self) {
        if !self.sorted {
            self.memory
                .make_contiguous()
                .sort_unstable_by_key(Entry::order);
            self.sorted = true;
        }
    }

    fn release_memory(&mut self, bytes: usize) {
        self.memory_bytes -= bytes;
        self.config.memory.sub(bytes);
    }

    /// Hands every row with `commit_ts <= resolved` to `write`, in commit-ts order (arrival
    /// order for equal commit ts, which keeps a transaction's rows together), in batches of at
    /// most `batch` rows. Returns the rows released.
    pub fn drain_ready<E>(
        &mut self,
        batch: usize,
        mut write: impl FnMut(&[RowChange]) -> Result<(), E>,
    ) -> Result<u64, DrainError<E>> {
        self.sort_memory();
        let limit = self.resolved;
        let from_memory = self.runs.len();
        // The head of each source that is ready, smallest first; the source index breaks no
        // ties (orders are unique), it only says where to refill from.
        let mut heads = BinaryHeap::new();
        for (i, run) in self.runs.iter_mut().enumerate() {
            if let Some(e) = run.head().map_err(SorterError::from)? {
                if e.row.commit_ts <= limit {
                    heads.push(Reverse((e.order(), i)));
                }
            }
        }
        if let Some(e) = self.memory.front().filter(|e| e.row.commit_ts <= limit) {
            heads.push(Reverse((e.order(), from_memory)));
        }
        let mut out = Vec::with_capacity(batch.min(DRAIN_BATCH.max(1)));
        let mut released = 0u64;
        while let Some(Reverse((_, source))) = heads.pop() {
            let next = if source == from_memory {
                if let Some(entry) = self.memory.pop_front() {
                    self.release_memory(heap_size(&entry.row));
                    out.push(entry.row);
                }
                self.memory.front().map(Entry::order)
            } else {
                let run = &mut self.runs[source];
                if let Some(entry) = run.pop() {
                    out.push(entry.row);
                }
                run.head().map_err(SorterError::from)?.map(Entry::order)
            };
            if let Some(order) = next.filter(|(ts, _)| *ts <= limit) {
                heads.push(Reverse((order, source)));
            }
            if out.len() >= batch.max(1) {
                released += out.len() as u64;
                write(&out).map_err(DrainError::Write)?;
                out.clear();
            }
        }
        if !out.is_empty() {
            released += out.len() as u64;
            write(&out).map_err(DrainError::Write)?;
        }
        self.drop_exhausted_runs();
        self.publish_sizes();
        Ok(released)
    }

    fn drop_exhausted_runs(&mut self) {
        let dir = self.config.spill.clone();
        self.runs.retain(|run| {
            let keep = !run.is_exhausted();
            if !keep {
                if let Some(dir) = &dir {
                    dir.account_disk(-(run.bytes() as i64));
                }
            }
            keep
        });
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        // Run files remove themselves; the process-wide counters are given back here.
        self.config.memory.sub(self.memory_bytes);
        if let Some(dir) = &self.config.spill {
            let on_disk: u64 = self.runs.iter().map(RunReader::bytes).sum();
            dir.account_disk(-(on_disk as i64));
        }
    }
}

/// The heap bytes a buffered row takes, estimated from its allocations (what the quota
/// counts): the entry itself, each string's and vector's capacity, and an allocator overhead
/// per allocation. It errs high rather than low, so that the process's RSS follows the quota.
fn heap_size(row: &RowChange) -> usize {
    const PER_ALLOCATION: usize = 16;
    let string = |s: &String| s.capacity() + PER_ALLOCATION;
    let columns = |columns: &Vec<(String, Value)>| {
        columns.capacity() * std::mem::size_of::<(String, Value)>()
            + PER_ALLOCATION
            + columns
                .iter()
                .map(|(name, value)| {
                    string(name)
                        + match value {
                            Value::Null | Value::Int(_) => 0,
                            Value::Text(t) => string(t),
                        }
                })
                .sum::<usize>()
    };
    std::mem::size_of::<Entry>()
        + string(&row.schema)
        + string(&row.table_name)
        + columns(&row.columns)
        + row.pre_columns.as_ref().map_or(0, columns)
}

#[cfg(test)]
mod tests;
