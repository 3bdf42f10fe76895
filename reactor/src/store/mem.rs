//! An in-process MVCC meta store with etcd v3 semantics, for unit tests and the simulation.
//!
//! [`MemStore`] keeps a global revision (a fresh store is at revision 1, so the first write gets
//! revision 2), per-key create/mod revisions and versions, a revision-ordered event history for
//! watches from past revisions, compaction, leases that expire on a manual clock (never the wall
//! clock), and deterministic fault injection: outages, indeterminate txn outcomes, broken watches,
//! held (delayed) and duplicated watch messages.
//!
//! Choices where etcd leaves room:
//! - a watch whose start revision is `<=` the compaction revision gets
//!   [`WatchMessage::Compacted`] (etcd accepts a start equal to the compaction revision but may
//!   then miss a deletion at exactly that revision; here the caller always resyncs);
//! - historical events are replayed one message per revision, live events one message per txn;
//! - lease expiry revokes each overdue lease as its own write revision, in expiry-then-id order;
//! - a TTL below 1 second is raised to 1 second.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use rcdc_state::Revision;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{
    Compare, CompareTarget, KeyValue, MetaStore, StoreError, Txn, TxnOp, TxnResponse, Watch,
    WatchEvent, WatchMessage, MAX_TXN_OPS,
};

/// etcd's default `--max-request-bytes` (1.5 MiB): a txn whose keys and values add up to more is
/// rejected with "request is too large".
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024 + 512 * 1024;

/// The id of the first lease a fresh [`MemStore`] grants; later ones count up from it.
pub const FIRST_LEASE_ID: i64 = 0x1000;

/// How an injected txn failure behaves (see [`MemStore::fail_next_txns`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// The request never reaches the store: not applied, [`StoreError::Unavailable`] returned.
    Unavailable,
    /// The txn is applied (events are published), then [`StoreError::Indeterminate`] is
    /// returned, like a response lost after commit.
    IndeterminateApplied,
    /// The txn is not applied, yet [`StoreError::Indeterminate`] is returned, like a timeout
    /// before the proposal committed.
    IndeterminateNotApplied,
    /// The store refuses the txn (like etcd's "request is too large" under a lower
    /// `--max-request-bytes`): not applied, [`StoreError::Rejected`] returned.
    Rejected,
}

/// How live watch messages are delivered (see [`MemStore::set_watch_delivery`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchDelivery {
    /// Pushed to each watch as the txn commits.
    #[default]
    Immediate,
    /// Held in commit order until [`MemStore::flush_watches`] (or a switch back to
    /// `Immediate`); progress requests are held behind them.
    Hold,
}

/// An in-process etcd-like store; cloning shares the same store.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
}

struct Entry {
    value: Vec<u8>,
    create: i64,
    modr: i64,
    version: i64,
    lease: i64,
}

impl Entry {
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value.clone(),
            create_revision: Revision(self.create),
            mod_revision: Revision(self.modr),
            lease: self.lease,
        }
    }
}

struct Lease {
    ttl: i64,
    expires_at: Duration,
    keys: BTreeSet<String>,
}

struct Watcher {
    prefix: String,
    start: i64,
    tx: UnboundedSender<WatchMessage>,
}

enum Pending {
    Events(Vec<WatchEvent>),
    Progress(i64),
}

#[derive(Default)]
struct Inner {
    revision: i64,
    compact_revision: i64,
    kvs: BTreeMap<String, Entry>,
    history: BTreeMap<i64, Vec<WatchEvent>>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    now: Duration,
    unavailable: bool,
    fail_next: VecDeque<FailMode>,
    watchers: BTreeMap<u64, Watcher>,
    next_watch: u64,
    delivery: WatchDelivery,
    held: Vec<(u64, Pending)>,
    duplicate_next: usize,
    txn_count: u64,
}

fn rejected(msg: &str) -> StoreError {
    StoreError::Rejected(msg.to_string())
}

fn events_msg(rev: i64, events: Vec<WatchEvent>) -> WatchMessage {
    WatchMessage::Events {
        header_revision: Revision(rev),
        events,
    }
}

/// The events about keys under `prefix`, in order.
fn matching(events: &[WatchEvent], prefix: &str) -> Vec<WatchEvent> {
    events
        .iter()
        .filter(|e| e.key().starts_with(prefix))
        .cloned()
        .collect()
}

fn op_key(op: &TxnOp) -> &str {
    match op {
        TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
    }
}

/// etcd's request checks: op counts, empty keys, duplicate writes in one branch, request size.
fn validate(txn: &Txn) -> Result<(), StoreError> {
    if txn.compares.len() > MAX_TXN_OPS
        || txn.success.len() > MAX_TXN_OPS
        || txn.failure.len() > MAX_TXN_OPS
    {
        return Err(rejected("etcdserver: too many operations in txn request"));
    }
    let mut bytes = 0usize;
    for c in &txn.compares {
        bytes += c.key.len();
        if let CompareTarget::Value(v) = &c.target {
            bytes += v.len();
        }
    }
    for branch in [&txn.success, &txn.failure] {
        let (mut puts, mut dels) = (BTreeSet::new(), BTreeSet::new());
        for op in branch {
            if op_key(op).is_empty() {
                return Err(rejected("etcdserver: key is not provided"));
            }
            match op {
                TxnOp::Put { key, value, .. } => {
                    bytes += key.len() + value.len();
                    if !puts.insert(key.as_str()) || dels.contains(key.as_str()) {
                        return Err(rejected("etcdserver: duplicate key given in txn request"));
                    }
                }
                TxnOp::Delete { key } => {
                    bytes += key.len();
                    if puts.contains(key.as_str()) {
                        return Err(rejected("etcdserver: duplicate key given in txn request"));
                    }
                    dels.insert(key.as_str());
                }
                TxnOp::Get { key } => bytes += key.len(),
            }
        }
    }
    if bytes > MAX_REQUEST_BYTES {
        return Err(rejected("etcdserver: request is too large"));
    }
    Ok(())
}

impl Inner {
    fn compare(&self, c: &Compare) -> bool {
        let e = self.kvs.get(&c.key);
        match &c.target {
            CompareTarget::ModRevision(r) => e.map_or(0, |e| e.modr) == r.0,
            CompareTarget::CreateRevision(r) => e.map_or(0, |e| e.create) == r.0,
            CompareTarget::Value(v) => e.is_some_and(|e| &e.value == v),
        }
    }

    fn txn(&mut self, txn: &Txn) -> Result<TxnResponse, StoreError> {
        validate(txn)?;
        let succeeded = txn.compares.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let TxnOp::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Err(StoreError::LeaseNotFound(*lease));
                }
            }
        }
        self.txn_count += 1;
        let rev = self.revision + 1;
        let (mut events, mut gets) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    events.push(WatchEvent::Put(self.put(key, value, *lease, rev)))
                }
                TxnOp::Delete { key } => {
                    if self.delete(key) {
                        events.push(WatchEvent::Delete {
                            key: key.clone(),
                            mod_revision: Revision(rev),
                        });
                    }
                }
                TxnOp::Get { key } => gets.push(self.kvs.get(key).map(|e| e.to_kv(key))),
            }
        }
        self.commit(rev, events);
        Ok(TxnResponse {
            succeeded,
            revision: Revision(self.revision),
            gets,
        })
    }

    fn put(&mut self, key: &str, value: &[u8], lease: i64, rev: i64) -> KeyValue {
        let old_lease = self.kvs.get(key).map_or(0, |e| e.lease);
        if old_lease != lease {
            if let Some(l) = self.leases.get_mut(&old_lease) {
                l.keys.remove(key);
            }
        }
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(key.to_string());
        }
        let e = self.kvs.entry(key.to_string()).or_insert(Entry {
            value: Vec::new(),
            create: rev,
            modr: rev,
            version: 0,
            lease,
        });
        e.value = value.to_vec();
        e.modr = rev;
        e.version += 1;
        e.lease = lease;
        e.to_kv(key)
    }

    /// Removes a key; whether it existed.
    fn delete(&mut self, key: &str) -> bool {
        let Some(e) = self.kvs.remove(key) else {
            return false;
        };
        if let Some(l) = self.leases.get_mut(&e.lease) {
            l.keys.remove(key);
        }
        true
    }

    /// Makes `rev` current if the txn wrote anything, records and publishes its events.
    fn commit(&mut self, rev: i64, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        self.revision = rev;
        let ids: Vec<u64> = self.watchers.keys().copied().collect();
        for id in ids {
            let w = &self.watchers[&id];
            if rev < w.start {
                continue;
            }
            let evs = matching(&events, &w.prefix);
            if !evs.is_empty() {
                self.deliver(id, Pending::Events(evs));
            }
        }
        self.history.insert(rev, events);
    }

    fn deliver(&mut self, id: u64, p: Pending) {
        match self.delivery {
            WatchDelivery::Hold => self.held.push((id, p)),
            WatchDelivery::Immediate => self.send_now(id, p),
        }
    }

    fn send_now(&mut self, id: u64, p: Pending) {
        let Some(w) = self.watchers.get(&id) else {
            return;
        };
        let (msg, dup) = match p {
            Pending::Events(events) => (events_msg(self.revision, events), self.duplicate_next > 0),
            Pending::Progress(rev) => (
                WatchMessage::Progress {
                    header_revision: Revision(rev),
                },
                false,
            ),
        };
        let sent = if dup {
            w.tx.send(msg.clone()).is_ok() && w.tx.send(msg).is_ok()
        } else {
            w.tx.send(msg).is_ok()
        };
        if dup {
            self.duplicate_next -= 1;
        }
        if !sent {
            self.watchers.remove(&id);
        }
    }

    fn flush(&mut self) {
        for (id, p) in std::mem::take(&mut self.held) {
            self.send_now(id, p);
        }
    }

    fn break_watches(&mut self) {
        self.watchers.clear();
        self.held.clear();
    }

    /// Deletes a lease and its keys (in key order) as one write revision.
    fn revoke(&mut self, id: i64) -> Result<(), StoreError> {
        let lease = self
            .leases
            .remove(&id)
            .ok_or(StoreError::LeaseNotFound(id))?;
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for key in lease.keys {
            if self.delete(&key) {
                events.push(WatchEvent::Delete {
                    key,
                    mod_revision: Revision(rev),
                });
            }
        }
        self.commit(rev, events);
        Ok(())
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// A fresh store at revision 1, with no keys, no leases and the clock at zero.
    pub fn new() -> Self {
        let inner = Inner {
            revision: 1,
            next_lease: FIRST_LEASE_ID,
            ..Inner::default()
        };
        MemStore {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn available(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let g = self.inner.lock();
        if g.unavailable {
            return Err(StoreError::Unavailable("injected outage".to_string()));
        }
        Ok(g)
    }

    /// The current store revision.
    pub fn revision(&self) -> Revision {
        Revision(self.inner.lock().revision)
    }

    /// The compaction revision (0 if never compacted).
    pub fn compact_revision(&self) -> Revision {
        Revision(self.inner.lock().compact_revision)
    }

    /// How many txns were evaluated (compares checked and a branch run, whether or not it
    /// wrote), including ones applied under [`FailMode::IndeterminateApplied`]; txns refused
    /// before evaluation (outage, injected non-applied failures, limits, unknown lease) do not
    /// count.
    pub fn txn_count(&self) -> u64 {
        self.inner.lock().txn_count
    }

    /// Every live key, sorted by key.
    pub fn dump(&self) -> Vec<KeyValue> {
        let g = self.inner.lock();
        g.kvs.iter().map(|(k, e)| e.to_kv(k)).collect()
    }

    /// A live key's version (1 on creation, +1 per put; reset by deletion), `None` if absent.
    pub fn version(&self, key: &str) -> Option<i64> {
        self.inner.lock().kvs.get(key).map(|e| e.version)
    }

    /// The ids of the live leases, ascending.
    pub fn leases(&self) -> Vec<i64> {
        self.inner.lock().leases.keys().copied().collect()
    }

    /// How many watches are open (not broken, not dropped).
    pub fn watch_count(&self) -> usize {
        self.inner.lock().watchers.len()
    }

    /// The store's manual clock (starts at zero, moves only by [`MemStore::advance_clock`]).
    pub fn now(&self) -> Duration {
        self.inner.lock().now
    }

    /// Moves the clock forward by `d` and expires every lease whose deadline is reached (deadline
    /// `<=` now), like a revoke: each lease's keys are deleted in one write revision, leases in
    /// deadline-then-id order. Works during an outage (the server keeps its own time).
    pub fn advance_clock(&self, d: Duration) {
        let mut g = self.inner.lock();
        g.now += d;
        let now = g.now;
        let mut due: Vec<(Duration, i64)> = g
            .leases
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(id, l)| (l.expires_at, *id))
            .collect();
        due.sort();
        for (_, id) in due {
            let _ = g.revoke(id);
        }
    }

    /// Expires a lease now, whatever its deadline (deletes its keys like a revoke);
    /// [`StoreError::LeaseNotFound`] if it does not exist. Works during an outage.
    pub fn expire_lease(&self, id: i64) -> Result<(), StoreError> {
        self.inner.lock().revoke(id)
    }

    /// Starts or ends an outage: while on, every [`MetaStore`] call fails with
    /// [`StoreError::Unavailable`]. Starting one breaks every open watch (their `next()` returns
    /// [`StoreError::WatchClosed`]); ending one does not revive them.
    pub fn set_unavailable(&self, unavailable: bool) {
        let mut g = self.inner.lock();
        g.unavailable = unavailable;
        if unavailable {
            g.break_watches();
        }
    }

    /// Makes the next `n` txns (that reach the store, i.e. not during an outage) fail with
    /// `mode`; queued after any failures still pending. With
    /// [`FailMode::IndeterminateApplied`] the txn is evaluated and, if valid, committed, and
    /// [`StoreError::Indeterminate`] is returned whatever its outcome.
    pub fn fail_next_txns(&self, n: usize, mode: FailMode) {
        let mut g = self.inner.lock();
        g.fail_next.extend(std::iter::repeat_n(mode, n));
    }

    /// Breaks every open watch: its `next()` returns [`StoreError::WatchClosed`] at once (even
    /// if messages were pending) and forever; held messages are dropped. The consumer must
    /// re-list and re-watch.
    pub fn break_watches(&self) {
        self.inner.lock().break_watches();
    }

    /// Chooses how live watch messages are delivered. Switching back to
    /// [`WatchDelivery::Immediate`] first flushes the held messages, in order.
    pub fn set_watch_delivery(&self, delivery: WatchDelivery) {
        let mut g = self.inner.lock();
        g.delivery = delivery;
        if delivery == WatchDelivery::Immediate {
            g.flush();
        }
    }

    /// Delivers every held watch message, in commit order; an events message's
    /// `header_revision` is the store revision at flush time, a progress message's is the
    /// revision when it was requested.
    pub fn flush_watches(&self) {
        self.inner.lock().flush();
    }

    /// Makes the next `n` live events messages sent to a watch (immediately or by a flush)
    /// arrive twice in a row. Historical replays and progress messages are never duplicated.
    pub fn duplicate_next_watch_messages(&self, n: usize) {
        self.inner.lock().duplicate_next += n;
    }
}

#[async_trait]
impl MetaStore for MemStore {
    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let g = self.available()?;
        let kvs = g
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| e.to_kv(k))
            .collect();
        Ok((kvs, Revision(g.revision)))
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: Revision,
    ) -> Result<Box<dyn Watch>, StoreError> {
        let mut g = self.available()?;
        let (tx, rx) = unbounded_channel();
        let start = start_revision.0;
        if start > 0 && start <= g.compact_revision {
            let compact_revision = Revision(g.compact_revision);
            let _ = tx.send(WatchMessage::Compacted { compact_revision });
            return Ok(MemWatch::boxed(self, None, rx));
        }
        let start = if start <= 0 { g.revision + 1 } else { start };
        for events in g
            .history
            .range(start..)
            .map(|(_, evs)| matching(evs, prefix))
        {
            if !events.is_empty() {
                let _ = tx.send(events_msg(g.revision, events));
            }
        }
        let id = g.next_watch;
        g.next_watch += 1;
        let prefix = prefix.to_string();
        g.watchers.insert(id, Watcher { prefix, start, tx });
        Ok(MemWatch::boxed(self, Some(id), rx))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut g = self.available()?;
        match g.fail_next.pop_front() {
            None => g.txn(&txn),
            Some(FailMode::Unavailable) => Err(StoreError::Unavailable(
                "injected txn failure (not applied)".to_string(),
            )),
            Some(FailMode::IndeterminateNotApplied) => Err(StoreError::Indeterminate(
                "injected timeout (not applied)".to_string(),
            )),
            Some(FailMode::Rejected) => Err(StoreError::Rejected(
                "injected refusal: request is too large (not applied)".to_string(),
            )),
            Some(FailMode::IndeterminateApplied) => {
                let _ = g.txn(&txn);
                Err(StoreError::Indeterminate(
                    "injected lost response (applied)".to_string(),
                ))
            }
        }
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let mut g = self.available()?;
        let ttl = ttl_secs.max(1);
        let id = g.next_lease;
        g.next_lease += 1;
        let expires_at = g.now + Duration::from_secs(ttl as u64);
        let keys = BTreeSet::new();
        g.leases.insert(
            id,
            Lease {
                ttl,
                expires_at,
                keys,
            },
        );
        Ok(id)
    }

    async fn keep_alive_once(&self, lease: i64) -> Result<i64, StoreError> {
        let mut g = self.available()?;
        let now = g.now;
        let l = g
            .leases
            .get_mut(&lease)
            .ok_or(StoreError::LeaseNotFound(lease))?;
        l.expires_at = now + Duration::from_secs(l.ttl as u64);
        Ok(l.ttl)
    }

    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.available()?.revoke(lease)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut g = self.available()?;
        if revision.0 > g.revision {
            return Err(rejected("mvcc: required revision is a future revision"));
        }
        if revision.0 <= g.compact_revision {
            return Err(StoreError::Compacted {
                requested: revision,
                compact_revision: Revision(g.compact_revision),
            });
        }
        g.compact_revision = revision.0;
        g.history = g.history.split_off(&(revision.0 + 1));
        Ok(())
    }
}

/// A watch on a [`MemStore`]: messages are pushed into its channel at commit time.
struct MemWatch {
    store: MemStore,
    /// `None` for a watch that only reports a compacted start.
    id: Option<u64>,
    rx: UnboundedReceiver<WatchMessage>,
    closed: bool,
}

fn watch_closed(why: &str) -> StoreError {
    StoreError::WatchClosed(why.to_string())
}

impl MemWatch {
    fn boxed(
        store: &MemStore,
        id: Option<u64>,
        rx: UnboundedReceiver<WatchMessage>,
    ) -> Box<dyn Watch> {
        Box::new(MemWatch {
            store: store.clone(),
            id,
            rx,
            closed: false,
        })
    }
    fn is_registered(&self) -> bool {
        self.id
            .is_some_and(|id| self.store.inner.lock().watchers.contains_key(&id))
    }
}

#[async_trait]
impl Watch for MemWatch {
    async fn next(&mut self) -> Result<WatchMessage, StoreError> {
        if self.closed || (self.id.is_some() && !self.is_registered()) {
            self.closed = true;
            return Err(watch_closed("watch broken"));
        }
        match self.rx.recv().await {
            Some(msg) => Ok(msg),
            None => {
                self.closed = true;
                Err(watch_closed("watch canceled"))
            }
        }
    }

    async fn request_progress(&mut self) -> Result<(), StoreError> {
        let mut g = self.store.inner.lock();
        match self.id {
            Some(id) if !self.closed && g.watchers.contains_key(&id) => {
                let rev = g.revision;
                g.deliver(id, Pending::Progress(rev));
                Ok(())
            }
            _ => Err(watch_closed("watch broken")),
        }
    }
}

impl Drop for MemWatch {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.store.inner.lock().watchers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
