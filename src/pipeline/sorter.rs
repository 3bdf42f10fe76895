//! The sorter between a table's change stream and its sink.
//!
//! Row changes may arrive out of commit-ts order (a real upstream interleaves regions); the
//! sink must see them in commit-ts order, and only once it is known that nothing older can
//! still arrive — that is what the resolved ts says. So the sorter buffers rows and releases
//! exactly those with `commit_ts <= resolved`, in `(commit_ts, arrival)` order.
//!
//! It is memory-bounded: [`Sorter::push`] refuses rows past the byte budget, and the caller
//! (the pipeline) stops reading the source until the sink drained released rows. A resolved
//! marker is always accepted, since it is what frees memory.

use std::collections::BTreeMap;

use rcdc_state::Ts;

use crate::event::{RowChange, TableEvent, Value};

/// The sorter refused a row: the buffer is at its byte budget.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("sorter is full ({used} of {limit} bytes); drain released rows first")]
pub struct Full {
    /// Bytes buffered.
    pub used: usize,
    /// The budget.
    pub limit: usize,
}

/// A bounded, ordered buffer of one table's row changes.
#[derive(Debug)]
pub struct Sorter {
    rows: BTreeMap<(Ts, u64), RowChange>,
    arrivals: u64,
    resolved: Ts,
    used: usize,
    limit: usize,
}

impl Sorter {
    /// A sorter holding at most `limit_bytes` of rows (approximate), starting resolved at
    /// `start` (nothing at or before it will be released: it is already replicated).
    pub fn new(limit_bytes: usize, start: Ts) -> Self {
        Self {
            rows: BTreeMap::new(),
            arrivals: 0,
            resolved: start,
            used: 0,
            limit: limit_bytes,
        }
    }

    /// The resolved ts: every row at or before it has been pushed.
    pub fn resolved(&self) -> Ts {
        self.resolved
    }

    /// Approximate bytes buffered.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Buffers an event. Rows at or before the resolved ts are late duplicates of what was
    /// already released and are dropped; a resolved marker never moves backwards.
    pub fn push(&mut self, event: TableEvent) -> Result<(), Full> {
        match event {
            TableEvent::Resolved(ts) => {
                self.resolved = self.resolved.max(ts);
                Ok(())
            }
            TableEvent::Row(row) => {
                if row.commit_ts <= self.resolved {
                    return Ok(());
                }
                let size = approx_size(&row);
                // An empty sorter always takes one row, so a single huge row cannot wedge it.
                if !self.rows.is_empty() && self.used + size > self.limit {
                    return Err(Full {
                        used: self.used,
                        limit: self.limit,
                    });
                }
                self.used += size;
                self.arrivals += 1;
                self.rows.insert((row.commit_ts, self.arrivals), row);
                Ok(())
            }
        }
    }

    /// Takes every row with `commit_ts <= resolved`, in commit-ts order (arrival order for
    /// equal commit ts, which keeps a transaction's rows together).
    pub fn take_ready(&mut self) -> Vec<RowChange> {
        let later = self
            .rows
            .split_off(&(Ts(self.resolved.0.saturating_add(1)), 0));
        let ready = std::mem::replace(&mut self.rows, later);
        let out: Vec<RowChange> = ready.into_values().collect();
        self.used -= out.iter().map(approx_size).sum::<usize>();
        out
    }
}

/// Bytes a row holds, roughly: what the budget counts.
fn approx_size(row: &RowChange) -> usize {
    let cols: usize = row
        .columns
        .iter()
        .map(|(name, v)| {
            name.len()
                + match v {
                    Value::Null | Value::Int(_) => 8,
                    Value::Text(t) => t.len(),
                }
        })
        .sum();
    64 + row.schema.len() + row.table_name.len() + cols
}

#[cfg(test)]
mod tests;
