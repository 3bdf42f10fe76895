//! The TiDB cluster behind `cdc server --pd` as an upstream (target-design §8, facts §5): PD
//! is its clock (TSO) and its GC authority (service GC safe points); the rows come from a
//! data source.
//!
//! The data source is the TiKV change feed — not built yet, so a changefeed on a bare
//! `pd://` upstream fails with a message saying so — or, for demo runs against a real PD or
//! the stand-in, the `demo://` workload given by `cdc server --upstream`. Either way, time
//! and GC are PD's: the owner's service safe point lives in PD, and a changefeed whose
//! checkpoint PD's GC passed fails with `ErrSnapshotLostByGC`.
//!
//! The [`Upstream`] seam is synchronous. The current TSO is kept by a background task (a
//! fresh one every [`TSO_REFRESH`], like TiDB's low-resolution oracle), so [`Upstream::now`]
//! never waits on the network; GC calls block their caller (the owner's effects and the
//! API run them on blocking threads) until PD answers or the call's deadline passes.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcdc_pd::PdClient;
use rcdc_state::{TableId, Ts};
use tokio::runtime::Handle;

use super::{DdlEvent, TableName, Upstream, UpstreamError};
use crate::event::TableEvent;

/// How often the cached TSO is refreshed: the most `now` lags PD.
pub const TSO_REFRESH: Duration = Duration::from_millis(100);

/// How long a blocking caller waits past the PD client's own per-call deadline
/// (`PdOptions::request_timeout`) before giving up on an answer that never came.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// The URI of the TiDB cluster behind `endpoints`: `pd://host:port[,host:port...]`.
pub fn pd_uri(endpoints: &[String]) -> String {
    let hosts: Vec<&str> = endpoints
        .iter()
        .map(|e| {
            e.trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
        })
        .collect();
    format!("pd://{}", hosts.join(","))
}

/// An upstream whose time and GC are PD's.
pub struct PdUpstream {
    uri: String,
    pd: PdClient,
    runtime: Handle,
    /// The latest TSO fetched; only grows.
    tso: Arc<AtomicU64>,
    /// The rows: `None` is the TiKV change feed (not built yet).
    data: Option<Box<dyn Upstream>>,
    refresher: tokio::task::JoinHandle<()>,
    /// The PD client's per-call deadline.
    call_timeout: Duration,
}

impl std::fmt::Debug for PdUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdUpstream")
            .field("uri", &self.uri)
            .field("leader", &self.pd.leader_url())
            .field("data", &self.data)
            .finish()
    }
}

impl Drop for PdUpstream {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl PdUpstream {
    /// An upstream on `pd` whose current ts starts at `first` (a TSO the caller fetched),
    /// with rows from `data` (`None`: the TiKV change feed). The TSO is kept fresh on
    /// `runtime` from then on.
    pub fn new(
        uri: String,
        pd: PdClient,
        first: u64,
        data: Option<Box<dyn Upstream>>,
        runtime: Handle,
    ) -> Self {
        let tso = Arc::new(AtomicU64::new(first));
        let refresher = runtime.spawn(refresh_tso(pd.clone(), tso.clone()));
        Self {
            uri,
            pd,
            runtime,
            tso,
            data,
            refresher,
            call_timeout: rcdc_pd::PdOptions::default().request_timeout,
        }
    }

    /// [`PdUpstream::new`] with a first TSO fetched here.
    pub async fn start(
        uri: String,
        pd: PdClient,
        data: Option<Box<dyn Upstream>>,
        runtime: Handle,
    ) -> Result<Self, UpstreamError> {
        let first = pd.get_ts().await.map_err(|e| UpstreamError::Unavailable {
            upstream: uri.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(uri, pd, first, data, runtime))
    }

    /// Runs a PD call from a thread that may block, bounded by the client's per-call deadline.
    fn block<T, F>(&self, what: &str, call: F) -> Result<T, UpstreamError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, rcdc_pd::PdError>> + Send + 'static,
    {
        let unavailable = |reason: String| UpstreamError::Unavailable {
            upstream: self.uri.clone(),
            reason: format!("{what}: {reason}"),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(call.await);
        });
        let wait = self.call_timeout + ANSWER_MARGIN;
        match rx.recv_timeout(wait) {
            Ok(answer) => answer.map_err(|e| unavailable(e.to_string())),
            Err(_) => Err(unavailable(format!("no answer within {wait:?}"))),
        }
    }

    fn data(&self) -> Result<&dyn Upstream, UpstreamError> {
        self.data
            .as_deref()
            .ok_or_else(|| UpstreamError::NotSupported {
                upstream: self.uri.clone(),
                what: "reading tables from TiKV (the TiKV change feed is not built yet; start \
                       cdc server with --upstream demo://... to replicate the demo workload on \
                       this PD's time and GC)"
                    .to_owned(),
            })
    }
}

/// Keeps `tso` at PD's latest timestamp. A failure leaves it where it was, so the resolved
/// ts of every table stalls — as TiKV's does when PD cannot give it a TSO.
async fn refresh_tso(pd: PdClient, tso: Arc<AtomicU64>) {
    let mut failing = false;
    loop {
        match pd.get_ts().await {
            Ok(ts) => {
                tso.fetch_max(ts, Ordering::Relaxed);
                if failing {
                    tracing::info!("PD gives timestamps again");
                    failing = false;
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "PD gives no timestamp; resolved ts stalls until it does");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(TSO_REFRESH).await;
    }
}

impl Upstream for PdUpstream {
    fn now(&self, _now_ms: u64) -> Ts {
        Ts(self.tso.load(Ordering::Relaxed))
    }

    fn fresh_now(&self, _now_ms: u64) -> Result<Ts, UpstreamError> {
        let pd = self.pd.clone();
        let ts = self.block("Tso", async move { pd.get_ts().await })?;
        self.tso.fetch_max(ts, Ordering::Relaxed);
        Ok(Ts(ts))
    }

    fn tables_at(&self, ts: Ts) -> Result<BTreeSet<TableId>, UpstreamError> {
        self.data()?.tables_at(ts)
    }

    fn table_name(&self, table: TableId) -> Option<TableName> {
        self.data.as_deref()?.table_name(table)
    }

    fn table_schema(&self, table: TableId) -> Option<crate::event::TableSchema> {
        self.data.as_deref()?.table_schema(table)
    }

    fn ddl_events(&self, after: Ts, upto: Ts) -> Vec<DdlEvent> {
        self.data
            .as_deref()
            .map_or_else(Vec::new, |d| d.ddl_events(after, upto))
    }

    fn table_events(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
    ) -> Result<Vec<TableEvent>, UpstreamError> {
        self.data()?.table_events(table, after, upto)
    }

    fn check_snapshot(&self, table: TableId, after: Ts, now: Ts) -> Result<(), UpstreamError> {
        self.data()?.check_snapshot(table, after, now)
    }

    fn gc_safe_point(&self, _now_ms: u64) -> Ts {
        let pd = self.pd.clone();
        self.block(
            "GetGCSafePoint",
            async move { pd.get_gc_safe_point().await },
        )
        .map(Ts)
        .unwrap_or(Ts(0))
    }

    fn as_demo(&self) -> Option<&super::DemoUpstream> {
        self.data.as_deref()?.as_demo()
    }

    /// PD's `UpdateServiceGCSafePoint`: TTL 0 removes the service; a safe point below PD's
    /// minimum is silently not stored; the answer is PD's minimum service safe point.
    fn update_service_safe_point(
        &self,
        service: &str,
        ttl_secs: u64,
        safe_point: Ts,
        _now_ms: u64,
    ) -> Result<Ts, UpstreamError> {
        let (pd, service) = (self.pd.clone(), service.to_owned());
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        self.block("UpdateServiceGCSafePoint", async move {
            pd.update_service_gc_safe_point(&service, ttl, safe_point.0)
                .await
        })
        .map(Ts)
    }
}
