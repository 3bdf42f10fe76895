//! The process-wide bound on rows held in sorters' memory (`[sorter] max-memory-consumption`
//! and `max-memory-percentage`), next to each table's own `per-table-memory-quota`.
//!
//! TiCDC v5 reads `max-memory-percentage` as a share of the machine's memory; rcdc does too,
//! and bounds the sum of every sorter's buffered bytes by the smaller of the two keys. A table
//! whose push would cross the process bound spills its buffer (once it holds at least
//! [`MIN_RUN_BYTES`], so a crowded process writes runs of a useful size rather than one per
//! row).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest run a table spills because of the process bound (its own quota may force
/// smaller ones only when it is smaller than this).
pub const MIN_RUN_BYTES: usize = 256 << 10;

/// Bytes buffered by every sorter of the process, against a limit.
#[derive(Debug)]
pub struct SorterMemory {
    used: AtomicUsize,
    limit: usize,
}

impl SorterMemory {
    /// A bound of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// No process-wide bound (unit tests, the simulation).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// The bound from TiCDC's two keys: `percentage` % of `system_bytes` (when known) and
    /// `consumption` bytes, whichever is smaller.
    pub fn from_keys(percentage: u8, consumption: u64, system_bytes: Option<u64>) -> Self {
        let share = system_bytes.map_or(u64::MAX, |total| {
            u64::try_from(u128::from(total) * u128::from(percentage) / 100).unwrap_or(u64::MAX)
        });
        let limit = share.min(consumption);
        Self::new(usize::try_from(limit).unwrap_or(usize::MAX))
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes buffered now (TiCDC's `ticdc_sorter_in_memory_data_size_gauge`).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `more` bytes would cross the limit.
    pub fn would_exceed(&self, more: usize) -> bool {
        self.used().saturating_add(more) > self.limit
    }

    pub(super) fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), `None` where it cannot be
/// read (then only `max-memory-consumption` bounds the sorters).
pub fn system_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&info)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_key_bounds() {
        let gib = 1u64 << 30;
        assert_eq!(
            SorterMemory::from_keys(30, 16 * gib, Some(10 * gib)).limit(),
            (3 * gib) as usize
        );
        assert_eq!(
            SorterMemory::from_keys(30, gib, Some(10 * gib)).limit(),
            gib as usize
        );
        assert_eq!(SorterMemory::from_keys(30, gib, None).limit(), gib as usize);
        assert_eq!(SorterMemory::from_keys(0, gib, Some(10 * gib)).limit(), 0);
    }

    #[test]
    fn meminfo_is_read_in_kib() {
        let info = "MemFree:  100 kB\nMemTotal:       8048236 kB\n";
        assert_eq!(parse_mem_total(info), Some(8_048_236 * 1024));
        assert_eq!(parse_mem_total("MemTotal: lots"), None);
        assert_eq!(parse_mem_total(""), None);
    }
}
