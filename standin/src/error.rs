//! The stand-in's errors. Each names what it was talking to (a listen address, the etcd
//! endpoint, a file), so a failed start reads as one clear line.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the stand-in could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// A member's listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The real etcd behind the stand-in did not answer.
    #[error("etcd at {endpoint} is unreachable: {source}")]
    EtcdUnreachable {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The TLS handshake with the real etcd failed: a CA that did not sign etcd's certificate,
    /// or etcd refusing ours.
    #[error("etcd at {endpoint}: TLS handshake failed: {failure}")]
    EtcdTls {
        endpoint: String,
        failure: rcdc_tls::TlsFailure,
    },
    /// A TLS file (`--ca`, `--cert`, `--key`) cannot be used; the error names it.
    #[error(transparent)]
    Tls(#[from] rcdc_tls::TlsError),
    /// etcd answered but the request failed.
    #[error("etcd at {endpoint}: {what}: {source}")]
    Etcd {
        endpoint: String,
        what: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// A value PD keeps in etcd is not what PD writes there.
    #[error("etcd at {endpoint}: key {key} holds an unreadable value: {why}")]
    CorruptValue {
        endpoint: String,
        key: String,
        why: String,
    },
    /// `--cluster-id` disagrees with the id this etcd already carries.
    #[error(
        "etcd at {endpoint} belongs to cluster {stored}, but --cluster-id is {requested} \
         (PD keeps the id in /pd/cluster_id; use a fresh etcd or drop the flag)"
    )]
    ClusterIdConflict {
        endpoint: String,
        stored: u64,
        requested: u64,
    },
    /// The data directory (the TSO window) could not be used.
    #[error("data dir {}: {what}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The TSO window file holds something this stand-in did not write.
    #[error("data dir: {} is corrupt: {why}", path.display())]
    CorruptWindow { path: PathBuf, why: String },
    /// A serving task stopped; only a bug makes this happen.
    #[error("a serving task stopped: {0}")]
    TaskEnded(String),
    /// A flag combination the stand-in cannot serve.
    #[error("{0}")]
    Config(String),
}

/// The crate's result type.
pub type Result<T, E = StandinError> = std::result::Result<T, E>;
