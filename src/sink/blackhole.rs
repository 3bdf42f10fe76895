//! `blackhole://`: accepts everything, keeps nothing, counts rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcdc_state::Ts;

use super::{CheckpointWriter, SinkError, TableSink};
use crate::event::RowChange;

/// A table sink that discards rows. `flush(resolved)` returns `resolved` (never less than an
/// earlier return).
#[derive(Debug, Default)]
pub struct BlackholeSink {
    rows: u64,
    checkpoint: Ts,
    /// Shared with whoever wants a rows/s figure across tables.
    counter: Option<Arc<AtomicU64>>,
}

impl BlackholeSink {
    /// A new sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// A new sink that also adds its rows to `counter`.
    pub fn with_counter(counter: Arc<AtomicU64>) -> Self {
        BlackholeSink {
            counter: Some(counter),
            ..Self::default()
        }
    }
    /// Rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl TableSink for BlackholeSink {
    fn write(&mut self, rows: &[RowChange]) -> Result<(), SinkError> {
        fail::fail_point!("sink-write", |m| Err(SinkError::failpoint("sink-write", m)));
        self.rows += rows.len() as u64;
        if let Some(c) = &self.counter {
            c.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        fail::fail_point!("sink-flush", |m| Err(SinkError::failpoint("sink-flush", m)));
        self.checkpoint = self.checkpoint.max(resolved);
        Ok(self.checkpoint)
    }

    fn close(&mut self) {}

    fn rows_written(&self) -> u64 {
        self.rows
    }
}

/// A checkpoint writer that remembers only the last checkpoint.
#[derive(Debug, Default)]
pub struct BlackholeCheckpointWriter {
    last: AtomicU64,
}

impl BlackholeCheckpointWriter {
    /// The last checkpoint written (0 before any).
    pub fn last(&self) -> Ts {
        Ts(self.last.load(Ordering::Relaxed))
    }
}

impl CheckpointWriter for BlackholeCheckpointWriter {
    fn write_checkpoint(&self, ts: Ts) -> Result<(), SinkError> {
        self.last.store(ts.get(), Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RowOp, Value};
    use rcdc_state::TableId;

    fn row(ts: u64) -> RowChange {
        RowChange {
            table: TableId(1),
            schema: "s".into(),
            table_name: "t".into(),
            commit_ts: Ts(ts),
            start_ts: Ts(ts - 1),
            op: RowOp::Insert,
            key: 1,
            columns: vec![("id".into(), Value::Int(1))],
            pre_columns: None,
        }
    }

    #[test]
    fn blackhole_counts_and_echoes_resolved() {
        let counter = Arc::new(AtomicU64::new(0));
        let mut sink = BlackholeSink::with_counter(counter.clone());
        sink.write(&[row(10), row(11)]).unwrap();
        sink.write(&[row(12)]).unwrap();
        assert_eq!(sink.rows(), 3);
        assert_eq!(sink.rows_written(), 3);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
        assert_eq!(sink.flush(Ts(20)).unwrap(), Ts(20));
        // Never goes back.
        assert_eq!(sink.flush(Ts(15)).unwrap(), Ts(20));
        sink.close();

        let w = BlackholeCheckpointWriter::default();
        w.write_checkpoint(Ts(7)).unwrap();
        assert_eq!(w.last(), Ts(7));
    }
}
