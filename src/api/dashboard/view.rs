//! What `GET /dashboard/data` answers: the cluster as the page draws it. Pure functions of a
//! [`GlobalState`], the owner, the lag history and the time, so they are tested without a
//! server.

use std::collections::BTreeMap;

use rcdc_state::model::FeedState;
use rcdc_state::{CaptureId, ChangefeedId, ChangefeedState, GlobalState, Ts};
use serde::Serialize;

use super::history::Sample;
use crate::api::views::TimeZone;
use crate::sink::mask_uri;

/// How many table ids a capture's cell lists per changefeed; the rest is counted. A
/// changefeed of 10,000 tables would otherwise put every id into every poll.
pub const TABLE_IDS_SHOWN: usize = 32;

/// The whole page's data.
#[derive(Debug, Serialize)]
pub struct DashboardData {
    /// The answering capture's clock (Unix ms): the chart's right edge.
    pub now_ms: u64,
    /// `now_ms` rendered in `--tz`.
    pub now: String,
    /// The answering capture's id (empty before it registered).
    pub served_by: String,
    /// Live captures, sorted by id.
    pub captures: Vec<CaptureView>,
    /// Changefeeds not removed or finished, sorted by id.
    pub changefeeds: Vec<ChangefeedView>,
    /// Each changefeed's last error and every undecodable value.
    pub errors: Vec<ErrorView>,
    /// The lag history.
    pub lag: LagView,
}

/// One capture.
#[derive(Debug, Serialize)]
pub struct CaptureView {
    /// Capture id.
    pub id: String,
    /// Advertised `host:port`.
    pub address: String,
    /// Release version.
    pub version: String,
    /// Whether it is the owner.
    pub is_owner: bool,
    /// Whether it is shutting down (its tables move away).
    pub draining: bool,
    /// Tables it holds, over every changefeed shown.
    pub tables: usize,
    /// Its tables per changefeed (only changefeeds it holds tables of).
    pub changefeeds: Vec<CaptureTables>,
}

/// One capture's tables of one changefeed.
#[derive(Debug, Serialize)]
pub struct CaptureTables {
    /// The changefeed.
    pub changefeed: String,
    /// How many tables.
    pub count: usize,
    /// The first [`TABLE_IDS_SHOWN`] table ids, ascending.
    pub table_ids: Vec<i64>,
}

/// One changefeed.
#[derive(Debug, Serialize)]
pub struct ChangefeedView {
    /// Changefeed id.
    pub id: String,
    /// TiCDC's state name (`normal`, `error`, `failed`, `stopped`).
    pub state: &'static str,
    /// Checkpoint TSO, as a string: a TSO is above JavaScript's 2^53 exact integers, and a
    /// JSON number would be rounded by the page.
    pub checkpoint_tso: String,
    /// Checkpoint rendered in `--tz`.
    pub checkpoint_time: String,
    /// `now_ms` minus the checkpoint's physical time.
    pub lag_ms: u64,
    /// Tables held by live captures.
    pub tables: usize,
    /// Sink URI, password masked.
    pub sink_uri: String,
}

/// An error to show.
#[derive(Debug, Serialize)]
pub struct ErrorView {
    /// The changefeed.
    pub changefeed: String,
    /// The capture that saw it (`host:port`), if known.
    pub addr: String,
    /// TiCDC error code.
    pub code: String,
    /// The message.
    pub message: String,
    /// When it was recorded (Unix ms): the latest entry of the changefeed's error history,
    /// which the owner writes with the error (and clears with it). `None` for a corrupt
    /// value, or an error some other writer left without a history.
    pub time_ms: Option<i64>,
    /// `time_ms` rendered in `--tz`.
    pub time: Option<String>,
}

/// The lag chart's data.
#[derive(Debug, Serialize)]
pub struct LagView {
    /// The sampling period.
    pub period_ms: u64,
    /// The window the page keeps.
    pub window_ms: u64,
    /// Per changefeed, `[at_ms, lag_ms]` pairs, oldest first (only those newer than the
    /// request's `since`). Every sampled changefeed is a key, even with no new pairs.
    pub series: BTreeMap<String, Vec<[u64; 2]>>,
}

/// Whether the dashboard shows (and samples) a changefeed in this state: like `cdc cli
/// changefeed list`, removed and finished ones are gone.
pub fn shown(state: FeedState) -> bool {
    !matches!(state, FeedState::Removed | FeedState::Finished)
}

/// The checkpoint of every shown changefeed: what the lag sampler records.
pub fn checkpoints(state: &GlobalState) -> BTreeMap<ChangefeedId, Ts> {
    state
        .changefeeds()
        .iter()
        .filter_map(|(id, cf)| {
            let info = cf.info.as_ref().filter(|i| shown(i.state))?;
            Some((id.clone(), info.checkpoint_ts(cf.status.as_ref())))
        })
        .collect()
}

/// The page's data at `now_ms`, as the capture `served_by` sees it.
pub fn dashboard_data(
    state: &GlobalState,
    owner: Option<&CaptureId>,
    served_by: String,
    now_ms: u64,
    tz: TimeZone,
    lag: LagView,
) -> DashboardData {
    let shown_feeds: Vec<(&ChangefeedId, &ChangefeedState)> = state
        .changefeeds()
        .iter()
        .filter(|(_, cf)| cf.info.as_ref().is_some_and(|i| shown(i.state)))
        .collect();
    DashboardData {
        now_ms,
        now: tz.format(Ts::from_parts(now_ms, 0)),
        served_by,
        captures: captures(state, owner, &shown_feeds),
        changefeeds: changefeeds(state, &shown_feeds, now_ms, tz),
        errors: errors(state, tz),
        lag,
    }
}

/// The history's samples as the page's pairs.
pub fn lag_view(
    samples: BTreeMap<ChangefeedId, Vec<Sample>>,
    period_ms: u64,
    window_ms: u64,
) -> LagView {
    let series = samples
        .into_iter()
        .map(|(id, s)| {
            (
                id.to_string(),
                s.iter().map(|s| [s.at_ms, s.lag_ms]).collect(),
            )
        })
        .collect();
    LagView {
        period_ms,
        window_ms,
        series,
    }
}

fn captures(
    state: &GlobalState,
    owner: Option<&CaptureId>,
    feeds: &[(&ChangefeedId, &ChangefeedState)],
) -> Vec<CaptureView> {
    state
        .captures()
        .iter()
        .map(|(id, info)| {
            let held: Vec<CaptureTables> = feeds
                .iter()
                .filter_map(|(cf_id, cf)| {
                    let tables = cf.task_statuses.get(id)?.tables.as_ref()?;
                    (!tables.is_empty()).then(|| CaptureTables {
                        changefeed: cf_id.to_string(),
                        count: tables.len(),
                        table_ids: tables.keys().take(TABLE_IDS_SHOWN).map(|t| t.0).collect(),
                    })
                })
                .collect();
            CaptureView {
                id: id.to_string(),
                address: info.address.clone(),
                version: info.version.clone(),
                is_owner: owner == Some(id),
                draining: info.is_draining(),
                tables: held.iter().map(|h| h.count).sum(),
                changefeeds: held,
            }
        })
        .collect()
}

fn changefeeds(
    state: &GlobalState,
    feeds: &[(&ChangefeedId, &ChangefeedState)],
    now_ms: u64,
    tz: TimeZone,
) -> Vec<ChangefeedView> {
    feeds
        .iter()
        .filter_map(|(id, cf)| {
            let info = cf.info.as_ref()?;
            let checkpoint = info.checkpoint_ts(cf.status.as_ref());
            // Tables on a capture that is gone are about to be dispatched again; they are
            // not counted as held.
            let tables = cf
                .task_statuses
                .iter()
                .filter(|(capture, _)| state.captures().contains_key(*capture))
                .filter_map(|(_, ts)| ts.tables.as_ref())
                .map(|t| t.len())
                .sum();
            Some(ChangefeedView {
                id: id.to_string(),
                state: info.state.as_str(),
                checkpoint_tso: checkpoint.0.to_string(),
                checkpoint_time: tz.format(checkpoint),
                lag_ms: now_ms.saturating_sub(checkpoint.physical_ms()),
                tables,
                sink_uri: mask_uri(&info.sink_uri),
            })
        })
        .collect()
}

fn errors(state: &GlobalState, tz: TimeZone) -> Vec<ErrorView> {
    let mut out = Vec::new();
    for (id, cf) in state.changefeeds() {
        // A processor's error in its task position is folded into the info by the owner's
        // next tick, so the info's error is the one to show.
        let info = cf.info.as_ref().filter(|i| shown(i.state));
        if let Some((info, e)) = info.and_then(|i| i.error.as_ref().map(|e| (i, e))) {
            let time_ms = info.history.as_ref().and_then(|h| h.iter().max().copied());
            out.push(ErrorView {
                changefeed: id.to_string(),
                addr: e.addr.clone(),
                code: e.code.clone(),
                message: e.message.clone(),
                time_ms,
                time: time_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(|ms| tz.format(Ts::from_parts(ms, 0))),
            });
        }
        for bad in cf.corrupt.values() {
            out.push(ErrorView {
                changefeed: id.to_string(),
                addr: String::new(),
                code: "CDC:ErrDecodeFailed".into(),
                message: format!("corrupt value at {}: {}", bad.key, bad.error),
                time_ms: None,
                time: None,
            });
        }
    }
    out
}
