//! The production backend: etcd through `etcd-client`.
//!
//! Every request is bounded by `request_timeout`, so a dead etcd never hangs a caller. Error
//! mapping matters more than anything else here, because the worker decides on it:
//!
//! | what happened | `StoreError` |
//! |---|---|
//! | connection refused / tcp connect error / DNS error (the request never left), any call | `Unavailable` (retry) |
//! | timeout, transport error, `Unavailable`, `DeadlineExceeded`, `Cancelled`, `Unknown` on a read, watch or lease call | `Unavailable` (retry) |
//! | the same *during a txn* once it may have been sent | `Indeterminate` (may have committed) |
//! | `ResourceExhausted` "too many requests" (etcd refused before proposing) | `Unavailable` |
//! | `InvalidArgument` "too many operations" / "request is too large" / "duplicate key"; `ResourceExhausted` "larger than max"; other `InvalidArgument`, `FailedPrecondition`, `OutOfRange`, `PermissionDenied`, `Unauthenticated`; bad endpoint URL | `Rejected` |
//! | `NotFound` "requested lease not found", keep-alive TTL 0 | `LeaseNotFound(id)` |
//! | "required revision has been compacted" | `Compacted` (etcd does not say the compaction revision; `compact` reports the requested one as a lower bound) |
//! | watch response with `compact_revision > 0` (etcd 3.4: `canceled`, empty `cancel_reason`) | `WatchMessage::Compacted` |
//! | watch stream error or end, other cancellation | `WatchClosed` |
//!
//! etcd 3.4 quirks this relies on: a watch first answers `created` (skipped here); a requested
//! progress notification comes back with `watch_id == -1`, no events, and (before 3.4.24,
//! etcd#15220) the *store's* revision, not ordered with pending events; a watch on a compacted
//! start revision is first created, then canceled with `compact_revision` set and header
//! revision 0.

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
    /// TLS (CA, client identity) for `https://` endpoints; `None` for plain `http://`. It is
    /// tonic's `ClientTlsConfig`, the same value the PD client takes.
    pub tls: Option<etcd_client::TlsOptions>,
}

impl Default for EtcdStoreConfig {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A [`MetaStore`] on a real etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: EtcdStoreConfig,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Listings of a large cluster exceed tonic's 4 MiB default; a snapshot must never be
/// unreadable because it grew.
const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024;

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`).
    ///
    /// The channel is lazy: this does not wait for etcd, so a dead etcd at startup is not an
    /// error here but an `Unavailable` on the first request, to retry. Errors: `Rejected` for
    /// a malformed endpoint, `Unavailable` otherwise.
    pub async fn connect(
        endpoints: &[String],
        config: EtcdStoreConfig,
    ) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls.clone());
        }
        let connect = Client::connect(endpoints, Some(options));
        let client = tokio::time::timeout(config.dial_timeout, connect)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("connecting to {} timed out", endpoints.join(",")))
            })?
            .map_err(|e| map_error(&format!("connecting to {}", endpoints.join(",")), e, false))?;
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

/// Whether the error proves the request never reached etcd (no connection could be made), so
/// even a write certainly did not happen.
fn never_sent(e: &etcd_client::Error) -> bool {
    use std::error::Error as _;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(status) => {
            // tonic reports a failed connect as `Unavailable` "tcp connect error", with the
            // transport error as its source.
            if status.code() == tonic::Code::Unavailable && is_connect_failure(status.message()) {
                return true;
            }
            status.source()
        }
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionRefused | AddrNotAvailable) {
                return true;
            }
        }
        if is_connect_failure(&c.to_string()) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The last two causes of `e`'s source chain, joined (or `e` itself when it has none).
fn innermost_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    chain[chain.len().saturating_sub(2)..].join(": ")
}

fn is_connect_failure(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    [
        "tcp connect error",
        "connection refused",
        "dns error",
        "error trying to connect",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// Maps an etcd-client error; `write` says whether the request may have been applied if it
/// was sent. A `LeaseNotFound` carries 0 here; callers that know the lease fill it in.
fn map_error(what: &str, e: etcd_client::Error, write: bool) -> StoreError {
    use tonic::Code;
    let text = format!("{what}: {e}");
    match &e {
        // etcd-client turns a keep-alive answered with TTL 0 into its own error.
        etcd_client::Error::LeaseKeepAliveError(msg) if msg.contains("not found") => {
            return StoreError::LeaseNotFound(0)
        }
        etcd_client::Error::InvalidArgs(_)
        | etcd_client::Error::InvalidUri(_)
        | etcd_client::Error::Utf8Error(_)
        | etcd_client::Error::InvalidMetadataValue(_) => return StoreError::Rejected(text),
        _ => {}
    }
    if never_sent(&e) {
        // The transport error's Display repeats its whole chain in Debug form; the two
        // innermost causes ("tcp connect error: Connection refused") say it in one line.
        let root: &(dyn std::error::Error + 'static) = match &e {
            etcd_client::Error::GRpcStatus(status) => status,
            other => other,
        };
        return StoreError::Unavailable(format!("{what}: {}", innermost_causes(root)));
    }
    if let etcd_client::Error::GRpcStatus(status) = &e {
        let msg = status.message();
        if msg.contains("lease not found") {
            return StoreError::LeaseNotFound(0);
        }
        if msg.contains("required revision has been compacted") {
            return StoreError::Compacted {
                requested: Revision(0),
                compact_revision: Revision(0),
            };
        }
        if msg.contains("too many operations")
            || msg.contains("request is too large")
            || msg.contains("larger than max")
        {
            return StoreError::Rejected(text);
        }
        return match status.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::AlreadyExists => StoreError::Rejected(text),
            Code::NotFound => StoreError::LeaseNotFound(0),
            // etcd refuses these before proposing ("too many requests"): nothing was applied.
            Code::ResourceExhausted => StoreError::Unavailable(text),
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

/// Fills in the lease id of a `LeaseNotFound` mapped without one.
fn with_lease(e: StoreError, lease: i64) -> StoreError {
    match e {
        StoreError::LeaseNotFound(0) => StoreError::LeaseNotFound(lease),
        other => other,
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

fn to_compare(c: &super::Compare) -> ECompare {
    let key = c.key.as_str();
    match &c.target {
        CompareTarget::ModRevision(r) => ECompare::mod_revision(key, CompareOp::Equal, r.0),
        CompareTarget::CreateRevision(r) => ECompare::create_revision(key, CompareOp::Equal, r.0),
        CompareTarget::Value(v) => ECompare::value(key, CompareOp::Equal, v.clone()),
    }
}

fn to_op(op: &TxnOp) -> ETxnOp {
    match op {
        TxnOp::Put { key, value, lease } => {
            let opts = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
            ETxnOp::put(key.as_str(), value.clone(), opts)
        }
        TxnOp::Delete { key } => ETxnOp::delete(key.as_str(), None),
        TxnOp::Get { key } => ETxnOp::get(key.as_str(), None),
    }
}

/// The first lease a txn attaches keys to (to name it in a `LeaseNotFound`).
fn txn_lease(txn: &Txn) -> i64 {
    txn.success
        .iter()
        .chain(&txn.failure)
        .find_map(|op| match op {
            TxnOp::Put { lease, .. } if *lease != 0 => Some(*lease),
            _ => None,
        })
        .unwrap_or(0)
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
            request_timeout: self.config.request_timeout,
        }))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        // Failpoint `etcd-txn` (rcdc's README "Failpoints"): as if etcd failed before the
        // request left (`Unavailable`), or after (`return(indeterminate)`). `pause` holds the
        // caller's thread, which is the point: a txn that hangs.
        fail::fail_point!("etcd-txn", |m: Option<String>| {
            let why = "failpoint etcd-txn".to_owned();
            Err(match m.as_deref() {
                Some("indeterminate") => StoreError::Indeterminate(why),
                _ => StoreError::Unavailable(why),
            })
        });
        let etxn = ETxn::new()
            .when(txn.compares.iter().map(to_compare).collect::<Vec<_>>())
            .and_then(txn.success.iter().map(to_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(to_op).collect::<Vec<_>>());
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_DECODE_BYTES);
        let resp = match tokio::time::timeout(self.config.request_timeout, kv.txn(etxn)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(with_lease(map_error("txn", e, true), txn_lease(&txn))),
            Err(_) => {
                return Err(StoreError::Indeterminate(format!(
                    "txn: no answer within {:?}",
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
        // etcd-client's `keep_alive` already sends one keep-alive and fails on a TTL of 0 (an
        // unknown lease); a second one on the stream tells the refreshed TTL.
        let (mut keeper, mut stream) = self
            .bounded("lease keep-alive", lc.keep_alive(lease))
            .await
            .map_err(|e| with_lease(e, lease))?;
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
        self.bounded("lease revoke", lc.revoke(lease))
            .await
            .map(|_| ())
            .map_err(|e| with_lease(e, lease))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        match self.bounded("compact", kv.compact(revision.0, None)).await {
            Ok(_) => Ok(()),
            // etcd does not say its compaction revision; it is at least the one asked for.
            Err(StoreError::Compacted { .. }) => Err(StoreError::Compacted {
                requested: revision,
                compact_revision: revision,
            }),
            Err(e) => Err(e),
        }
    }
}

/// A prefix watch on one gRPC watch stream.
struct EtcdWatch {
    stream: WatchStream,
    request_timeout: Duration,
}

fn watch_event(ev: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = ev.kv()?;
    match ev.event_type() {
        EventType::Put => to_kv(kv).map(WatchEvent::Put),
        EventType::Delete => match kv.key_str() {
            Ok(key) => Some(WatchEvent::Delete {
                key: key.to_owned(),
                mod_revision: Revision(kv.mod_revision()),
            }),
            Err(_) => {
                tracing::warn!(key = ?kv.key(), "skipping a deletion of a key that is not UTF-8");
                None
            }
        },
    }
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
                // clientv3's IsProgressNotify: no events, not created, not canceled. A requested
                // one has watch id -1 (etcd 3.4), a periodic one the watch's own id.
                return Ok(WatchMessage::Progress { header_revision });
            }
            let events: Vec<WatchEvent> = resp.events().iter().filter_map(watch_event).collect();
            if events.is_empty() {
                continue; // only keys outside the (UTF-8) key space changed
            }
            return Ok(WatchMessage::Events {
                header_revision,
                events,
            });
        }
    }

    async fn request_progress(&mut self) -> Result<(), StoreError> {
        match tokio::time::timeout(self.request_timeout, self.stream.request_progress()).await {
            Ok(r) => r.map_err(|e| StoreError::WatchClosed(e.to_string())),
            Err(_) => Err(StoreError::WatchClosed(
                "progress request could not be queued in time".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tonic::Code;

    fn status(code: Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    fn connect_refused() -> etcd_client::Error {
        let mut s = tonic::Status::new(Code::Unavailable, "tcp connect error");
        s.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        etcd_client::Error::GRpcStatus(s)
    }

    #[test]
    fn errors_map_by_whether_a_write_may_have_landed() {
        // Sent (or maybe sent) and then lost: a write is indeterminate, a read unavailable.
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
        ] {
            let e = || {
                status(
                    code,
                    "h2 protocol error: error reading a body from connection",
                )
            };
            assert!(matches!(
                map_error("txn", e(), true),
                StoreError::Indeterminate(_)
            ));
            assert!(matches!(
                map_error("get", e(), false),
                StoreError::Unavailable(_)
            ));
        }
        // Never sent: even a write is merely unavailable.
        assert!(matches!(
            map_error("txn", connect_refused(), true),
            StoreError::Unavailable(_)
        ));
        let mut s = tonic::Status::new(Code::Unknown, "transport error");
        s.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(
            map_error("txn", etcd_client::Error::GRpcStatus(s), true),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_error(
                "txn",
                status(Code::ResourceExhausted, "etcdserver: too many requests"),
                true
            ),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn server_verdicts_map_to_their_errors() {
        let rejected = [
            (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (Code::InvalidArgument, "etcdserver: request is too large"),
            (
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                Code::ResourceExhausted,
                "grpc: received message larger than max (2097165 vs. 2097152)",
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
        ];
        for (code, msg) in rejected {
            assert!(
                matches!(
                    map_error("txn", status(code, msg), true),
                    StoreError::Rejected(_)
                ),
                "{msg}"
            );
        }
        assert!(matches!(
            map_error(
                "txn",
                status(Code::NotFound, "etcdserver: requested lease not found"),
                true
            ),
            StoreError::LeaseNotFound(0)
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
                "compact",
                status(
                    Code::OutOfRange,
                    "etcdserver: mvcc: required revision has been compacted"
                ),
                false
            ),
            StoreError::Compacted { .. }
        ));
        assert!(matches!(
            map_error(
                "connect",
                etcd_client::Error::InvalidArgs("empty endpoints".into()),
                false
            ),
            StoreError::Rejected(_)
        ));
    }

    #[test]
    fn lease_not_found_names_the_lease() {
        let txn = Txn {
            success: vec![
                TxnOp::Get { key: "/a".into() },
                TxnOp::Put {
                    key: "/a".into(),
                    value: vec![],
                    lease: 0x42,
                },
            ],
            ..Txn::default()
        };
        assert_eq!(txn_lease(&txn), 0x42);
        assert_eq!(txn_lease(&Txn::default()), 0);
        assert_eq!(
            with_lease(StoreError::LeaseNotFound(0), 7),
            StoreError::LeaseNotFound(7)
        );
        assert_eq!(
            with_lease(StoreError::Rejected("x".into()), 7),
            StoreError::Rejected("x".into())
        );
    }

    #[tokio::test]
    async fn a_malformed_endpoint_is_rejected_and_a_dead_one_unavailable() {
        let config = EtcdStoreConfig {
            dial_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            tls: None,
        };
        let err = EtcdStore::connect(&["http://[::1".to_string()], config.clone())
            .await
            .expect_err("malformed");
        assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
        // Port 1 on loopback refuses connections: the channel is lazy, the request fails fast.
        let store = EtcdStore::connect(&["http://127.0.0.1:1".to_string()], config)
            .await
            .expect("lazy connect");
        let err = store
            .txn(Txn {
                success: vec![TxnOp::Delete { key: "/x".into() }],
                ..Txn::default()
            })
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let err = store.get_prefix("/").await.expect_err("nothing listens");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
}
