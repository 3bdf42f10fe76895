//! Turning pending patch groups into one etcd transaction (target-design §4.3–4.4, §4.7).
//!
//! - Each touched key is compared on its **exact** cached mod revision (0 = must not exist).
//! - A txn that deletes anything also bumps the delete counter, and every txn compares the
//!   counter's mod revision, so a delete and re-create between our read and our write is always detected.
//! - With a fence (the owner's election key), every txn also compares that key's create
//!   revision, so a deposed owner can never write.
//! - Groups are packed in order while the txn stays within etcd's limits; one group that alone
//!   exceeds them is dropped with an error naming it. No empty txn is ever built.
//! - The failure branch reads back every compared key, so a conflict tells the worker which
//!   revision to wait for before re-applying the patches.

use std::collections::BTreeMap;

use rcdc_state::{PatchOutcome, Revision};

use super::raw::RawCache;
use crate::reactor::{DropReason, Group, KeyPatch};
use crate::store::{Compare, CompareTarget, Txn, TxnOp, MAX_TXN_BYTES, MAX_TXN_OPS};

/// The owner's fence: its election key and that key's create revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The election key (`<prefix>/owner/<lease-hex>`).
    pub key: String,
    /// Its create revision when this capture won the election.
    pub create_revision: Revision,
}

/// Limits of one txn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnLimits {
    /// Max compares, and max ops per branch.
    pub max_ops: usize,
    /// Max estimated bytes (Σ 2·len(key) + len(value)).
    pub max_bytes: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        Self {
            max_ops: MAX_TXN_OPS,
            max_bytes: MAX_TXN_BYTES,
        }
    }
}

/// A planned txn and how it maps back to groups.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The txn to send; `None` when the consumed groups change nothing.
    pub txn: Option<PlannedTxn>,
    /// How many leading pending groups the plan covers (committed or dropped).
    pub consumed: usize,
    /// Groups dropped while planning, with their index in the pending queue.
    pub dropped: Vec<(usize, DropReason)>,
    /// `dropped.len()`, kept apart so the caller can consume `dropped`.
    pub dropped_count: usize,
}

#[derive(Debug)]
pub(crate) struct PlannedTxn {
    pub txn: Txn,
    /// Estimated size, for metrics.
    pub bytes: usize,
    /// Whether the last failure-branch Get is the fence key.
    pub has_fence: bool,
}

/// The changes of one batch under construction.
#[derive(Clone, Default)]
struct Batch {
    /// key → new value (None = delete), the overlay later groups read through.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// key → cached mod revision it must still have.
    compares: BTreeMap<String, Revision>,
    bytes: usize,
}

impl Batch {
    fn read<'a>(&'a self, raw: &'a RawCache, key: &str) -> Option<&'a [u8]> {
        match self.writes.get(key) {
            Some(v) => v.as_deref(),
            None => raw.get(key).map(|e| e.value.as_slice()),
        }
    }
    fn has_delete(&self) -> bool {
        self.writes.values().any(Option::is_none)
    }
    /// Compares, success ops and failure ops this batch needs, with the counter and fence.
    fn op_counts(&self, fence: bool) -> (usize, usize, usize) {
        let extra = 1 + usize::from(fence);
        let compares = self.compares.len() + extra;
        let success = self.writes.len() + usize::from(self.has_delete());
        let failure = self.compares.len() + extra;
        (compares, success, failure)
    }
    fn fits(&self, limits: &TxnLimits, fence: bool) -> bool {
        let (c, s, f) = self.op_counts(fence);
        c <= limits.max_ops
            && s <= limits.max_ops
            && f <= limits.max_ops
            && self.bytes <= limits.max_bytes
    }
}

/// Plans the next txn from the front of `pending`.
pub(crate) fn plan<'a, P: KeyPatch>(
    raw: &RawCache,
    pending: impl IntoIterator<Item = &'a Group<P>>,
    limits: &TxnLimits,
    fence: Option<&Fence>,
) -> Plan {
    let mut plan = Plan::default();
    let mut batch = Batch::default();
    for (index, group) in pending.into_iter().enumerate() {
        let mut drop = |reason| {
            plan.dropped.push((index, reason));
            plan.dropped_count += 1;
            plan.consumed += 1;
        };
        let mut trial = batch.clone();
        match apply_group(raw, &mut trial, group) {
            Err(reason) => drop(reason),
            Ok(()) if trial.fits(limits, fence.is_some()) => {
                batch = trial;
                plan.consumed += 1;
            }
            Ok(()) if batch.writes.is_empty() => {
                // Alone (the batch was empty) and still too large: it can never commit.
                let (c, s, _) = trial.op_counts(fence.is_some());
                drop(DropReason::TooLarge(format!(
                    "patch group {:?} needs {} compares, {} ops and ~{} bytes in one txn; etcd allows {} ops and {} bytes",
                    group.label, c, s, trial.bytes, limits.max_ops, limits.max_bytes
                )));
            }
            Ok(()) => break, // full: the rest goes in the next txn
        }
    }
    if !batch.writes.is_empty() {
        plan.txn = Some(build_txn(raw, batch, fence));
    }
    plan
}

/// Applies a group's patches through the batch overlay, recording writes and compares. The
/// patches of one key are applied together ([`KeyPatch::apply_all`]: one decode and encode
/// of its value); keys are independent, so only the order within a key matters.
fn apply_group<P: KeyPatch>(
    raw: &RawCache,
    batch: &mut Batch,
    group: &Group<P>,
) -> Result<(), DropReason> {
    let mut by_key: BTreeMap<&str, Vec<&P>> = BTreeMap::new();
    for patch in &group.patches {
        by_key.entry(patch.key()).or_default().push(patch);
    }
    for (key, patches) in by_key {
        let outcome =
            P::apply_all(&patches, batch.read(raw, key)).map_err(DropReason::Precondition)?;
        let new = match outcome {
            PatchOutcome::Unchanged => continue,
            PatchOutcome::Put(v) => Some(v),
            PatchOutcome::Delete => None,
        };
        if !batch.compares.contains_key(key) {
            let rev = raw.get(key).map(|e| e.mod_revision).unwrap_or_default();
            batch.compares.insert(key.to_owned(), rev);
            batch.bytes += key.len();
        }
        let old_len = batch
            .writes
            .get(key)
            .map(|v| v.as_ref().map_or(0, Vec::len) + key.len());
        batch.bytes -= old_len.unwrap_or(0);
        batch.bytes += key.len() + new.as_ref().map_or(0, Vec::len);
        batch.writes.insert(key.to_owned(), new);
    }
    Ok(())
}

fn build_txn(raw: &RawCache, batch: Batch, fence: Option<&Fence>) -> PlannedTxn {
    let counter_key = raw.counter_key().to_owned();
    let mut txn = Txn::default();
    let has_delete = batch.has_delete();
    for (key, rev) in &batch.compares {
        txn.compares.push(Compare {
            key: key.clone(),
            target: CompareTarget::ModRevision(*rev),
        });
        txn.failure.push(TxnOp::Get { key: key.clone() });
    }
    // The counter is compared by its mod revision, never by re-rendering its value: a value
    // written by someone else in another form (`007`, garbage) would otherwise fail every
    // compare of every worker forever. An absent counter has mod revision 0.
    txn.compares.push(Compare {
        key: counter_key.clone(),
        target: CompareTarget::ModRevision(raw.counter.mod_revision),
    });
    txn.failure.push(TxnOp::Get {
        key: counter_key.clone(),
    });
    if let Some(f) = fence {
        txn.compares.push(Compare {
            key: f.key.clone(),
            target: CompareTarget::CreateRevision(f.create_revision),
        });
        txn.failure.push(TxnOp::Get { key: f.key.clone() });
    }
    for (key, value) in batch.writes {
        txn.success.push(match value {
            Some(value) => TxnOp::Put {
                key,
                value,
                lease: 0,
            },
            None => TxnOp::Delete { key },
        });
    }
    if has_delete {
        let next = raw.counter.value.unwrap_or(0) + 1;
        txn.success.push(TxnOp::Put {
            key: counter_key,
            value: next.to_string().into_bytes(),
            lease: 0,
        });
    }
    PlannedTxn {
        txn,
        bytes: batch.bytes,
        has_fence: fence.is_some(),
    }
}

#[cfg(test)]
mod tests;
