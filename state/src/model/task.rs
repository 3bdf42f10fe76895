//! TaskStatus, TaskPosition, TaskWorkload (facts §2.5–§2.7) and the table-operation protocol
//! they carry (facts §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{is_zero_u64, AdminJobType, Extra, RunningError};
use crate::ids::{TableId, Ts};

/// `OperFlagMoveTable`: re-add the table after the delete finishes.
pub const OPER_FLAG_MOVE_TABLE: u64 = 1;

/// Progress of one table operation, stored as an integer and omitted when Dispatched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperationStatus {
    /// 0: written by the owner, not yet seen by the processor.
    #[default]
    Dispatched,
    /// 1: the processor acted on it.
    Processed,
    /// 2: done; the owner deletes it.
    Finished,
}

impl OperationStatus {
    /// The Go integer.
    pub fn code(self) -> u64 {
        match self {
            OperationStatus::Dispatched => 0,
            OperationStatus::Processed => 1,
            OperationStatus::Finished => 2,
        }
    }
    fn is_dispatched(&self) -> bool {
        *self == OperationStatus::Dispatched
    }
}

impl Serialize for OperationStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.code())
    }
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            0 => Ok(OperationStatus::Dispatched),
            1 => Ok(OperationStatus::Processed),
            2 => Ok(OperationStatus::Finished),
            n => Err(serde::de::Error::custom(format!(
                "unknown table operation status {n} (expected 0, 1 or 2)"
            ))),
        }
    }
}

/// A table a capture replicates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableReplicaInfo {
    /// Replicate changes after this ts.
    #[serde(rename = "start-ts", default)]
    pub start_ts: Ts,
    /// Cyclic-replication mark table, 0 when off.
    #[serde(rename = "mark-table-id", default)]
    pub mark_table_id: i64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An add or remove of one table, acknowledged through `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableOperation {
    /// Deprecated; the processor still sets it when the op finishes.
    #[serde(default)]
    pub done: bool,
    /// true = remove, false = add.
    #[serde(default)]
    pub delete: bool,
    /// Bit flags; [`OPER_FLAG_MOVE_TABLE`]. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub flag: u64,
    /// Add: the start ts. Remove: the stop ts, then the table's final checkpoint.
    #[serde(default)]
    pub boundary_ts: Ts,
    /// Progress; omitted when Dispatched.
    #[serde(default, skip_serializing_if = "OperationStatus::is_dispatched")]
    pub status: OperationStatus,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TableOperation {
    /// TiCDC's "processed": status Processed or Finished, or the deprecated `done`.
    pub fn is_processed(&self) -> bool {
        self.status != OperationStatus::Dispatched || self.done
    }
    /// TiCDC's "applied": status Finished, or the deprecated `done`.
    pub fn is_applied(&self) -> bool {
        self.status == OperationStatus::Finished || self.done
    }
    /// Whether this is a move (remove then re-add elsewhere).
    pub fn is_move(&self) -> bool {
        self.flag & OPER_FLAG_MOVE_TABLE != 0
    }
}

/// `<prefix>/task/status/<capture>/<changefeed>`: the tables a capture holds and the
/// operations in flight.
///
/// `tables` and `operation` are `Option` because Go distinguishes a nil map (`null`, as the
/// owner creates an empty status) from an empty one (`{}`, after the last table left); both
/// round-trip as they were written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Tables replicated (or being added).
    #[serde(default)]
    pub tables: Option<BTreeMap<TableId, TableReplicaInfo>>,
    /// Operations in flight.
    #[serde(default)]
    pub operation: Option<BTreeMap<TableId, TableOperation>>,
    /// Never set by the v5 owner; read by processors.
    #[serde(rename = "admin-job-type", default)]
    pub admin_job_type: AdminJobType,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TaskStatus {
    /// TiCDC's `AddTable`: nothing if the table is there, else add it with a Dispatched add
    /// operation at `boundary_ts`.
    pub fn add_table(&mut self, table: TableId, start_ts: Ts, boundary_ts: Ts) {
        let tables = self.tables.get_or_insert_with(BTreeMap::new);
        if tables.contains_key(&table) {
            return;
        }
        tables.insert(
            table,
            TableReplicaInfo {
                start_ts,
                ..Default::default()
            },
        );
        self.operation.get_or_insert_with(BTreeMap::new).insert(
            table,
            TableOperation {
                boundary_ts,
                ..Default::default()
            },
        );
    }

    /// TiCDC's `RemoveTable`: nothing if the table is absent, else drop it and add a
    /// Dispatched delete operation at `boundary_ts` (flagged as a move if `is_move`).
    pub fn remove_table(&mut self, table: TableId, boundary_ts: Ts, is_move: bool) {
        let Some(tables) = self.tables.as_mut() else {
            return;
        };
        if tables.remove(&table).is_none() {
            return;
        }
        let op = TableOperation {
            delete: true,
            boundary_ts,
            flag: if is_move { OPER_FLAG_MOVE_TABLE } else { 0 },
            ..Default::default()
        };
        self.operation
            .get_or_insert_with(BTreeMap::new)
            .insert(table, op);
    }

    /// No tables and no operations.
    pub fn is_empty(&self) -> bool {
        self.tables.as_ref().is_none_or(BTreeMap::is_empty)
            && self.operation.as_ref().is_none_or(BTreeMap::is_empty)
    }
}

/// `<prefix>/task/position/<capture>/<changefeed>`: a processor's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskPosition {
    /// Min checkpoint over the capture's tables.
    #[serde(rename = "checkpoint-ts", default)]
    pub checkpoint_ts: Ts,
    /// Min resolved ts over the capture's tables.
    #[serde(rename = "resolved-ts", default)]
    pub resolved_ts: Ts,
    /// Never maintained by TiCDC v5's processor (facts §8.25).
    #[serde(default)]
    pub count: u64,
    /// A processor error for the owner to handle, or null.
    #[serde(default)]
    pub error: Option<RunningError>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The workload of one table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// TiCDC v5 always writes 1.
    #[serde(default)]
    pub workload: u64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `<prefix>/task/workload/<capture>/<changefeed>`: table id → workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskWorkload(pub BTreeMap<TableId, WorkloadInfo>);

#[cfg(test)]
mod tests;
