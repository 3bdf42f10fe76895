//! The meta-store seam: what the EtcdWorker and the capture need from etcd, as a trait.
//!
//! Two backends implement it: [`etcd::EtcdStore`] (production and integration tests, on a real
//! etcd) and [`mem::MemStore`] (an in-process MVCC store with revisions, prefix watches,
//! transactions with compares, leases with expiry and fault injection, for unit tests and
//! simulation). The types here are deliberately etcd-shaped so that the etcd backend is a thin
//! translation and the in-process one can be checked against it by the same test suite.

pub mod etcd;
pub mod mem;

use async_trait::async_trait;
use rcdc_state::Revision;

/// One key and its value as stored, with its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The raw value bytes.
    pub value: Vec<u8>,
    /// Revision of the txn that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the txn that last modified the key.
    pub mod_revision: Revision,
    /// The lease the key is attached to, or 0.
    pub lease: i64,
}

/// What a compare in a transaction checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// `mod_revision(key) == rev`; an absent key has mod revision 0.
    ModRevision(Revision),
    /// `create_revision(key) == rev`; an absent key has create revision 0.
    CreateRevision(Revision),
    /// `value(key) == bytes`; an absent key never matches.
    Value(Vec<u8>),
}

/// One compare of a transaction: all must hold for the success branch to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// What must be equal.
    pub target: CompareTarget,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Put a value, optionally attached to a lease (0 = none).
    Put {
        /// Key written.
        key: String,
        /// Value written.
        value: Vec<u8>,
        /// Lease id, 0 for none.
        lease: i64,
    },
    /// Delete one key.
    Delete {
        /// Key deleted.
        key: String,
    },
    /// Read one key (used in the failure branch to learn the newest values after a conflict).
    Get {
        /// Key read.
        key: String,
    },
}

/// A transaction: `if compares then success else failure`, like etcd's Txn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// All must hold.
    pub compares: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

/// The answer to a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (and the success branch ran).
    pub succeeded: bool,
    /// The store revision after the txn (the txn's own revision if it wrote).
    pub revision: Revision,
    /// For each `Get` op of the branch that ran, in order: the key's value, or `None` if absent.
    pub gets: Vec<Option<KeyValue>>,
}

/// A change seen on a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or modified; the `KeyValue` is the new version.
    Put(KeyValue),
    /// The key was deleted at `mod_revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the deleting txn.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
    /// The revision at which the change happened.
    pub fn mod_revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// One message from a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Events, all at revisions `<= header_revision`, in revision order.
    Events {
        /// The store revision when the response was sent.
        header_revision: Revision,
        /// The changes.
        events: Vec<WatchEvent>,
    },
    /// A progress notification: every event up to `header_revision` has been delivered.
    /// Not raft-ordered with events on every etcd version, so a worker must not move its
    /// revision on it (facts §3.7).
    Progress {
        /// The store revision when the notification was sent.
        header_revision: Revision,
    },
    /// The requested start revision was compacted away; the watch is over and the caller must
    /// re-list (a resync).
    Compacted {
        /// The store's compaction revision.
        compact_revision: Revision,
    },
}

/// Errors from a meta store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time; the operation did not happen.
    #[error("meta store unavailable: {0}")]
    Unavailable(String),
    /// A write's outcome is unknown: it may or may not have committed (a timeout or a broken
    /// connection after the request was sent). Only idempotent work may be retried blindly.
    #[error("meta store write outcome unknown: {0}")]
    Indeterminate(String),
    /// The requested revision has been compacted.
    #[error("revision {requested} is compacted (compaction revision {compact_revision})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compaction revision.
        compact_revision: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:x} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// The request broke a server limit (too many ops, too large).
    #[error("request rejected by the meta store: {0}")]
    Rejected(String),
    /// The watch stream ended.
    #[error("watch stream closed: {0}")]
    WatchClosed(String),
}

impl StoreError {
    /// Whether retrying the same request later may succeed without changing it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Indeterminate(_) | StoreError::WatchClosed(_)
        )
    }
}

/// A live prefix watch.
#[async_trait]
pub trait Watch: Send {
    /// The next message; `Err` once the stream is broken (the caller re-lists and re-watches).
    async fn next(&mut self) -> Result<WatchMessage, StoreError>;
    /// Ask the server for a progress notification on this watch.
    async fn request_progress(&mut self) -> Result<(), StoreError>;
}

/// What the worker and the capture need from a meta store.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Every key under `prefix`, sorted by key, and the store revision of the read.
    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;
    /// Watch every key under `prefix`, starting at `start_revision` (inclusive).
    async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: Revision,
    ) -> Result<Box<dyn Watch>, StoreError>;
    /// Run a transaction.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;
    /// Create a lease with a TTL in seconds; returns its id.
    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError>;
    /// Refresh a lease once; returns the remaining TTL in seconds.
    async fn keep_alive_once(&self, lease: i64) -> Result<i64, StoreError>;
    /// Revoke a lease, deleting its keys.
    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError>;
    /// Compact history up to `revision` (tests use it to force watch resyncs).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}

/// etcd's default `--max-txn-ops`: at most this many compares, and as many ops per branch.
pub const MAX_TXN_OPS: usize = 128;
/// The txn size budget (Σ 2·len(key) + len(value)) TiCDC keeps under etcd's 1.5 MiB request
/// limit: 1.25 MiB (facts §3.7).
pub const MAX_TXN_BYTES: usize = 1024 * (1024 + 256);
