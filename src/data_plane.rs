//! The data plane behind the runtimes' seams: one [`Upstream`] per upstream URI (shared, so
//! service safe points persist across calls), serving the owner ([`OwnerUpstream`]) and the
//! table pipelines ([`PipelineFactory`], with sinks opened from the changefeed's sink URI).
//!
//! A changefeed's upstream is the additive `upstream-uri` field of its info when set
//! (target-design §2), else the cluster default (`cdc server --upstream`, default `demo://`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use parking_lot::Mutex;
use rcdc_reactor::Clock;
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, TableId, Ts};

use crate::event::TableEvent;
use crate::meta::{GuardError, StartTsGuard};
use crate::owner::gc::{upstream_of, UpdateSafePoint};
use crate::owner::runtime::OwnerUpstream;
use crate::pipeline::table::{PullError, TableSource};
use crate::processor::runtime::PipelineFactory;
use crate::sink::{
    open_checkpoint_writer, open_table_sink, parse_sink_uri, CheckpointWriter, SinkSpec,
    TableIdent, TableSink,
};
use crate::upstream::{parse_upstream_uri, Upstream, UpstreamError};

pub use crate::owner::gc::UPSTREAM_URI_FIELD;

/// Upstreams by URI, sinks by changefeed info, time from an injected clock.
pub struct DataPlane {
    default_upstream: String,
    clock: Arc<dyn Clock>,
    upstreams: Mutex<BTreeMap<String, Arc<dyn Upstream>>>,
    /// The owner's checkpoint writer per changefeed, kept open between flushes.
    checkpoints: Mutex<BTreeMap<ChangefeedId, OpenCheckpoint>>,
}

/// A changefeed's open checkpoint writer and what it was opened for.
struct OpenCheckpoint {
    sink_uri: String,
    start_ts: Ts,
    writer: Box<dyn CheckpointWriter>,
    /// The value it last wrote durably.
    last: Ts,
}

impl OpenCheckpoint {
    /// Opens the writer of `info`'s sink and writes `checkpoint` through it.
    fn open(
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        checkpoint: Ts,
    ) -> Result<Self, String> {
        let spec = parse_sink_uri(&info.sink_uri).map_err(|e| e.to_string())?;
        let mut writer = open_checkpoint_writer(&spec, changefeed).map_err(|e| e.to_string())?;
        writer.set_start_ts(info.start_ts());
        writer
            .write_checkpoint(checkpoint)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            sink_uri: info.sink_uri.clone(),
            start_ts: info.start_ts(),
            writer,
            last: checkpoint,
        })
    }

    fn is_for(&self, info: &ChangeFeedInfo) -> bool {
        self.sink_uri == info.sink_uri && self.start_ts == info.start_ts()
    }
}

impl DataPlane {
    /// A data plane whose changefeeds default to `default_upstream`.
    pub fn new(default_upstream: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            default_upstream: default_upstream.into(),
            clock,
            upstreams: Mutex::new(BTreeMap::new()),
            checkpoints: Mutex::new(BTreeMap::new()),
        }
    }

    /// Serves `uri` with `upstream`, made by the caller (a PD-backed upstream needs a
    /// connected client, so it cannot be parsed from its URI on first use).
    pub fn register(&self, uri: &str, upstream: Arc<dyn Upstream>) {
        self.upstreams.lock().insert(uri.to_owned(), upstream);
    }

    /// The upstream URI of changefeeds whose info names none.
    pub fn default_upstream(&self) -> &str {
        &self.default_upstream
    }

    /// The upstream URI of a changefeed.
    pub fn upstream_uri<'a>(&'a self, info: &'a ChangeFeedInfo) -> &'a str {
        upstream_of(info, &self.default_upstream)
    }

    /// The shared upstream for `uri`, parsed once.
    pub fn upstream(&self, uri: &str) -> Result<Arc<dyn Upstream>, String> {
        let mut map = self.upstreams.lock();
        if let Some(u) = map.get(uri) {
            return Ok(u.clone());
        }
        let u: Arc<dyn Upstream> = Arc::from(parse_upstream_uri(uri).map_err(|e| e.to_string())?);
        map.insert(uri.to_owned(), u.clone());
        Ok(u)
    }

    fn for_changefeed(&self, info: &ChangeFeedInfo) -> Result<Arc<dyn Upstream>, String> {
        self.upstream(self.upstream_uri(info))
    }
}

#[async_trait::async_trait]
impl StartTsGuard for DataPlane {
    async fn current_ts(&self, upstream: Option<&str>) -> Result<Ts, GuardError> {
        let uri = upstream.unwrap_or(&self.default_upstream);
        let source = self.upstream(uri).map_err(|error| GuardError {
            upstream: crate::owner::gc::describe_upstream(uri),
            error,
        })?;
        let now_ms = self.clock.now_ms();
        let failed = |error: String| GuardError {
            upstream: crate::owner::gc::describe_upstream(uri),
            error,
        };
        // A fresh TSO may wait on PD: never on the API's threads.
        tokio::task::spawn_blocking(move || source.fresh_now(now_ms))
            .await
            .map_err(|e| failed(format!("the call panicked: {e}")))?
            .map_err(|e| failed(e.to_string()))
    }

    async fn protect(
        &self,
        upstream: Option<&str>,
        service: &str,
        ttl_secs: u64,
        start: Ts,
    ) -> Result<Ts, GuardError> {
        let uri = upstream.unwrap_or(&self.default_upstream).to_owned();
        let failed = |error: String| GuardError {
            upstream: crate::owner::gc::describe_upstream(&uri),
            error,
        };
        let source = self.upstream(&uri).map_err(failed)?;
        let (service, now_ms) = (service.to_owned(), self.clock.now_ms());
        // An upstream call may block on the network (PD); never on the API's threads.
        tokio::task::spawn_blocking(move || {
            source.update_service_safe_point(&service, ttl_secs, start, now_ms)
        })
        .await
        .map_err(|e| failed(format!("the call panicked: {e}")))?
        .map_err(|e| failed(e.to_string()))
    }
}

impl OwnerUpstream for DataPlane {
    fn list_tables(
        &self,
        _: &ChangefeedId,
        info: &ChangeFeedInfo,
        at: Ts,
    ) -> Result<BTreeSet<TableId>, String> {
        self.for_changefeed(info)?
            .tables_at(at)
            .map_err(|e| e.to_string())
    }

    fn next_ddl(
        &self,
        _: &ChangefeedId,
        info: &ChangeFeedInfo,
        after: Ts,
    ) -> Result<(Option<Ts>, Ts), String> {
        let upstream = self.for_changefeed(info)?;
        let upto = upstream.now(self.clock.now_ms());
        let next = upstream
            .ddl_events(after, upto)
            .first()
            .map(|d| d.commit_ts);
        Ok((next, upto))
    }

    fn update_gc_safe_point(&self, update: &UpdateSafePoint) -> Result<Ts, String> {
        // Only the upstream the push names: another upstream's GC says nothing about the
        // data of this one's changefeeds (issue #11). Opened here if no pipeline has yet, so
        // the owner protects an upstream before any table of it runs in this capture.
        let uri = match update.upstream.as_str() {
            "" => &self.default_upstream,
            uri => uri,
        };
        self.upstream(uri)?
            .update_service_safe_point(
                &update.service_id,
                update.ttl_secs,
                update.safe_point,
                self.clock.now_ms(),
            )
            .map_err(|e| e.to_string())
    }

    fn write_sink_checkpoint(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        checkpoint: Ts,
    ) -> Result<(), String> {
        // One writer per changefeed: opening one creates and fsyncs directories, which every
        // flush of every changefeed would otherwise repeat. The lock is held across the write;
        // only the owner's effect executor calls this, one effect at a time.
        let mut open = self.checkpoints.lock();
        // A writer opened for another sink URI or start ts (the changefeed was updated) is
        // dropped, and so is one that failed: a fresh writer gets one more try, so a sink
        // repaired behind our back (its directory re-created) is no error.
        if let Some(mut kept) = open.remove(changefeed).filter(|k| k.is_for(info)) {
            if checkpoint <= kept.last {
                // Durable already (no IO), or older than what this sink holds: a late effect
                // must never move a sink's checkpoint back.
                open.insert(changefeed.clone(), kept);
                return Ok(());
            }
            match kept.writer.write_checkpoint(checkpoint) {
                Ok(()) => {
                    kept.last = checkpoint;
                    open.insert(changefeed.clone(), kept);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(%changefeed, error = %e, "sink checkpoint writer failed; reopening it")
                }
            }
        }
        let fresh = OpenCheckpoint::open(changefeed, info, checkpoint)?;
        open.insert(changefeed.clone(), fresh);
        Ok(())
    }
}

impl PipelineFactory for DataPlane {
    fn source(
        &self,
        _: &ChangefeedId,
        info: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSource>, String> {
        Ok(Box::new(UpstreamSource {
            upstream: self.for_changefeed(info)?,
            table,
            clock: self.clock.clone(),
        }))
    }

    fn sink(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSink>, String> {
        let mut spec = parse_sink_uri(&info.sink_uri).map_err(|e| e.to_string())?;
        if let SinkSpec::File(cfg) = &mut spec {
            // A replica setting, not a URI parameter: the encoder learns it here, as
            // TiCDC's encoder config is built from the changefeed's config.
            cfg.enable_old_value = info.config.enable_old_value;
        }
        let upstream = self.for_changefeed(info)?;
        let name = upstream
            .table_name(table)
            .ok_or_else(|| format!("table {table} is unknown to the upstream"))?;
        let schema = upstream
            .table_schema(table)
            .ok_or_else(|| format!("the upstream has no definition of table {table}"))?;
        let ident = TableIdent {
            schema: name.schema,
            table: name.table,
            table_id: table,
        };
        open_table_sink(&spec, changefeed, &ident, &schema).map_err(|e| e.to_string())
    }
}

/// A table's changes from its upstream, for the table pipeline.
struct UpstreamSource {
    upstream: Arc<dyn Upstream>,
    table: TableId,
    clock: Arc<dyn Clock>,
}

impl TableSource for UpstreamSource {
    fn now(&self) -> Ts {
        self.upstream.now(self.clock.now_ms())
    }

    fn fetch(
        &mut self,
        after: Ts,
        upto: Ts,
        emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
    ) -> Result<(), PullError> {
        let source = |e: UpstreamError| PullError::Source(e.to_string());
        // A pipeline far behind pulls old slices; it must learn that they are gone now.
        self.upstream
            .check_snapshot(self.table, after, self.now())
            .map_err(source)?;
        let mut failed = None;
        self.upstream
            .visit_table_events(self.table, after, upto, &mut |event| match emit(event) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            })
            .map_err(source)?;
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sink_checkpoint_tests;
