//! Patches: the only way a reactor changes etcd.
//!
//! A [`Patch`] is data: a key and an [`Edit`]. [`Patch::apply`] is a pure function of the key's
//! current raw value. Because it is pure and semantic ("set the op of table 45 to Finished",
//! not "write these bytes"), the EtcdWorker can re-apply it to a newer value after a commit
//! conflict (target-design §3). When the edit's precondition no longer holds (the op it
//! advances is gone), `apply` says so with [`PatchError::Precondition`]; the worker then drops
//! the whole [`PatchGroup`] and the reactor decides again on a fresh snapshot.
//!
//! Being data, patches can be logged, diffed and replayed (§9).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{TableId, Ts};
use crate::model::{
    AdminJobType, ChangeFeedInfo, ChangeFeedStatus, FeedState, OperationStatus, RunningError,
    TaskPosition, TaskStatus,
};

/// What applying a patch to a key's current value produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchOutcome {
    /// Nothing to write: the key already has the wanted value (or stays absent).
    Unchanged,
    /// Write this value.
    Put(Vec<u8>),
    /// Delete the key.
    Delete,
}

/// Why a patch could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The value the edit was planned against has changed in a way that makes the edit
    /// meaningless (for example the operation it advances is gone). The group is dropped and
    /// the reactor re-ticks; this is not a failure of the worker.
    #[error("patch on {key}: precondition no longer holds: {reason}")]
    Precondition {
        /// The key patched.
        key: String,
        /// What no longer holds.
        reason: String,
    },
    /// The stored value does not decode as the type the edit works on.
    #[error("patch on {key}: stored value does not decode: {error}")]
    Decode {
        /// The key patched.
        key: String,
        /// The decode error.
        error: String,
    },
}

/// One edit of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The full etcd key.
    pub key: String,
    /// What to do to it.
    pub edit: Edit,
}

/// Patches committed atomically, in one etcd transaction. The label names the group in logs
/// and errors (for example `changefeed/cf-1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchGroup {
    /// Names the group in logs and errors.
    pub label: String,
    /// Applied in order; a later patch of the same key sees the earlier one's result.
    pub patches: Vec<Patch>,
}

impl PatchGroup {
    /// A group with a label and no patches yet.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            patches: Vec::new(),
        }
    }
    /// Appends a patch.
    pub fn push(&mut self, key: impl Into<String>, edit: Edit) {
        self.patches.push(Patch {
            key: key.into(),
            edit,
        });
    }
    /// Whether the group has no patches.
    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }

    /// One group per key, in order of each key's first patch, labelled `<label> <key>`: for
    /// decisions whose keys may each be committed on their own, so that no group grows with
    /// the number of keys a decision touches.
    pub fn split_by_key(self) -> Vec<PatchGroup> {
        let mut order: Vec<String> = Vec::new();
        let mut by_key: std::collections::BTreeMap<String, Vec<Patch>> = Default::default();
        for p in self.patches {
            if !by_key.contains_key(&p.key) {
                order.push(p.key.clone());
            }
            by_key.entry(p.key.clone()).or_default().push(p);
        }
        order
            .into_iter()
            .map(|key| PatchGroup {
                label: format!("{} {key}", self.label),
                patches: by_key.remove(&key).unwrap_or_default(),
            })
            .collect()
    }

    /// Splits `patches` into groups of at most `max` patches each, labelled `<label> #<n>`:
    /// for independent deletes that would otherwise exceed a txn's op limit.
    pub fn chunks(label: &str, patches: Vec<Patch>, max: usize) -> Vec<PatchGroup> {
        let max = max.max(1);
        let mut out = Vec::new();
        let mut it = patches.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<Patch> = it.by_ref().take(max).collect();
            out.push(PatchGroup {
                label: format!("{label} #{}", out.len() + 1),
                patches: chunk,
            });
        }
        out
    }
}

/// The edits a patch can make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Edit {
    /// Write this value whatever was there.
    Put {
        /// The new value (JSON text or a raw id).
        value: String,
    },
    /// Write this value only if the key is absent; a precondition failure otherwise (unless
    /// the key already holds exactly this value, which makes the edit idempotent).
    Create {
        /// The new value.
        value: String,
    },
    /// Delete the key if it exists.
    Delete,
    /// A typed edit of a TaskStatus value.
    TaskStatus(TaskStatusEdit),
    /// A typed edit of a TaskPosition value.
    TaskPosition(TaskPositionEdit),
    /// A typed edit of a ChangeFeedStatus ("job") value.
    ChangefeedStatus(StatusEdit),
    /// A typed edit of a ChangeFeedInfo value.
    ChangefeedInfo(InfoEdit),
    /// A typed edit of a TaskWorkload value.
    TaskWorkload(WorkloadEdit),
}

/// Typed edits of a ChangeFeedInfo (facts §4.11). All require the info to exist: an owner
/// never resurrects a removed changefeed by patching its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InfoEdit {
    /// Set the state and the admin job type that goes with it (facts §2.8).
    SetState {
        /// The new state.
        state: FeedState,
    },
    /// Record errors: `error` becomes the last one, each appends `now_ms` to `history`, and
    /// `history` keeps only entries newer than `now_ms - window_ms`.
    RecordErrors {
        /// The errors, oldest first.
        errors: Vec<RunningError>,
        /// Now, Unix milliseconds.
        now_ms: i64,
        /// History window, milliseconds.
        window_ms: i64,
    },
    /// Clear `error` and `history` (a resume).
    ClearErrors,
}

/// Typed edits of a TaskStatus (facts §2.5, §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskStatusEdit {
    /// Add a table with an add operation at `boundary_ts` (no-op if the table is there).
    /// Creates the status if absent.
    AddTable {
        /// The table.
        table: TableId,
        /// Replica start ts.
        start_ts: Ts,
        /// Operation boundary.
        boundary_ts: Ts,
    },
    /// Remove a table with a delete operation at `boundary_ts` (no-op if the table is absent).
    RemoveTable {
        /// The table.
        table: TableId,
        /// The stop ts.
        boundary_ts: Ts,
        /// Re-add after delete (`OperFlagMoveTable`).
        is_move: bool,
    },
    /// Advance the operation of `table` to `status`, optionally replacing its boundary (a
    /// finished remove reports the table's final checkpoint). Precondition: the status and the
    /// operation exist (facts §8.23: their absence is not fatal, it drops the group).
    SetOpStatus {
        /// The table whose op advances.
        table: TableId,
        /// The new op status.
        status: OperationStatus,
        /// A new boundary, if any.
        boundary_ts: Option<Ts>,
    },
    /// Delete every operation in status Finished.
    DeleteFinishedOps,
    /// A move's first half: like `RemoveTable { is_move: true }`, and the delete op also
    /// records where the table goes next in the extra field
    /// [`TableOperation::MOVE_TARGET_FIELD`](crate::model::TableOperation::MOVE_TARGET_FIELD)
    /// (additive JSON, ignored by TiCDC), so the hand-over survives an owner restart
    /// (facts §8.22). No-op if the status or the table is absent.
    MoveTableOut {
        /// The table.
        table: TableId,
        /// The stop ts.
        boundary_ts: Ts,
        /// The capture that re-adds the table once the delete op is Finished.
        target: crate::ids::CaptureId,
    },
}

/// Typed edits of a TaskPosition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskPositionEdit {
    /// Set both ts values (and the row count, when given), creating the position if absent.
    SetTs {
        /// Checkpoint.
        checkpoint_ts: Ts,
        /// Resolved.
        resolved_ts: Ts,
        /// Rows written so far (`count`); `None` keeps the stored one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// Set (or with `None` clear) the error; clearing an absent position changes nothing.
    SetError {
        /// The error.
        error: Option<RunningError>,
    },
}

/// Typed edits of a ChangeFeedStatus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StatusEdit {
    /// Set resolved ts and advance the checkpoint, which never goes backwards
    /// (target-design §6). Creates the status if absent.
    Advance {
        /// New resolved ts.
        resolved_ts: Ts,
        /// New checkpoint (ignored where lower than the stored one).
        checkpoint_ts: Ts,
    },
    /// Set the admin job type mirrored from the info's state; no-op if the status is absent.
    SetAdminJobType {
        /// The job type.
        admin_job_type: AdminJobType,
    },
}

impl Patch {
    /// A patch of `key`.
    pub fn new(key: impl Into<String>, edit: Edit) -> Self {
        Self {
            key: key.into(),
            edit,
        }
    }

    /// Applies the edit to the current value of the key (`None` = absent). Pure.
    pub fn apply(&self, old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        let key = self.key.as_str();
        match &self.edit {
            Edit::Put { value } => Ok(if old == Some(value.as_bytes()) {
                PatchOutcome::Unchanged
            } else {
                PatchOutcome::Put(value.clone().into_bytes())
            }),
            Edit::Create { value } => match old {
                None => Ok(PatchOutcome::Put(value.clone().into_bytes())),
                Some(v) if v == value.as_bytes() => Ok(PatchOutcome::Unchanged),
                Some(_) => Err(precondition(key, "the key already exists")),
            },
            Edit::Delete => Ok(match old {
                Some(_) => PatchOutcome::Delete,
                None => PatchOutcome::Unchanged,
            }),
            Edit::TaskStatus(e) => edit_json(key, old, |s| e.apply(key, s)),
            Edit::TaskPosition(e) => edit_json(key, old, |p| Ok(e.apply(p))),
            Edit::ChangefeedStatus(e) => edit_json(key, old, |s| Ok(e.apply(s))),
            Edit::ChangefeedInfo(e) => edit_json(key, old, |i| e.apply(key, i)),
            Edit::TaskWorkload(e) => edit_json(key, old, |w| Ok(e.apply(w))),
        }
    }
}

impl Patch {
    /// Applies patches of one key in order, with one decode and one encode per run of edits
    /// of the same typed kind: a scheduler tick can add thousands of tables to one
    /// TaskStatus, and a decode/encode per edit would be quadratic in its size. The outcome
    /// equals applying them one by one.
    pub fn apply_all(patches: &[&Patch], old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        let Some(first) = patches.first() else {
            return Ok(PatchOutcome::Unchanged);
        };
        let key = first.key.as_str();
        let mut cur: Option<Vec<u8>> = old.map(<[u8]>::to_vec);
        let mut changed = false;
        for run in patches.chunk_by(|a, b| a.edit.kind() == b.edit.kind()) {
            let outcome = match run[0].edit.kind() {
                EditKind::TaskStatus => {
                    edit_json(key, cur.as_deref(), |mut v: Option<TaskStatus>| {
                        for p in run {
                            if let Edit::TaskStatus(e) = &p.edit {
                                v = e.apply(key, v)?;
                            }
                        }
                        Ok(v)
                    })?
                }
                EditKind::TaskPosition => edit_json(key, cur.as_deref(), |mut v| {
                    for p in run {
                        if let Edit::TaskPosition(e) = &p.edit {
                            v = e.apply(v);
                        }
                    }
                    Ok(v)
                })?,
                EditKind::ChangefeedInfo => edit_json(key, cur.as_deref(), |mut v| {
                    for p in run {
                        if let Edit::ChangefeedInfo(e) = &p.edit {
                            v = e.apply(key, v)?;
                        }
                    }
                    Ok(v)
                })?,
                _ => {
                    // Untyped or rare edits: one by one.
                    for p in run {
                        let outcome = p.apply(cur.as_deref())?;
                        apply_outcome(&mut cur, &mut changed, outcome);
                    }
                    continue;
                }
            };
            apply_outcome(&mut cur, &mut changed, outcome);
        }
        Ok(match (changed, cur) {
            (false, _) => PatchOutcome::Unchanged,
            (true, None) if old.is_none() => PatchOutcome::Unchanged,
            (true, None) => PatchOutcome::Delete,
            (true, Some(v)) if old == Some(v.as_slice()) => PatchOutcome::Unchanged,
            (true, Some(v)) => PatchOutcome::Put(v),
        })
    }
}

/// Folds one outcome into the running value of a key.
fn apply_outcome(cur: &mut Option<Vec<u8>>, changed: &mut bool, outcome: PatchOutcome) {
    match outcome {
        PatchOutcome::Unchanged => {}
        PatchOutcome::Put(v) => {
            *cur = Some(v);
            *changed = true;
        }
        PatchOutcome::Delete => {
            *cur = None;
            *changed = true;
        }
    }
}

/// The typed kind of an edit: consecutive edits of one kind fold into one decode/encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EditKind {
    Raw,
    TaskStatus,
    TaskPosition,
    ChangefeedStatus,
    ChangefeedInfo,
    TaskWorkload,
}

impl Edit {
    fn kind(&self) -> EditKind {
        match self {
            Edit::Put { .. } | Edit::Create { .. } | Edit::Delete => EditKind::Raw,
            Edit::TaskStatus(_) => EditKind::TaskStatus,
            Edit::TaskPosition(_) => EditKind::TaskPosition,
            Edit::ChangefeedStatus(_) => EditKind::ChangefeedStatus,
            Edit::ChangefeedInfo(_) => EditKind::ChangefeedInfo,
            Edit::TaskWorkload(_) => EditKind::TaskWorkload,
        }
    }
}

fn precondition(key: &str, reason: impl Into<String>) -> PatchError {
    PatchError::Precondition {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes the old value, runs `f`, and encodes the result, reporting `Unchanged` when the
/// typed value did not change (so no write, and no txn, happens for a no-op edit).
fn edit_json<T, F>(key: &str, old: Option<&[u8]>, f: F) -> Result<PatchOutcome, PatchError>
where
    T: DeserializeOwned + Serialize + PartialEq + Clone,
    F: FnOnce(Option<T>) -> Result<Option<T>, PatchError>,
{
    let before: Option<T> = match old {
        None => None,
        Some(bytes) => Some(
            serde_json::from_slice(bytes).map_err(|e| PatchError::Decode {
                key: key.to_owned(),
                error: e.to_string(),
            })?,
        ),
    };
    let after = f(before.clone())?;
    match after {
        _ if after == before => Ok(PatchOutcome::Unchanged),
        None => Ok(PatchOutcome::Delete),
        Some(v) => crate::model::encode(&v)
            .map(PatchOutcome::Put)
            .map_err(|e| PatchError::Decode {
                key: key.to_owned(),
                error: e.to_string(),
            }),
    }
}

impl TaskStatusEdit {
    fn apply(&self, key: &str, old: Option<TaskStatus>) -> Result<Option<TaskStatus>, PatchError> {
        match self {
            TaskStatusEdit::AddTable {
                table,
                start_ts,
                boundary_ts,
            } => {
                let mut s = old.unwrap_or_default();
                s.add_table(*table, *start_ts, *boundary_ts);
                Ok(Some(s))
            }
            TaskStatusEdit::RemoveTable {
                table,
                boundary_ts,
                is_move,
            } => Ok(old.map(|mut s| {
                s.remove_table(*table, *boundary_ts, *is_move);
                s
            })),
            TaskStatusEdit::SetOpStatus {
                table,
                status,
                boundary_ts,
            } => {
                let mut s = old.ok_or_else(|| precondition(key, "the task status is gone"))?;
                let op = s
                    .operation
                    .as_mut()
                    .and_then(|ops| ops.get_mut(table))
                    .ok_or_else(|| precondition(key, format!("table {table} has no operation")))?;
                op.status = *status;
                if *status == OperationStatus::Finished {
                    // Go still sets the deprecated flag; TiCDC readers check either.
                    op.done = true;
                }
                if let Some(b) = boundary_ts {
                    op.boundary_ts = *b;
                }
                Ok(Some(s))
            }
            TaskStatusEdit::DeleteFinishedOps => Ok(old.map(|mut s| {
                if let Some(ops) = s.operation.as_mut() {
                    ops.retain(|_, op| op.status != OperationStatus::Finished);
                }
                s
            })),
            TaskStatusEdit::MoveTableOut {
                table,
                boundary_ts,
                target,
            } => Ok(old.map(|mut s| {
                let held = s.tables.as_ref().is_some_and(|t| t.contains_key(table));
                if held {
                    s.remove_table(*table, *boundary_ts, true);
                    if let Some(op) = s.operation.as_mut().and_then(|ops| ops.get_mut(table)) {
                        op.extra.insert(
                            crate::model::TableOperation::MOVE_TARGET_FIELD.to_owned(),
                            serde_json::Value::String(target.as_str().to_owned()),
                        );
                    }
                }
                s
            })),
        }
    }
}

impl TaskPositionEdit {
    fn apply(&self, old: Option<TaskPosition>) -> Option<TaskPosition> {
        match self {
            TaskPositionEdit::SetTs {
                checkpoint_ts,
                resolved_ts,
                count,
            } => {
                let mut p = old.unwrap_or_default();
                p.checkpoint_ts = *checkpoint_ts;
                p.resolved_ts = *resolved_ts;
                if let Some(count) = count {
                    p.count = *count;
                }
                Some(p)
            }
            TaskPositionEdit::SetError { error: None } => old.map(|mut p| {
                p.error = None;
                p
            }),
            TaskPositionEdit::SetError { error: Some(e) } => {
                let mut p = old.unwrap_or_default();
                p.error = Some(e.clone());
                Some(p)
            }
        }
    }
}

impl InfoEdit {
    fn apply(
        &self,
        key: &str,
        old: Option<ChangeFeedInfo>,
    ) -> Result<Option<ChangeFeedInfo>, PatchError> {
        let mut info = old.ok_or_else(|| precondition(key, "the changefeed info is gone"))?;
        match self {
            InfoEdit::SetState { state } => {
                info.state = *state;
                info.admin_job_type = state.admin_job_type();
            }
            InfoEdit::RecordErrors {
                errors,
                now_ms,
                window_ms,
            } => {
                let history = info.history.get_or_insert_with(Vec::new);
                for e in errors {
                    history.push(*now_ms);
                    info.error = Some(e.clone());
                }
                history.retain(|t| *t > now_ms - window_ms);
            }
            InfoEdit::ClearErrors => {
                info.error = None;
                info.history = None;
            }
        }
        Ok(Some(info))
    }
}

impl StatusEdit {
    fn apply(&self, old: Option<ChangeFeedStatus>) -> Option<ChangeFeedStatus> {
        match self {
            StatusEdit::SetAdminJobType { admin_job_type } => old.map(|mut s| {
                s.admin_job_type = *admin_job_type;
                s
            }),
            StatusEdit::Advance {
                resolved_ts,
                checkpoint_ts,
            } => {
                let mut s = old.unwrap_or_default();
                s.resolved_ts = *resolved_ts;
                s.checkpoint_ts = s.checkpoint_ts.max(*checkpoint_ts);
                Some(s)
            }
        }
    }
}

/// Typed edits of a TaskWorkload (facts §2.7), written by the processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkloadEdit {
    /// Make the map hold exactly these tables with these workloads, creating the key if
    /// absent. Entries kept keep their unknown JSON fields.
    Set {
        /// Table id → workload (TiCDC v5 always writes 1).
        tables: std::collections::BTreeMap<TableId, u64>,
    },
}

impl WorkloadEdit {
    fn apply(&self, old: Option<crate::model::TaskWorkload>) -> Option<crate::model::TaskWorkload> {
        match self {
            WorkloadEdit::Set { tables } => {
                let mut w = old.unwrap_or_default();
                w.0.retain(|t, _| tables.contains_key(t));
                for (t, load) in tables {
                    w.0.entry(*t).or_default().workload = *load;
                }
                Some(w)
            }
        }
    }
}

#[cfg(test)]
mod tests;
