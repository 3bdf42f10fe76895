//! [`GlobalState`]: every key of one cluster, decoded, updated one key at a time.
//!
//! The EtcdWorker calls [`GlobalState::apply`] for each watched change; reactors only read.
//! `apply` never fails: a key outside the layout is counted and ignored, and a value that does
//! not decode is kept as a [`CorruptValue`] on its changefeed (or globally), which marks that
//! changefeed broken without touching any other (target-design §4.8). Iteration order is
//! deterministic (BTreeMap everywhere) because replay compares tick outputs byte for byte.
//!
//! # Correctness
//! A changefeed entry exists exactly while at least one of its keys exists (decoded or
//! corrupt), so building the state from a final key set and applying any sequence of updates
//! that ends in that key set give equal states (checked by a proptest).

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use crate::ids::{CaptureId, ChangefeedId};
use crate::key::{CdcKey, KeyLayout};
use crate::model::{
    CaptureInfo, ChangeFeedInfo, ChangeFeedStatus, TaskPosition, TaskStatus, TaskWorkload,
};

/// A stored value that failed to decode. The raw bytes stay in etcd untouched; this records
/// why the key cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptValue {
    /// The full key.
    pub key: String,
    /// The decode error, naming what was wrong.
    pub error: String,
}

/// What [`GlobalState::apply`] did with an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The key was understood and the state updated.
    Applied,
    /// The key is outside the prefix, unknown, or owned by the worker (the delete counter).
    Ignored,
    /// The value did not decode; the key is recorded as corrupt.
    Corrupt(CorruptValue),
}

/// Everything the cluster stores about one changefeed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangefeedState {
    /// The changefeed's info (`changefeed/info/<id>`), if present and decodable.
    pub info: Option<ChangeFeedInfo>,
    /// The changefeed's status (`job/<id>`), if present and decodable.
    pub status: Option<ChangeFeedStatus>,
    /// Task statuses per capture.
    pub task_statuses: BTreeMap<CaptureId, TaskStatus>,
    /// Task positions per capture.
    pub task_positions: BTreeMap<CaptureId, TaskPosition>,
    /// Task workloads per capture.
    pub workloads: BTreeMap<CaptureId, TaskWorkload>,
    /// Keys of this changefeed whose values do not decode, by full key.
    pub corrupt: BTreeMap<String, CorruptValue>,
}

impl ChangefeedState {
    /// Whether some key of this changefeed holds a value that does not decode. A reactor must
    /// not act on a broken changefeed as if the corrupt keys were absent (it would, for
    /// example, "clean up" a changefeed whose info it cannot read).
    pub fn is_broken(&self) -> bool {
        !self.corrupt.is_empty()
    }

    /// A removed changefeed's record: its info is gone and its status (job) key stays with
    /// admin job "remove" and the final checkpoint, so `changefeed list -a` still shows it (as
    /// TiCDC's lists job keys). A create of the same id replaces it; `remove --force` deletes
    /// it.
    pub fn is_removed(&self) -> bool {
        self.info.is_none()
            && self
                .status
                .as_ref()
                .is_some_and(|s| s.admin_job_type == crate::model::AdminJobType::Remove)
    }

    /// TiCDC's `Active(capture)`: info, status and that capture's task status all present.
    pub fn is_active_on(&self, capture: &CaptureId) -> bool {
        self.info.is_some() && self.status.is_some() && self.task_statuses.contains_key(capture)
    }

    fn is_empty(&self) -> bool {
        self.info.is_none()
            && self.status.is_none()
            && self.task_statuses.is_empty()
            && self.task_positions.is_empty()
            && self.workloads.is_empty()
            && self.corrupt.is_empty()
    }
}

/// Which keys of one changefeed changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeKinds {
    /// Its info.
    pub info: bool,
    /// Its status (job key).
    pub status: bool,
    /// A task status (tables and operations).
    pub task_status: bool,
    /// A task position.
    pub task_position: bool,
    /// A task workload.
    pub workload: bool,
}

impl ChangeKinds {
    /// Only progress reports (positions, workloads, its own status) changed: nothing a
    /// scheduling decision reads.
    pub fn only_progress(&self) -> bool {
        !self.info && !self.task_status
    }
}

/// What changed since the reactor last cleared the log, so a tick can visit only that
/// (target-design §10: work proportional to changes, not to the state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// A capture joined, left or changed (e.g. started draining).
    pub captures: bool,
    /// Changefeeds with changed keys, and which kinds.
    pub changefeeds: BTreeMap<ChangefeedId, ChangeKinds>,
}

/// The materialized view of one cluster's keys.
#[derive(Clone, Debug)]
pub struct GlobalState {
    layout: KeyLayout,
    owners: BTreeMap<String, CaptureId>,
    captures: BTreeMap<CaptureId, CaptureInfo>,
    changefeeds: BTreeMap<ChangefeedId, ChangefeedState>,
    corrupt: BTreeMap<String, CorruptValue>,
    unknown_keys: BTreeSet<String>,
    /// Not part of the state's value: two states with the same keys are equal whatever
    /// their change logs say.
    changes: Changes,
}

impl PartialEq for GlobalState {
    fn eq(&self, other: &Self) -> bool {
        self.layout == other.layout
            && self.owners == other.owners
            && self.captures == other.captures
            && self.changefeeds == other.changefeeds
            && self.corrupt == other.corrupt
            && self.unknown_keys == other.unknown_keys
    }
}

impl Default for GlobalState {
    fn default() -> Self {
        Self::new(KeyLayout::default())
    }
}

impl GlobalState {
    /// An empty state for the cluster under `layout`.
    pub fn new(layout: KeyLayout) -> Self {
        Self {
            layout,
            owners: BTreeMap::new(),
            captures: BTreeMap::new(),
            changefeeds: BTreeMap::new(),
            corrupt: BTreeMap::new(),
            unknown_keys: BTreeSet::new(),
            changes: Changes::default(),
        }
    }

    /// What changed since [`Self::clear_changes`].
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Starts a new change log (the worker calls it after each tick).
    pub fn clear_changes(&mut self) {
        self.changes = Changes::default();
    }

    fn mark(&mut self, id: &ChangefeedId, f: impl FnOnce(&mut ChangeKinds)) {
        if let Some(k) = self.changes.changefeeds.get_mut(id) {
            f(k);
        } else {
            let mut k = ChangeKinds::default();
            f(&mut k);
            self.changes.changefeeds.insert(id.clone(), k);
        }
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }
    /// Owner election candidates: lease id (hex) → capture id.
    pub fn owner_candidates(&self) -> &BTreeMap<String, CaptureId> {
        &self.owners
    }
    /// Live captures.
    pub fn captures(&self) -> &BTreeMap<CaptureId, CaptureInfo> {
        &self.captures
    }
    /// Every changefeed with at least one key.
    pub fn changefeeds(&self) -> &BTreeMap<ChangefeedId, ChangefeedState> {
        &self.changefeeds
    }
    /// One changefeed.
    pub fn changefeed(&self, id: &ChangefeedId) -> Option<&ChangefeedState> {
        self.changefeeds.get(id)
    }
    /// Corrupt values of keys that belong to no changefeed (captures).
    pub fn corrupt(&self) -> &BTreeMap<String, CorruptValue> {
        &self.corrupt
    }
    /// Keys under the prefix that this version does not understand.
    pub fn unknown_keys(&self) -> &BTreeSet<String> {
        &self.unknown_keys
    }

    /// Applies one update: `Some(value)` for a put, `None` for a delete. An empty value is a
    /// value, not a delete (TiCDC v5 confused the two, facts §8.8).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> ApplyOutcome {
        let parsed = match self.layout.parse(key) {
            None | Some(CdcKey::DeleteCounter) => return ApplyOutcome::Ignored,
            Some(CdcKey::Unknown) => {
                match value {
                    Some(_) => self.unknown_keys.insert(key.to_owned()),
                    None => self.unknown_keys.remove(key),
                };
                return ApplyOutcome::Ignored;
            }
            Some(k) => k,
        };
        match parsed {
            CdcKey::Owner { lease } => {
                match value {
                    // The value is the capture id as a raw string; invalid UTF-8 is replaced
                    // rather than rejected, since the owner map is informational.
                    Some(v) => self
                        .owners
                        .insert(lease, String::from_utf8_lossy(v).as_ref().into()),
                    None => self.owners.remove(&lease),
                };
                ApplyOutcome::Applied
            }
            CdcKey::Capture(id) => {
                self.changes.captures = true;
                let decoded = decode::<CaptureInfo>(key, value);
                set_slot(&mut self.captures, id, decoded, &mut self.corrupt, key)
            }
            CdcKey::ChangefeedInfo(cf) => {
                self.mark(&cf, |k| k.info = true);
                self.apply_changefeed(cf, |c| {
                    let decoded = decode::<ChangeFeedInfo>(key, value).map(|o| {
                        o.map(|mut info| {
                            info.verify_and_fix();
                            info
                        })
                    });
                    set_option(&mut c.info, decoded, &mut c.corrupt, key)
                })
            }
            CdcKey::ChangefeedStatus(cf) => {
                self.mark(&cf, |k| k.status = true);
                self.apply_changefeed(cf, |c| {
                    set_option(&mut c.status, decode(key, value), &mut c.corrupt, key)
                })
            }
            CdcKey::TaskStatus {
                capture,
                changefeed,
            } => {
                self.mark(&changefeed, |k| k.task_status = true);
                self.apply_changefeed(changefeed, |c| {
                    set_slot(
                        &mut c.task_statuses,
                        capture,
                        decode(key, value),
                        &mut c.corrupt,
                        key,
                    )
                })
            }
            CdcKey::TaskPosition {
                capture,
                changefeed,
            } => {
                self.mark(&changefeed, |k| k.task_position = true);
                self.apply_changefeed(changefeed, |c| {
                    set_slot(
                        &mut c.task_positions,
                        capture,
                        decode(key, value),
                        &mut c.corrupt,
                        key,
                    )
                })
            }
            CdcKey::TaskWorkload {
                capture,
                changefeed,
            } => {
                self.mark(&changefeed, |k| k.workload = true);
                self.apply_changefeed(changefeed, |c| {
                    set_slot(
                        &mut c.workloads,
                        capture,
                        decode(key, value),
                        &mut c.corrupt,
                        key,
                    )
                })
            }
            CdcKey::DeleteCounter | CdcKey::Unknown => ApplyOutcome::Ignored,
        }
    }

    /// Runs `f` on the changefeed's entry (created on demand) and drops the entry again once
    /// none of its keys remain, so the state never holds empty changefeeds.
    fn apply_changefeed(
        &mut self,
        id: ChangefeedId,
        f: impl FnOnce(&mut ChangefeedState) -> ApplyOutcome,
    ) -> ApplyOutcome {
        use std::collections::btree_map::Entry;
        match self.changefeeds.entry(id) {
            Entry::Occupied(mut e) => {
                let outcome = f(e.get_mut());
                if e.get().is_empty() {
                    e.remove();
                }
                outcome
            }
            Entry::Vacant(e) => {
                let mut cf = ChangefeedState::default();
                let outcome = f(&mut cf);
                if !cf.is_empty() {
                    e.insert(cf);
                }
                outcome
            }
        }
    }
}

/// `Ok(None)` for a delete, `Ok(Some)` for a good value, `Err` for a corrupt one.
fn decode<T: DeserializeOwned>(key: &str, value: Option<&[u8]>) -> Result<Option<T>, CorruptValue> {
    match value {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| CorruptValue {
                key: key.to_owned(),
                error: format!("{key}: {e}"),
            }),
    }
}

fn set_option<T>(
    slot: &mut Option<T>,
    decoded: Result<Option<T>, CorruptValue>,
    corrupt: &mut BTreeMap<String, CorruptValue>,
    key: &str,
) -> ApplyOutcome {
    match decoded {
        Ok(v) => {
            *slot = v;
            corrupt.remove(key);
            ApplyOutcome::Applied
        }
        Err(c) => {
            // The typed view must not pretend the old value is still there.
            *slot = None;
            corrupt.insert(key.to_owned(), c.clone());
            ApplyOutcome::Corrupt(c)
        }
    }
}

fn set_slot<K: Ord, T>(
    map: &mut BTreeMap<K, T>,
    k: K,
    decoded: Result<Option<T>, CorruptValue>,
    corrupt: &mut BTreeMap<String, CorruptValue>,
    key: &str,
) -> ApplyOutcome {
    match decoded {
        Ok(Some(v)) => {
            map.insert(k, v);
            corrupt.remove(key);
            ApplyOutcome::Applied
        }
        Ok(None) => {
            map.remove(&k);
            corrupt.remove(key);
            ApplyOutcome::Applied
        }
        Err(c) => {
            map.remove(&k);
            corrupt.insert(key.to_owned(), c.clone());
            ApplyOutcome::Corrupt(c)
        }
    }
}

#[cfg(test)]
mod tests;
