//! JSON views of the cluster state for the API and the CLI, shaped like TiCDC's answers
//! (OpenAPI v1 `model.*` types, plus the v5 keys where the v5 routes answered on the same
//! path). Pure functions of a [`GlobalState`], so they are tested without a server.

use rcdc_state::model::{FeedState, RunningError};
use rcdc_state::{CaptureId, ChangefeedId, ChangefeedState, GlobalState, Ts};
use serde_json::{json, Map, Value};

use crate::sink::mask_uri;

/// How timestamps are shown (`--tz`).
#[derive(Clone, Copy, Debug, Default)]
pub enum TimeZone {
    /// The system's local zone.
    #[default]
    Local,
    /// A named zone.
    Named(chrono_tz::Tz),
}

impl TimeZone {
    /// TiCDC's `2006-01-02 15:04:05.000` rendering of a TSO's physical time.
    pub fn format(&self, ts: Ts) -> String {
        let ms = i64::try_from(ts.physical_ms()).unwrap_or(i64::MAX);
        let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        const FMT: &str = "%Y-%m-%d %H:%M:%S%.3f";
        match self {
            TimeZone::Local => utc.with_timezone(&chrono::Local).format(FMT).to_string(),
            TimeZone::Named(tz) => utc.with_timezone(tz).format(FMT).to_string(),
        }
    }
}

/// The `state` filter of `GET /api/v1/changefeeds` and `cdc cli changefeed list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Every changefeed (`all`).
    All,
    /// The default: everything but removed and finished.
    Default,
    /// Exactly this state.
    Exactly(FeedState),
}

impl StateFilter {
    /// Parses the query value; an unknown state is an error naming it.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(StateFilter::All),
            "" => Ok(StateFilter::Default),
            other => serde_json::from_value::<FeedState>(Value::String(other.to_owned()))
                .map(StateFilter::Exactly)
                .map_err(|_| {
                    format!("invalid state {other:?}: use all, normal, error, failed, stopped, finished or removed")
                }),
        }
    }

    fn admits(&self, state: FeedState) -> bool {
        match self {
            StateFilter::All => true,
            // TiCDC v5 listed normal, stopped and failed by default; a changefeed in error
            // (retrying) is shown too, since that is the one an operator looks for.
            StateFilter::Default => !matches!(state, FeedState::Removed | FeedState::Finished),
            StateFilter::Exactly(s) => *s == state,
        }
    }
}

fn checkpoint(cf: &ChangefeedState) -> Ts {
    match &cf.info {
        Some(i) => i.checkpoint_ts(cf.status.as_ref()),
        // A removed changefeed's record keeps its last checkpoint.
        None => cf
            .status
            .as_ref()
            .map(|s| s.checkpoint_ts)
            .unwrap_or_default(),
    }
}

fn error_value(e: &Option<RunningError>) -> Option<Value> {
    e.as_ref().and_then(|e| serde_json::to_value(e).ok())
}

/// `model.ChangefeedCommonInfo` for each listed changefeed (sorted by id). Changefeeds with
/// a corrupt or missing info are listed with state `""` only under `all`, never a panic
/// (facts §8.28).
pub fn changefeed_list(state: &GlobalState, filter: &StateFilter, tz: TimeZone) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, cf) in state.changefeeds() {
        let feed_state = match (&cf.info, &cf.status) {
            (Some(info), _) => info.state,
            // A removed changefeed's record: its job key, with its last checkpoint.
            (None, Some(_)) if cf.is_removed() => FeedState::Removed,
            (None, _) => {
                if *filter == StateFilter::All {
                    out.push(json!({ "namespace": "default", "id": id, "state": "" }));
                }
                continue;
            }
        };
        if !filter.admits(feed_state) {
            continue;
        }
        let ck = checkpoint(cf);
        let mut v = Map::new();
        v.insert("upstream_id".into(), json!(0));
        v.insert("namespace".into(), json!("default"));
        v.insert("id".into(), json!(id));
        v.insert("state".into(), json!(feed_state.as_str()));
        v.insert("checkpoint_tso".into(), json!(ck.0));
        v.insert("checkpoint_time".into(), json!(tz.format(ck)));
        if let Some(e) = cf.info.as_ref().and_then(|i| error_value(&i.error)) {
            v.insert("error".into(), e);
        }
        out.push(Value::Object(v));
    }
    out
}

/// `model.ChangefeedDetail`; `None` if the changefeed has no info.
pub fn changefeed_detail(state: &GlobalState, id: &ChangefeedId, tz: TimeZone) -> Option<Value> {
    let cf = state.changefeed(id)?;
    let info = cf.info.as_ref()?;
    let ck = checkpoint(cf);
    let resolved = cf.status.as_ref().map_or(ck, |s| s.resolved_ts);
    let tasks: Vec<Value> = cf
        .task_statuses
        .iter()
        .map(|(capture, ts)| {
            let tables: Vec<i64> = ts.tables.iter().flatten().map(|(t, _)| t.0).collect();
            let ops: Map<String, Value> = ts
                .operation
                .iter()
                .flatten()
                .map(|(t, op)| {
                    (
                        t.0.to_string(),
                        json!({
                            "delete": op.delete,
                            "flag": op.flag,
                            "boundary_ts": op.boundary_ts.0,
                            "status": op.status.code(),
                        }),
                    )
                })
                .collect();
            json!({ "capture_id": capture, "table_ids": tables, "table_operations": ops })
        })
        .collect();
    let mut v = Map::new();
    v.insert("upstream_id".into(), json!(0));
    v.insert("namespace".into(), json!("default"));
    v.insert("id".into(), json!(id));
    v.insert("sink_uri".into(), json!(mask_uri(&info.sink_uri)));
    v.insert("create_time".into(), json!(info.create_time));
    v.insert("start_ts".into(), json!(info.start_ts().0));
    v.insert("target_ts".into(), json!(info.target_ts.0));
    v.insert("checkpoint_tso".into(), json!(ck.0));
    v.insert("checkpoint_time".into(), json!(tz.format(ck)));
    v.insert("resolved_ts".into(), json!(resolved.0));
    v.insert("sort_engine".into(), json!(info.sort_engine));
    v.insert("state".into(), json!(info.state.as_str()));
    if let Some(e) = error_value(&info.error) {
        v.insert("error".into(), e);
    }
    v.insert(
        "error_history".into(),
        json!(info.history.clone().unwrap_or_default()),
    );
    v.insert("creator_version".into(), json!(info.creator_version));
    v.insert("task_status".into(), Value::Array(tasks));
    Some(Value::Object(v))
}

/// `[model.Capture]`, sorted by id.
pub fn capture_list(state: &GlobalState, owner: Option<&CaptureId>) -> Vec<Value> {
    state
        .captures()
        .iter()
        .map(|(id, c)| {
            json!({
                "id": id,
                "is_owner": owner == Some(id),
                "address": c.address,
                "cluster_id": "default",
            })
        })
        .collect()
}

/// `[model.ProcessorCommonInfo]`: every (changefeed, capture) with a task status or position.
pub fn processor_list(state: &GlobalState) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, cf) in state.changefeeds() {
        let captures: std::collections::BTreeSet<&CaptureId> = cf
            .task_statuses
            .keys()
            .chain(cf.task_positions.keys())
            .collect();
        for c in captures {
            out.push(json!({ "namespace": "default", "changefeed_id": id, "capture_id": c }));
        }
    }
    out
}

/// `model.ProcessorDetail` plus the position; `None` if that capture has no task for it.
pub fn processor_detail(
    state: &GlobalState,
    id: &ChangefeedId,
    capture: &CaptureId,
) -> Option<Value> {
    let cf = state.changefeed(id)?;
    let status = cf.task_statuses.get(capture);
    let position = cf.task_positions.get(capture);
    if status.is_none() && position.is_none() {
        return None;
    }
    let tables: Vec<i64> = status
        .and_then(|s| s.tables.as_ref())
        .into_iter()
        .flatten()
        .map(|(t, _)| t.0)
        .collect();
    let mut v = Map::new();
    v.insert("table_ids".into(), json!(tables));
    if let Some(p) = position {
        v.insert("checkpoint_ts".into(), json!(p.checkpoint_ts.0));
        v.insert("resolved_ts".into(), json!(p.resolved_ts.0));
        v.insert("count".into(), json!(p.count));
        if let Some(e) = error_value(&p.error) {
            v.insert("error".into(), e);
        }
    }
    Some(Value::Object(v))
}

#[cfg(test)]
mod tests;
