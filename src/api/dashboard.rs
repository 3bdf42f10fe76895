//! The live web dashboard every capture serves at `/dashboard` (issue #15): captures (owner
//! marked), changefeeds with state, checkpoint and a 15-minute lag chart, tables per capture,
//! errors with their time.
//!
//! The page is three embedded assets (`dashboard/index.html`, `app.js`, `style.css`; plain
//! JS, an inline SVG chart) that poll `GET /dashboard/data` every 2 s. Nothing is loaded
//! from another host, and the page's Content-Security-Policy says so to the browser too. The
//! data is read through [`crate::meta::Meta`] like the other read routes, so any capture
//! answers. The lag history is kept by a sampler task in each capture ([`history`]), so a
//! page opened anywhere shows the minutes before it was opened; each capture's history
//! starts when the capture started. The routes sit in the API router, so TLS and the
//! `cert-allowed-cn` check cover them like every other route. Outside `/api/v1` on purpose:
//! that namespace is TiCDC's spec.

mod history;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use rcdc_reactor::store::StoreError;
use rcdc_reactor::Clock;
use rcdc_state::{ChangefeedId, GlobalState, Ts};

use super::error::ApiError;
use super::ApiContext;
use crate::meta::Meta;
use history::LagHistory;

/// How often each changefeed's lag is sampled.
const SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// How much lag history is kept and drawn.
const WINDOW: Duration = Duration::from_secs(15 * 60);

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Only this origin: no script, style, image or connection anywhere else, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct Dashboard {
    ctx: ApiContext,
    history: Arc<Mutex<LagHistory>>,
}

/// The dashboard's routes, to merge into the API router, and its lag sampler. The sampler
/// lives as long as the routes: it stops once the server drops the router.
pub fn routes(ctx: &ApiContext) -> Router<ApiContext> {
    let history = Arc::new(Mutex::new(LagHistory::new(
        millis(WINDOW),
        millis(SAMPLE_PERIOD),
    )));
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(sample(
                Arc::downgrade(&history),
                ctx.meta.clone(),
                ctx.clock.clone(),
            ));
        }
        // Only a router built outside a runtime (no server) gets here; its page has no history.
        Err(_) => tracing::debug!("no runtime: the dashboard's lag sampler is not started"),
    }
    let state = Dashboard {
        ctx: ctx.clone(),
        history,
    };
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/style.css", get(style))
        .route("/dashboard/data", get(data))
        .with_state(state)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An embedded asset. `no-cache`: the browser revalidates, so an upgraded capture's page is
/// never mixed with an old script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `GET /dashboard/data[?since=<ms>]`: the cluster now, and the lag samples taken after
/// `since` (the page asks for the whole history once, then only for what is new).
async fn data(
    State(dash): State<Dashboard>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let since = since_param(query.as_deref())?;
    let ctx = &dash.ctx;
    let state = ctx.meta.load().await?;
    let owner = ctx.meta.owner().await?;
    let served_by = ctx
        .status
        .borrow()
        .id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let lag = {
        let history = dash.history.lock();
        view::lag_view(
            history.since(since),
            millis(SAMPLE_PERIOD),
            history.window_ms(),
        )
    };
    let now_ms = ctx.clock.now_ms();
    let body = view::dashboard_data(&state, owner.as_ref(), served_by, now_ms, ctx.tz, lag);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// The `since` query parameter: Unix ms, absent for the whole history.
fn since_param(query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let mut since = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "since" {
            let ms = v.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("invalid since {v:?}: use Unix milliseconds"))
            })?;
            since = Some(ms);
        }
    }
    Ok(since)
}

/// Samples every shown changefeed's lag each [`SAMPLE_PERIOD`] until the routes are dropped.
/// A failed read is logged once per outage and leaves a gap in the chart.
async fn sample(history: Weak<Mutex<LagHistory>>, meta: Meta, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let read = checkpoints(&meta).await;
        let Some(history) = history.upgrade() else {
            return;
        };
        match read {
            Ok(checkpoints) => {
                history.lock().record(clock.now_ms(), &checkpoints);
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "dashboard: cannot read the checkpoints for the lag chart; retrying every 2 s");
                }
                failing = true;
            }
        }
    }
}

/// The checkpoint of every shown changefeed. Only the info and status keys are read (one
/// each per changefeed): the task keys, which grow with the tables, say nothing about lag.
async fn checkpoints(meta: &Meta) -> Result<BTreeMap<ChangefeedId, Ts>, StoreError> {
    let layout = meta.layout();
    let mut state = GlobalState::new(layout.clone());
    for prefix in [layout.changefeed_info_prefix(), layout.status_prefix()] {
        let (kvs, _) = meta.store().get_prefix(&prefix).await?;
        for kv in &kvs {
            state.apply(&kv.key, Some(&kv.value));
        }
    }
    Ok(view::checkpoints(&state))
}

#[cfg(test)]
mod tests;
