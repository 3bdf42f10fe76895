//! The production backend: etcd through `etcd-client`.
//!
//! Every request is bounded by `request_timeout`, so a dead etcd never hangs a caller. Error
//! mapping matters more than anything else here, because the worker decides on it:
//!
//! | what happened | `StoreError` |
//! |---|---|
//! | connection refused, transport error, timeout, `Unavailable` on a read or lease call | `Unavailable` (retry) |
//! | timeout, transport error or `Unavailable`/`DeadlineExceeded`/`Unknown` *during a txn* | `Indeterminate` (may have committed) |
//! | `InvalidArgument` "too many operations" / "request is too large" | `Rejected` |
//! | `NotFound` / "requested lease not found" | `LeaseNotFound` |
//! | "required revision has been compacted" | `Compacted` |

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as ECompare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions,
    Txn as ETxn, TxnOp as ETxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use rcdc_state::Revision;

use super::{
    CompareTarget, KeyValue, MetaStore, StoreError, Txn, TxnOp, TxnResponse, Watch, WatchEvent,
    WatchMessage,
};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdStoreConfig {
    /// Dial timeout per endpoint.
    pub dial_timeout: Duration,
    /// Upper bound of every request.
    pub request_timeout: Duration,
}

impl Default for EtcdStoreConfig {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A [`MetaStore`] on a real etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: EtcdStoreConfig,
}

/// Listings of a large cluster exceed tonic's 4 MiB default; a snapshot must never be
/// unreadable because it grew.
const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024;

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`). The connection is lazy
    /// enough that a dead etcd at startup is an `Unavailable` error to retry, not a panic.
    pub async fn connect(
        endpoints: &[String],
        config: EtcdStoreConfig,
    ) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        let connect = Client::connect(endpoints, Some(options));
        let client = tokio::time::timeout(config.dial_timeout, connect)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("connecting to {} timed out", endpoints.join(",")))
            })?
            .map_err(|e| {
                StoreError::Unavailable(format!("connecting to {}: {e}", endpoints.join(",")))
            })?;
        Ok(Self { client, config })
    }

    /// The raw client (benchmarks compare the worker with raw txns).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.config.request_timeout, f).await {
            Ok(r) => r.map_err(|e| map_error(what, e, false)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{what}: timed out after {:?}",
                self.config.request_timeout
            ))),
        }
    }
}

/// Maps an etcd-client error; `write` says whether the request may have been applied.
fn map_error(what: &str, e: etcd_client::Error, write: bool) -> StoreError {
    let text = format!("{what}: {e}");
    // etcd-client reports an unknown lease on keep-alive as its own error, not a gRPC status.
    if let etcd_client::Error::LeaseKeepAliveError(msg) = &e {
        if msg.contains("not found") {
            return StoreError::LeaseNotFound(0);
        }
    }
    if let etcd_client::Error::GRpcStatus(status) = &e {
        let msg = status.message();
        if msg.contains("too many operations") || msg.contains("request is too large") {
            return StoreError::Rejected(text);
        }
        if msg.contains("lease not found") {
            return StoreError::LeaseNotFound(0);
        }
        if msg.contains("compacted") {
            return StoreError::Compacted {
                requested: Revision(0),
                compact_revision: Revision(0),
            };
        }
        use tonic::Code;
        return match status.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated => StoreError::Rejected(text),
            Code::NotFound => StoreError::LeaseNotFound(0),
            _ if write => StoreError::Indeterminate(text),
            _ => StoreError::Unavailable(text),
        };
    }
    if write {
        StoreError::Indeterminate(text)
    } else {
        StoreError::Unavailable(text)
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    let key = match kv.key_str() {
        Ok(k) => k.to_owned(),
        Err(_) => {
            tracing::warn!(key = ?kv.key(), "skipping a key that is not UTF-8");
            return None;
        }
    };
    Some(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: Revision(kv.create_revision()),
        mod_revision: Revision(kv.mod_revision()),
        lease: kv.lease(),
    })
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_DECODE_BYTES);
        let resp = self
            .bounded(
                "get prefix",
                kv.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.kvs().iter().filter_map(to_kv).collect(), Revision(rev)))
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        start: Revision,
    ) -> Result<Box<dyn Watch>, StoreError> {
        let mut options = WatchOptions::new().with_prefix().with_progress_notify();
        if start.0 > 0 {
            options = options.with_start_revision(start.0);
        }
        let mut wc = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_DECODE_BYTES);
        let stream = self
            .bounded("watch", wc.watch(prefix, Some(options)))
            .await?;
        Ok(Box::new(EtcdWatch {
            stream,
            requested: start,
        }))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let cmps: Vec<ECompare> = txn
            .compares
            .iter()
            .map(|c| match &c.target {
                CompareTarget::ModRevision(r) => {
                    ECompare::mod_revision(c.key.as_str(), CompareOp::Equal, r.0)
                }
                CompareTarget::CreateRevision(r) => {
                    ECompare::create_revision(c.key.as_str(), CompareOp::Equal, r.0)
                }
                CompareTarget::Value(v) => {
                    ECompare::value(c.key.as_str(), CompareOp::Equal, v.clone())
                }
            })
            .collect();
        let ops = |ops: &[TxnOp]| -> Vec<ETxnOp> {
            ops.iter()
                .map(|op| match op {
                    TxnOp::Put { key, value, lease } => {
                        let opts = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                        ETxnOp::put(key.as_str(), value.clone(), opts)
                    }
                    TxnOp::Delete { key } => ETxnOp::delete(key.as_str(), None),
                    TxnOp::Get { key } => ETxnOp::get(key.as_str(), None),
                })
                .collect()
        };
        let etxn = ETxn::new()
            .when(cmps)
            .and_then(ops(&txn.success))
            .or_else(ops(&txn.failure));
        let mut kv = self.client.kv_client();
        let resp = match tokio::time::timeout(self.config.request_timeout, kv.txn(etxn)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(map_error("txn", e, true)),
            Err(_) => {
                return Err(StoreError::Indeterminate(format!(
                    "txn: timed out after {:?}",
                    self.config.request_timeout
                )))
            }
        };
        let gets = resp
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g.kvs().first().and_then(to_kv)),
                _ => None,
            })
            .collect();
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: Revision(resp.header().map(|h| h.revision()).unwrap_or_default()),
            gets,
        })
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let mut lc = self.client.lease_client();
        Ok(self
            .bounded("lease grant", lc.grant(ttl_secs, None))
            .await?
            .id())
    }

    async fn keep_alive_once(&self, lease: i64) -> Result<i64, StoreError> {
        let mut lc = self.client.lease_client();
        let (mut keeper, mut stream) = self
            .bounded("lease keep-alive", lc.keep_alive(lease))
            .await?;
        self.bounded("lease keep-alive", keeper.keep_alive())
            .await?;
        match self.bounded("lease keep-alive", stream.message()).await? {
            // etcd answers a keep-alive of an unknown lease with TTL 0 rather than an error.
            Some(r) if r.ttl() > 0 => Ok(r.ttl()),
            Some(_) => Err(StoreError::LeaseNotFound(lease)),
            None => Err(StoreError::Unavailable(
                "lease keep-alive stream closed".into(),
            )),
        }
    }

    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        let mut lc = self.client.lease_client();
        match self.bounded("lease revoke", lc.revoke(lease)).await {
            Err(StoreError::LeaseNotFound(_)) => Err(StoreError::LeaseNotFound(lease)),
            other => other.map(|_| ()),
        }
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        self.bounded("compact", kv.compact(revision.0, None))
            .await
            .map(|_| ())
    }
}

/// A prefix watch on one gRPC watch stream.
struct EtcdWatch {
    stream: WatchStream,
    requested: Revision,
}

#[async_trait]
impl Watch for EtcdWatch {
    async fn next(&mut self) -> Result<WatchMessage, StoreError> {
        loop {
            let resp = match self.stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(StoreError::WatchClosed(
                        "etcd closed the watch stream".into(),
                    ))
                }
                Err(e) => return Err(StoreError::WatchClosed(e.to_string())),
            };
            let header_revision = Revision(resp.header().map(|h| h.revision()).unwrap_or_default());
            if resp.compact_revision() > 0 {
                return Ok(WatchMessage::Compacted {
                    compact_revision: Revision(resp.compact_revision()),
                });
            }
            if resp.canceled() {
                return Err(StoreError::WatchClosed(format!(
                    "watch canceled: {}",
                    resp.cancel_reason()
                )));
            }
            if resp.created() && resp.events().is_empty() {
                continue; // the creation acknowledgement carries nothing
            }
            if resp.events().is_empty() {
                // clientv3's IsProgressNotify: no events, not created, not canceled.
                return Ok(WatchMessage::Progress { header_revision });
            }
            let events = resp
                .events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    match ev.event_type() {
                        EventType::Put => to_kv(kv).map(WatchEvent::Put),
                        EventType::Delete => Some(WatchEvent::Delete {
                            key: kv.key_str().ok()?.to_owned(),
                            mod_revision: Revision(kv.mod_revision()),
                        }),
                    }
                })
                .collect();
            let _ = self.requested;
            return Ok(WatchMessage::Events {
                header_revision,
                events,
            });
        }
    }

    async fn request_progress(&mut self) -> Result<(), StoreError> {
        self.stream
            .request_progress()
            .await
            .map_err(|e| StoreError::WatchClosed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_whether_a_write_may_have_landed() {
        let status =
            |code, msg: &str| etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg));
        assert!(matches!(
            map_error("txn", status(tonic::Code::Unavailable, "x"), true),
            StoreError::Indeterminate(_)
        ));
        assert!(matches!(
            map_error("get", status(tonic::Code::Unavailable, "x"), false),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_error(
                "txn",
                status(
                    tonic::Code::InvalidArgument,
                    "etcdserver: too many operations in txn request"
                ),
                true
            ),
            StoreError::Rejected(_)
        ));
        assert!(matches!(
            map_error(
                "grant",
                status(
                    tonic::Code::NotFound,
                    "etcdserver: requested lease not found"
                ),
                false
            ),
            StoreError::LeaseNotFound(_)
        ));
        assert!(matches!(
            map_error(
                "keep-alive",
                etcd_client::Error::LeaseKeepAliveError("lease not found".into()),
                false
            ),
            StoreError::LeaseNotFound(_)
        ));
        assert!(matches!(
            map_error(
                "get",
                status(
                    tonic::Code::OutOfRange,
                    "mvcc: required revision has been compacted"
                ),
                false
            ),
            StoreError::Compacted { .. }
        ));
    }
}
