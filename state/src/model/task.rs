//! TaskStatus, TaskPosition, TaskWorkload (facts §2.5–§2.7) and the table-operation protocol
//! they carry (facts §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec::{serialize_opt_table_map, serialize_table_map};
use super::{AdminJobType, Extra, RunningError};
use crate::ids::{TableId, Ts};

/// `OperFlagMoveTable`, bit 1 of [`TableOperation::flag`]: re-add the table after the delete
/// finishes (TiCDC v5's owner never sets it; rcdc's table move does).
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
    /// From the Go integer; `None` for values TiCDC does not define.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(OperationStatus::Dispatched),
            1 => Some(OperationStatus::Processed),
            2 => Some(OperationStatus::Finished),
            _ => None,
        }
    }
    // `&self` because serde's `skip_serializing_if` passes a reference.
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
        let code = u64::deserialize(d)?;
        OperationStatus::from_code(code).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown table operation status {code} (expected 0, 1 or 2)"
            ))
        })
    }
}

/// A table a capture replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOperation {
    /// Deprecated; the processor still sets it when the op finishes.
    #[serde(default)]
    pub done: bool,
    /// true = remove, false = add.
    #[serde(default)]
    pub delete: bool,
    /// Bit flags; [`OPER_FLAG_MOVE_TABLE`]. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
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
/// operations in flight (facts §2.5, §5).
///
/// Go nil vs empty: `tables` and `operation` are `Option` because Go writes a nil map as
/// `null` (the owner creates a status as `{"tables":null,"operation":null,"admin-job-type":0}`)
/// and an empty one as `{}` (after the last table left, or the last op was deleted). `None`
/// is `null` and `Some(empty)` is `{}`, so both round-trip as written; the mutators create and
/// keep maps exactly where Go's do. Use [`TaskStatus::is_empty`] to ask "nothing in it",
/// which treats both alike. Table maps are written in Go's key order (decimal strings sorted
/// as strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Tables replicated (or being added).
    #[serde(default, serialize_with = "serialize_opt_table_map")]
    pub tables: Option<BTreeMap<TableId, TableReplicaInfo>>,
    /// Operations in flight.
    #[serde(default, serialize_with = "serialize_opt_table_map")]
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
    ///
    /// Returns the removed table's replica info (`None`: it was not held), as TiCDC's does, so
    /// a caller moving the table knows where it stood without a second lookup.
    pub fn remove_table(
        &mut self,
        table: TableId,
        boundary_ts: Ts,
        is_move: bool,
    ) -> Option<TableReplicaInfo> {
        let removed = self.tables.as_mut()?.remove(&table)?;
        let op = TableOperation {
            delete: true,
            boundary_ts,
            flag: if is_move { OPER_FLAG_MOVE_TABLE } else { 0 },
            ..Default::default()
        };
        self.operation
            .get_or_insert_with(BTreeMap::new)
            .insert(table, op);
        Some(removed)
    }

    /// No tables and no operations.
    pub fn is_empty(&self) -> bool {
        self.tables.as_ref().is_none_or(BTreeMap::is_empty)
            && self.operation.as_ref().is_none_or(BTreeMap::is_empty)
    }
}

/// `<prefix>/task/position/<capture>/<changefeed>`: a processor's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// TiCDC v5 always writes 1.
    #[serde(default)]
    pub workload: u64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `<prefix>/task/workload/<capture>/<changefeed>`: table id → workload, a bare JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TaskWorkload(pub BTreeMap<TableId, WorkloadInfo>);

impl Serialize for TaskWorkload {
    /// Keys in Go's order, like every table map here.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_table_map(&self.0, s)
    }
}

impl TaskWorkload {
    /// The sum of the workloads: the capture's load as TiCDC's scheduler counts it.
    pub fn total(&self) -> u64 {
        self.0
            .values()
            .fold(0u64, |acc, w| acc.saturating_add(w.workload))
    }
}

// `&u64` because serde's `skip_serializing_if` passes a reference.
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TableOperation {
    /// The extra JSON field of a delete op in which rcdc records the capture a moved table goes
    /// to (written by `TaskStatusEdit::MoveTableOut`). TiCDC ignores unknown fields when it
    /// reads the status (though a Go writer would drop them; mixed clusters are not a goal,
    /// target-design §2), and rcdc keeps them through `extra`.
    pub const MOVE_TARGET_FIELD: &'static str = "rcdc-move-target";

    /// Where this move op sends the table: the recorded target of a delete op flagged as a
    /// move, if any (a TiCDC-written op has none).
    pub fn move_target(&self) -> Option<crate::ids::CaptureId> {
        if !self.delete || !self.is_move() {
            return None;
        }
        match self.extra.get(Self::MOVE_TARGET_FIELD) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.as_str().into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
