//! Row changes as they flow from an upstream through the sorter into a sink (target-design §8).

use rcdc_state::{TableId, Ts};
use serde::{Deserialize, Serialize};

/// What happened to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RowOp {
    /// A new row.
    Insert,
    /// A changed row (the image is the new row).
    Update,
    /// A removed row (the image is the last row before removal, when known).
    Delete,
}

/// A column value (serde is for the sorter's spill files). Deliberately small: the demo upstream produces integers and text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// One row change, in commit-ts order per table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChange {
    /// The table's id.
    pub table: TableId,
    /// Schema (database) name.
    pub schema: String,
    /// Table name.
    pub table_name: String,
    /// Commit ts of the upstream transaction.
    pub commit_ts: Ts,
    /// Start ts of the upstream transaction.
    pub start_ts: Ts,
    /// What happened.
    pub op: RowOp,
    /// The primary key (the demo's tables have a single BIGINT key column `id`).
    pub key: i64,
    /// Column name and value, in table order; the key column first.
    pub columns: Vec<(String, Value)>,
}

/// What a per-table change stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableEvent {
    /// A row change.
    Row(RowChange),
    /// Every change of the table with commit ts ≤ this has been yielded.
    Resolved(Ts),
}
