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
mod tests {
    use super::*;
    use futures::FutureExt;
    use StoreError::LeaseNotFound;

    fn put(key: &str, value: &str) -> TxnOp {
        put_on(key, value, 0)
    }
    fn put_on(key: &str, value: &str, lease: i64) -> TxnOp {
        let (key, value) = (key.into(), value.into());
        TxnOp::Put { key, value, lease }
    }
    fn del(key: &str) -> TxnOp {
        TxnOp::Delete { key: key.into() }
    }
    fn get(key: &str) -> TxnOp {
        TxnOp::Get { key: key.into() }
    }
    fn ops(success: Vec<TxnOp>) -> Txn {
        let failure = Vec::new();
        Txn {
            compares: Vec::new(),
            success,
            failure,
        }
    }
    async fn run(s: &MemStore, success: Vec<TxnOp>) -> TxnResponse {
        s.txn(ops(success)).await.unwrap()
    }
    async fn try_run(s: &MemStore, success: Vec<TxnOp>) -> Result<TxnResponse, StoreError> {
        s.txn(ops(success)).await
    }
    /// Whether `put k=v` guarded by one compare on `k` succeeds.
    async fn guarded(s: &MemStore, target: CompareTarget) -> bool {
        let mut t = ops(vec![put("k", "v")]);
        t.compares.push(Compare {
            key: "k".into(),
            target,
        });
        s.txn(t).await.unwrap().succeeded
    }
    /// (create, mod) revisions of a live key.
    fn revs(s: &MemStore, key: &str) -> Option<(i64, i64)> {
        let kv = s.dump().into_iter().find(|kv| kv.key == key)?;
        Some((kv.create_revision.0, kv.mod_revision.0))
    }
    fn keys(s: &MemStore) -> Vec<String> {
        s.dump().into_iter().map(|kv| kv.key).collect()
    }
    /// A watch message in short form, e.g. `"5: put p/a@5 del p/b@5"` (header revision first).
    fn brief(msg: WatchMessage) -> String {
        let event = |e: &WatchEvent| match e {
            WatchEvent::Put(kv) => format!(" put {}@{}", kv.key, kv.mod_revision),
            WatchEvent::Delete {
                key,
                mod_revision: r,
            } => format!(" del {key}@{r}"),
        };
        match msg {
            WatchMessage::Events {
                header_revision: h,
                events: e,
            } => {
                format!("{h}:{}", e.iter().map(event).collect::<String>())
            }
            WatchMessage::Progress { header_revision } => format!("progress {header_revision}"),
            WatchMessage::Compacted { compact_revision } => format!("compacted {compact_revision}"),
        }
    }
    async fn next(w: &mut Box<dyn Watch>) -> String {
        brief(w.next().await.unwrap())
    }
    /// The messages ready now, without waiting.
    fn ready(w: &mut Box<dyn Watch>) -> Vec<String> {
        std::iter::from_fn(|| w.next().now_or_never().map(|m| brief(m.unwrap()))).collect()
    }
    fn closed(r: Result<WatchMessage, StoreError>) -> bool {
        matches!(r, Err(StoreError::WatchClosed(_)))
    }
    fn unavailable<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Unavailable(_)))
    }
    fn indeterminate<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Indeterminate(_)))
    }
    fn rejected_with<T>(r: Result<T, StoreError>, what: &str) -> bool {
        matches!(r, Err(StoreError::Rejected(m)) if m.contains(what))
    }
    fn err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> StoreError {
        r.unwrap_err()
    }

    #[tokio::test]
    async fn revisions_and_create_mod_rules() {
        let s = MemStore::new();
        assert_eq!(s.revision(), Revision(1));
        assert_eq!(run(&s, vec![put("a", "1")]).await.revision, Revision(2));
        assert_eq!((revs(&s, "a"), s.version("a")), (Some((2, 2)), Some(1)));
        // The same value again still writes.
        assert_eq!(run(&s, vec![put("a", "1")]).await.revision, Revision(3));
        assert_eq!((revs(&s, "a"), s.version("a")), (Some((2, 3)), Some(2)));
        // Deleting an absent key, or reading, does not write.
        let r = run(&s, vec![del("zz"), get("a")]).await;
        assert_eq!(r.revision, Revision(3));
        assert_eq!(r.gets[0].as_ref().unwrap().mod_revision, Revision(3));
        // The writes of one txn share its revision; a Get sees the branch's earlier ops.
        let r = run(&s, vec![put("c", "y"), put("b", "x"), get("b")]).await;
        assert_eq!(r.revision, Revision(4));
        let b = r.gets[0].clone().unwrap();
        assert_eq!((b.value, b.mod_revision), (b"x".to_vec(), Revision(4)));
        assert_eq!(revs(&s, "c"), Some((4, 4)));
        // Delete then re-create: a new create revision, version restarts.
        assert_eq!(run(&s, vec![del("a")]).await.revision, Revision(5));
        assert_eq!((revs(&s, "a"), s.version("a")), (None, None));
        run(&s, vec![put("a", "2")]).await;
        assert_eq!((revs(&s, "a"), s.version("a")), (Some((6, 6)), Some(1)));
        let (list, rev) = s.get_prefix("").await.unwrap();
        let listed: Vec<&str> = list.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!((listed, rev), (vec!["a", "b", "c"], Revision(6)));
        assert_eq!(s.get_prefix("b").await.unwrap().0.len(), 1);
        assert_eq!(s.txn_count(), 6);
    }

    #[tokio::test]
    async fn compares_follow_etcd() {
        use CompareTarget::{CreateRevision as Create, ModRevision as Mod, Value};
        let s = MemStore::new();
        // Absent key: mod and create revisions are 0, a value never matches.
        assert!(!guarded(&s, Value(vec![])).await);
        assert!(!guarded(&s, Mod(Revision(1))).await);
        assert_eq!(s.revision(), Revision(1));
        assert!(guarded(&s, Create(Revision(0))).await); // put at 2
        assert!(!guarded(&s, Create(Revision(0))).await);
        assert!(!guarded(&s, Mod(Revision(1))).await);
        assert!(guarded(&s, Mod(Revision(2))).await); // put at 3
        assert!(guarded(&s, Value(b"v".to_vec())).await); // put at 4
        assert!(guarded(&s, Create(Revision(2))).await); // put at 5
        assert_eq!(revs(&s, "k"), Some((2, 5)));
        // Delete and re-create: the old create revision no longer matches.
        run(&s, vec![del("k")]).await;
        run(&s, vec![put("k", "v")]).await;
        assert!(!guarded(&s, Create(Revision(2))).await);
        assert!(guarded(&s, Create(Revision(7))).await);
        assert_eq!(revs(&s, "k"), Some((7, 8)));
    }

    #[tokio::test]
    async fn failure_branch_runs_with_gets() {
        let s = MemStore::new();
        run(&s, vec![put("a", "1")]).await;
        let a = s.dump()[0].clone();
        let mut t = ops(vec![put("a", "2")]);
        let target = CompareTarget::ModRevision(Revision(9));
        t.compares.push(Compare {
            key: "a".into(),
            target,
        });
        t.failure = vec![get("a"), get("zz"), put("f", "1")];
        let r = s.txn(t).await.unwrap();
        assert!(!r.succeeded);
        assert_eq!(
            (r.revision, r.gets),
            (Revision(3), vec![Some(a.clone()), None])
        );
        assert_eq!(
            (s.dump()[0].clone(), keys(&s)),
            (a, vec!["a".into(), "f".into()])
        );
    }

    #[tokio::test]
    async fn limits_reject_without_applying() {
        let s = MemStore::new();
        let many: Vec<TxnOp> = (0..129).map(|i| put(&format!("k{i}"), "v")).collect();
        let too_many = "etcdserver: too many operations in txn request";
        assert!(rejected_with(try_run(&s, many.clone()).await, too_many));
        let mut t = ops(vec![]);
        t.failure = many.clone();
        assert!(rejected_with(s.txn(t).await, too_many));
        let target = || CompareTarget::ModRevision(Revision(0));
        let mut t = ops(vec![]);
        t.compares = (0..129)
            .map(|i| Compare {
                key: format!("c{i}"),
                target: target(),
            })
            .collect();
        assert!(rejected_with(s.txn(t).await, too_many));
        assert_eq!((s.revision(), s.dump().len()), (Revision(1), 0));
        assert_eq!(s.txn_count(), 0);
        run(&s, many[..128].to_vec()).await;
        assert_eq!(s.dump().len(), 128);
        // Over 1.5 MiB of keys and values.
        let big = "x".repeat(800 * 1024);
        let r = try_run(&s, vec![put("b1", &big), put("b2", &big)]).await;
        assert!(rejected_with(r, "request is too large"));
        run(&s, vec![put("b1", &big)]).await;
        // Writing one key twice in a branch.
        let r = try_run(&s, vec![put("d", "1"), del("d")]).await;
        assert!(rejected_with(r, "duplicate key"));
        let r = try_run(&s, vec![put("", "1")]).await;
        assert!(rejected_with(r, "key is not provided"));
        // An unknown lease fails the whole txn.
        let r = try_run(&s, vec![put("e", "1"), put_on("f", "1", 42)]).await;
        assert_eq!(err(r), LeaseNotFound(42));
        assert_eq!((s.revision(), s.dump().len()), (Revision(3), 129));
    }

    #[tokio::test]
    async fn watch_from_past_revision_replays_history() {
        let s = MemStore::new();
        run(&s, vec![put("p/a", "1")]).await; // 2
        run(&s, vec![put("p/b", "1"), put("q/x", "1")]).await; // 3
        run(&s, vec![put("q/y", "1")]).await; // 4
        run(&s, vec![del("p/a"), put("p/c", "1"), del("p/zz")]).await; // 5
        let mut w = s.watch_prefix("p/", Revision(3)).await.unwrap();
        assert_eq!(ready(&mut w), ["5: put p/b@3", "5: del p/a@5 put p/c@5"]);
        let mut w = s.watch_prefix("p/", Revision(1)).await.unwrap();
        let all = ["5: put p/a@2", "5: put p/b@3", "5: del p/a@5 put p/c@5"];
        assert_eq!(ready(&mut w), all);
        // From 0: only what follows; from a future revision: nothing before it.
        let mut now = s.watch_prefix("p/", Revision(0)).await.unwrap();
        let mut future = s.watch_prefix("p/", Revision(7)).await.unwrap();
        assert!(ready(&mut now).is_empty());
        run(&s, vec![put("p/d", "1")]).await; // 6
        run(&s, vec![put("p/e", "1")]).await; // 7
        assert_eq!(ready(&mut now), ["6: put p/d@6", "7: put p/e@7"]);
        assert_eq!(ready(&mut future), ["7: put p/e@7"]);
        assert_eq!(ready(&mut w), ["6: put p/d@6", "7: put p/e@7"]);
    }

    #[tokio::test]
    async fn live_watch_gets_a_txns_events_together() {
        let s = MemStore::new();
        run(&s, vec![put("p/old", "1")]).await;
        let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
        let waiter = tokio::spawn(async move { (next(&mut w).await, w) });
        tokio::task::yield_now().await;
        let t = vec![
            put("p/z", "1"),
            put("other", "1"),
            del("p/old"),
            put("p/a", "2"),
        ];
        run(&s, t).await;
        let (msg, mut w) = waiter.await.unwrap();
        assert_eq!(msg, "3: put p/z@3 del p/old@3 put p/a@3");
        assert!(ready(&mut w).is_empty());
        assert_eq!(s.watch_count(), 1);
        drop(w);
        assert_eq!(s.watch_count(), 0);
    }

    #[tokio::test]
    async fn compaction_and_compacted_watch() {
        let s = MemStore::new();
        for i in 0..4 {
            run(&s, vec![put("p/k", &i.to_string())]).await; // 2..=5
        }
        let mut live = s.watch_prefix("p/", Revision(0)).await.unwrap();
        let r = s.compact(Revision(6)).await;
        assert!(rejected_with(r, "future revision"));
        s.compact(Revision(3)).await.unwrap();
        assert_eq!(s.compact_revision(), Revision(3));
        let (requested, compact_revision) = (Revision(2), Revision(3));
        let again = StoreError::Compacted {
            requested,
            compact_revision,
        };
        assert_eq!(err(s.compact(Revision(2)).await), again);
        for start in [1, 3] {
            let mut w = s.watch_prefix("p/", Revision(start)).await.unwrap();
            assert_eq!(next(&mut w).await, "compacted 3");
            assert!(closed(w.next().await));
            assert!(w.request_progress().await.is_err());
        }
        let mut w = s.watch_prefix("p/", Revision(4)).await.unwrap();
        assert_eq!(ready(&mut w), ["5: put p/k@4", "5: put p/k@5"]);
        // Live watches go on; keys keep their revisions.
        run(&s, vec![put("p/k", "x")]).await;
        assert_eq!(ready(&mut live), ["6: put p/k@6"]);
        assert_eq!(revs(&s, "p/k"), Some((2, 6)));
    }

    #[tokio::test]
    async fn progress_follows_delivered_events() {
        let s = MemStore::new();
        let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
        run(&s, vec![put("p/a", "1")]).await;
        run(&s, vec![put("q/a", "1")]).await;
        w.request_progress().await.unwrap();
        assert_eq!(ready(&mut w), ["2: put p/a@2", "progress 3"]);
    }

    #[tokio::test]
    async fn lease_expiry_on_the_manual_clock() {
        let s = MemStore::new();
        let l = s.grant_lease(10).await.unwrap();
        let short = s.grant_lease(5).await.unwrap();
        assert_eq!((l, short), (FIRST_LEASE_ID, FIRST_LEASE_ID + 1));
        let t = vec![
            put_on("p/b", "1", l),
            put_on("p/a", "1", l),
            put("p/c", "1"),
        ];
        run(&s, t).await;
        assert_eq!(s.dump()[0].lease, l);
        let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
        // The 5 s lease expires; it had no keys, so nothing is written.
        s.advance_clock(Duration::from_secs(6));
        assert_eq!((s.leases(), s.revision()), (vec![l], Revision(2)));
        assert_eq!(s.keep_alive_once(l).await.unwrap(), 10);
        s.advance_clock(Duration::from_secs(9));
        assert_eq!((keys(&s).len(), ready(&mut w).len()), (3, 0));
        s.advance_clock(Duration::from_secs(1));
        assert_eq!(s.now(), Duration::from_secs(16));
        assert_eq!(keys(&s), ["p/c"]);
        assert_eq!(ready(&mut w), ["3: del p/a@3 del p/b@3"]);
        assert_eq!(err(s.keep_alive_once(l).await), LeaseNotFound(l));
        let r = try_run(&s, vec![put_on("p/x", "1", l)]).await;
        assert_eq!(err(r), LeaseNotFound(l));
        // Forced expiry.
        let l2 = s.grant_lease(100).await.unwrap();
        run(&s, vec![put_on("p/d", "1", l2)]).await;
        s.expire_lease(l2).unwrap();
        assert_eq!(ready(&mut w), ["4: put p/d@4", "5: del p/d@5"]);
        assert_eq!(err(s.expire_lease(l2)), LeaseNotFound(l2));
    }

    #[tokio::test]
    async fn revoke_deletes_attached_keys_only() {
        let s = MemStore::new();
        let (l1, l2) = (
            s.grant_lease(10).await.unwrap(),
            s.grant_lease(10).await.unwrap(),
        );
        let t = vec![
            put_on("a", "1", l1),
            put_on("b", "1", l1),
            put_on("c", "1", l2),
        ];
        run(&s, t).await;
        // Re-putting "b" on another lease, and "a" on none, detaches them from l1.
        run(&s, vec![put_on("b", "2", l2), put("a", "2")]).await;
        s.revoke_lease(l1).await.unwrap();
        assert_eq!((s.revision(), keys(&s).len()), (Revision(3), 3)); // no write
        let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
        s.revoke_lease(l2).await.unwrap();
        assert_eq!(ready(&mut w), ["4: del b@4 del c@4"]);
        assert_eq!(keys(&s), ["a"]);
        assert_eq!(err(s.revoke_lease(l2).await), LeaseNotFound(l2));
        assert_eq!(err(s.revoke_lease(7).await), LeaseNotFound(7));
    }

    #[tokio::test]
    async fn injected_txn_failures() {
        let s = MemStore::new();
        let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
        s.fail_next_txns(1, FailMode::Unavailable);
        s.fail_next_txns(1, FailMode::IndeterminateNotApplied);
        s.fail_next_txns(1, FailMode::IndeterminateApplied);
        assert!(unavailable(try_run(&s, vec![put("a", "1")]).await));
        assert!(indeterminate(try_run(&s, vec![put("b", "1")]).await));
        assert_eq!((s.dump().len(), s.revision()), (0, Revision(1)));
        assert_eq!(s.txn_count(), 0);
        assert!(ready(&mut w).is_empty());
        assert!(indeterminate(try_run(&s, vec![put("c", "1")]).await));
        assert_eq!((revs(&s, "c"), s.txn_count()), (Some((2, 2)), 1));
        assert_eq!(ready(&mut w), ["2: put c@2"]);
        assert_eq!(run(&s, vec![put("d", "1")]).await.revision, Revision(3));
    }

    #[tokio::test]
    async fn outage_and_broken_watches() {
        let s = MemStore::new();
        let l = s.grant_lease(10).await.unwrap();
        let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
        let waiter = tokio::spawn(async move { w.next().await });
        tokio::task::yield_now().await;
        s.set_unavailable(true);
        assert!(closed(waiter.await.unwrap()));
        assert!(unavailable(s.get_prefix("").await));
        assert!(unavailable(try_run(&s, vec![put("a", "1")]).await));
        assert!(unavailable(s.watch_prefix("", Revision(0)).await));
        assert!(unavailable(s.grant_lease(1).await));
        assert!(unavailable(s.keep_alive_once(l).await));
        assert!(unavailable(s.revoke_lease(l).await));
        assert!(unavailable(s.compact(Revision(1)).await));
        s.set_unavailable(false);
        assert!(s.dump().is_empty() && s.leases() == [l]);
        // A broken watch fails at once, even with messages pending, and for good.
        let mut w = s.watch_prefix("", Revision(0)).await.unwrap();
        run(&s, vec![put("a", "1")]).await;
        s.break_watches();
        assert!(closed(w.next().await) && closed(w.next().await));
        assert!(w.request_progress().await.is_err());
        let mut w = s.watch_prefix("", Revision(2)).await.unwrap();
        assert_eq!(ready(&mut w), ["2: put a@2"]);
    }

    #[tokio::test]
    async fn held_and_duplicated_watch_messages() {
        let s = MemStore::new();
        let mut w = s.watch_prefix("p/", Revision(0)).await.unwrap();
        s.set_watch_delivery(WatchDelivery::Hold);
        run(&s, vec![put("p/a", "1")]).await; // 2
        w.request_progress().await.unwrap();
        run(&s, vec![put("p/b", "1")]).await; // 3
        run(&s, vec![put("x", "1")]).await; // 4
        assert!(ready(&mut w).is_empty());
        s.flush_watches();
        let flushed = ["4: put p/a@2", "progress 2", "4: put p/b@3"];
        assert_eq!(ready(&mut w), flushed);
        // Switching back to immediate delivery flushes.
        run(&s, vec![put("p/c", "1")]).await;
        assert!(ready(&mut w).is_empty());
        s.set_watch_delivery(WatchDelivery::Immediate);
        assert_eq!(ready(&mut w), ["5: put p/c@5"]);
        s.duplicate_next_watch_messages(1);
        run(&s, vec![put("p/d", "1")]).await;
        run(&s, vec![put("p/e", "1")]).await;
        let dup = ["6: put p/d@6", "6: put p/d@6", "7: put p/e@7"];
        assert_eq!(ready(&mut w), dup);
        // Breaking drops what is held.
        s.set_watch_delivery(WatchDelivery::Hold);
        run(&s, vec![put("p/f", "1")]).await;
        s.break_watches();
        s.flush_watches();
        assert!(closed(w.next().await));
    }
}
