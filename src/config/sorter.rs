//! `[sorter]`: TiCDC v5's sorter keys (facts §7.3), and what rcdc makes of each.
//!
//! | key | TiCDC default | rcdc |
//! |---|---|---|
//! | `sort-dir` | `/tmp/sorter` | where runs spill when set; else `<data-dir>/tmp/sorter` |
//! | `max-memory-percentage` | 30 | with `max-memory-consumption`, bounds all sorters' memory together: the smaller of this share of the machine's memory and that many bytes |
//! | `max-memory-consumption` | 16 GiB | see above |
//! | `chunk-size-limit` | 128 MiB | the largest run a table keeps in memory (with `per-table-memory-quota`, the smaller wins) |
//! | `num-concurrent-worker` | 4 | table pulls (each sorts) running at once on the data plane; rcdc's default is one per core |
//! | `num-workerpool-goroutine` | 16 | validated, not used: the data plane's threads are sized by cores |
//! | `cache-size-in-mb` | 128 | accepted, not used (a later TiCDC's pebble cache) |

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::pipeline::sorter::memory::{system_memory_bytes, SorterMemory};

/// The `[sorter]` section as written.
#[allow(dead_code)] // cache-size-in-mb is type-checked only
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct SorterSection {
    sort_dir: Option<String>,
    cache_size_in_mb: Option<u64>,
    max_memory_percentage: Option<u64>,
    max_memory_consumption: Option<u64>,
    num_workerpool_goroutine: Option<u64>,
    num_concurrent_worker: Option<u64>,
    chunk_size_limit: Option<u64>,
}

/// The resolved `[sorter]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SorterSettings {
    /// `sort-dir`, when set.
    pub sort_dir: Option<PathBuf>,
    /// `max-memory-percentage` (0..=100).
    pub max_memory_percentage: u8,
    /// `max-memory-consumption` in bytes.
    pub max_memory_consumption: u64,
    /// `chunk-size-limit` in bytes (≥ 1 MiB).
    pub chunk_size_limit: u64,
    /// `num-concurrent-worker`, when set (≥ 1).
    pub num_concurrent_worker: Option<usize>,
    /// `num-workerpool-goroutine` (1..=4096; not used).
    pub num_workerpool_goroutine: u64,
}

impl Default for SorterSettings {
    fn default() -> Self {
        Self {
            sort_dir: None,
            max_memory_percentage: 30,
            max_memory_consumption: 16 << 30,
            chunk_size_limit: 128 << 20,
            num_concurrent_worker: None,
            num_workerpool_goroutine: 16,
        }
    }
}

impl SorterSettings {
    /// Validates the section (TiCDC's ranges), keeping defaults for what it leaves out.
    pub(super) fn resolve(section: Option<&SorterSection>) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        let Some(s) = section else { return Ok(out) };
        out.sort_dir = s
            .sort_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if let Some(p) = s.max_memory_percentage {
            out.max_memory_percentage =
                u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                    invalid("sorter.max-memory-percentage", p, "must be within 0..=100")
                })?;
        }
        if let Some(n) = s.max_memory_consumption {
            out.max_memory_consumption = n;
        }
        if let Some(n) = s.num_workerpool_goroutine {
            if !(1..=4096).contains(&n) {
                return Err(invalid(
                    "sorter.num-workerpool-goroutine",
                    n,
                    "must be within 1..=4096",
                ));
            }
            out.num_workerpool_goroutine = n;
        }
        if let Some(n) = s.chunk_size_limit {
            if n < 1024 * 1024 {
                return Err(invalid(
                    "sorter.chunk-size-limit",
                    n,
                    "must be at least 1048576 (1 MiB)",
                ));
            }
            out.chunk_size_limit = n;
        }
        if let Some(n) = s.num_concurrent_worker {
            let workers = usize::try_from(n).ok().filter(|n| (1..=4096).contains(n));
            out.num_concurrent_worker = Some(workers.ok_or_else(|| {
                invalid("sorter.num-concurrent-worker", n, "must be within 1..=4096")
            })?);
        }
        Ok(out)
    }

    /// The process-wide bound on sorters' memory, from this machine's memory.
    pub fn memory(&self) -> SorterMemory {
        SorterMemory::from_keys(
            self.max_memory_percentage,
            self.max_memory_consumption,
            system_memory_bytes(),
        )
    }

    /// The section as `GET /config` shows it (TiCDC's keys), with the sort dir in use.
    pub(super) fn to_json(&self, sort_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "sort-dir": sort_dir.display().to_string(),
            "max-memory-percentage": self.max_memory_percentage,
            "max-memory-consumption": self.max_memory_consumption,
            "chunk-size-limit": self.chunk_size_limit,
            "num-concurrent-worker": self.num_concurrent_worker,
            "num-workerpool-goroutine": self.num_workerpool_goroutine,
        })
    }
}
