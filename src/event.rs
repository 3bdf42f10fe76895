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
    /// The row before the change (TiCDC's `PreColumns`), in table order: `Some` for an
    /// UPDATE and a DELETE when the upstream gives old values, `None` for an INSERT. A
    /// sink writes it only when the changefeed's `enable-old-value` is on.
    pub pre_columns: Option<Vec<(String, Value)>>,
}

/// A column's SQL type, as far as the demo upstream needs (it writes integers and text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColumnType {
    /// `BIGINT`.
    BigInt,
    /// `TEXT`.
    Text,
}

/// One column of a table definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// SQL type.
    pub sql_type: ColumnType,
    /// May hold NULL.
    pub nullable: bool,
    /// Part of the primary key.
    pub is_pk: bool,
}

/// A table's definition at one table version, what a storage sink's `schema.json` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSchema {
    /// The table version: the commit ts of the DDL that gave the table this definition
    /// (TiCDC's table version). Rows of different versions go to different directories.
    pub version: Ts,
    /// The DDL that created this version, if known (`schema.json`'s `Query`).
    pub query: String,
    /// Columns in table order.
    pub columns: Vec<ColumnDef>,
}

/// What a per-table change stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableEvent {
    /// A row change.
    Row(RowChange),
    /// Every change of the table with commit ts ≤ this has been yielded.
    Resolved(Ts),
}
