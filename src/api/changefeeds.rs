//! `/api/v1/changefeeds...`: list, detail, create, update, and the owner's admin actions.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcdc_state::{CaptureId, ChangefeedId, TableId};
use serde::Deserialize;

use super::error::ApiError;
use super::forward::{on_owner, Forwardable};
use super::views::{changefeed_detail, changefeed_list, StateFilter};
use super::ApiContext;
use crate::meta::{ChangefeedUpdate, MetaError, NewChangefeed};
use crate::owner::feed_state::AdminJob;
use crate::owner::scheduler::ScheduleRequest;
use crate::owner::tick::OwnerRequest;

/// A path's `changefeed_id`, checked against the id rule.
fn changefeed_id(path: Result<Path<String>, PathRejection>) -> Result<ChangefeedId, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::invalid(format!("bad path: {e}")))?;
    if !rcdc_state::ids::is_valid_changefeed_id(&id) {
        return Err(MetaError::InvalidId(id).into());
    }
    Ok(ChangefeedId::from(id.as_str()))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// `GET /api/v1/changefeeds[?state=...]`.
pub async fn list(
    State(ctx): State<ApiContext>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let mut filter = StateFilter::Default;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "state" {
            filter = StateFilter::parse(&v).map_err(ApiError::invalid)?;
        }
    }
    let state = ctx.meta.load().await?;
    Ok(Json(changefeed_list(&state, &filter, ctx.tz)))
}

/// `GET /api/v1/changefeeds/{id}`.
pub async fn detail(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = changefeed_id(path)?;
    let state = ctx.meta.load().await?;
    changefeed_detail(&state, &id, ctx.tz)
        .map(Json)
        .ok_or_else(|| MetaError::NotFound(id).into())
}

/// The create body: TiCDC's `model.ChangefeedConfig`, plus rcdc's `upstream`. Fields TiCDC
/// has and rcdc does not use yet are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChangefeedConfig {
    changefeed_id: String,
    start_ts: u64,
    target_ts: u64,
    sink_uri: String,
    upstream: Option<String>,
    force_replicate: Option<bool>,
    ignore_ineligible_table: Option<bool>,
    filter_rules: Option<Vec<String>>,
}

/// `POST /api/v1/changefeeds`: 202 once the changefeed is stored.
pub async fn create(State(ctx): State<ApiContext>, bytes: Bytes) -> Result<Response, ApiError> {
    let req: ChangefeedConfig = body(&bytes)?;
    if req.sink_uri.is_empty() {
        return Err(ApiError::invalid("sink_uri is required"));
    }
    let id = if req.changefeed_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        req.changefeed_id
    };
    let mut config = rcdc_state::model::ReplicaConfig::default();
    if let Some(f) = req.force_replicate {
        config.force_replicate = f;
    }
    if let Some(rules) = req.filter_rules {
        config.filter.rules = Some(rules);
    }
    let _ = req.ignore_ineligible_table; // every demo table is eligible
    let new = NewChangefeed {
        id,
        sink_uri: req.sink_uri,
        start_ts: req.start_ts,
        target_ts: req.target_ts,
        upstream: req.upstream,
        config: Some(config),
    };
    ctx.meta
        .create_changefeed(new, ctx.clock.now_ms(), &*ctx.start_ts_guard)
        .await?;
    Ok(accepted())
}

/// The update body: the operator fields of TiCDC's `model.ChangefeedConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpdateConfig {
    target_ts: u64,
    sink_uri: String,
    filter_rules: Option<Vec<String>>,
}

/// `PUT /api/v1/changefeeds/{id}`: only a stopped changefeed; only operator fields.
pub async fn update(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let id = changefeed_id(path)?;
    let req: UpdateConfig = body(&bytes)?;
    let mut update = ChangefeedUpdate {
        sink_uri: (!req.sink_uri.is_empty()).then_some(req.sink_uri),
        target_ts: (req.target_ts != 0).then_some(req.target_ts),
        config: None,
    };
    if let Some(rules) = req.filter_rules {
        let state = ctx.meta.load().await?;
        let mut config = state
            .changefeed(&id)
            .and_then(|c| c.info.as_ref())
            .map(|i| i.config.clone())
            .ok_or_else(|| MetaError::NotFound(id.clone()))?;
        config.filter.rules = Some(rules);
        update.config = Some(config);
    }
    if update.sink_uri.is_none() && update.target_ts.is_none() && update.config.is_none() {
        return Err(ApiError::invalid(
            "nothing to update: give sink_uri, target_ts or filter_rules",
        ));
    }
    ctx.meta.update_changefeed(&id, update).await?;
    Ok(accepted())
}

/// Checks the changefeed exists (on any capture), then has the owner act.
async fn owner_request(
    ctx: &ApiContext,
    id: &ChangefeedId,
    fwd: Forwardable,
    request: OwnerRequest,
) -> Result<Response, ApiError> {
    let state = ctx.meta.load().await?;
    if state.changefeed(id).and_then(|c| c.info.as_ref()).is_none() {
        return Err(MetaError::NotFound(id.clone()).into());
    }
    on_owner(ctx, fwd, |owner| async move {
        owner.request(request).await?;
        Ok(accepted())
    })
    .await
}

macro_rules! admin_route {
    ($(#[$doc:meta])* $name:ident, $job:expr) => {
        $(#[$doc])*
        pub async fn $name(
            State(ctx): State<ApiContext>,
            path: Result<Path<String>, PathRejection>,
            method: Method,
            OriginalUri(uri): OriginalUri,
            headers: HeaderMap,
            bytes: Bytes,
        ) -> Result<Response, ApiError> {
            let id = changefeed_id(path)?;
            let fwd = Forwardable { method, uri, headers, body: bytes };
            owner_request(&ctx, &id, fwd, OwnerRequest::Admin(id.clone(), $job)).await
        }
    };
}

admin_route!(
    /// `POST /api/v1/changefeeds/{id}/pause`.
    pause,
    AdminJob::Pause
);
admin_route!(
    /// `POST /api/v1/changefeeds/{id}/resume`.
    resume,
    AdminJob::Resume
);
admin_route!(
    /// `DELETE /api/v1/changefeeds/{id}`.
    remove,
    AdminJob::Remove
);

/// The move-table body.
#[derive(Debug, Deserialize)]
pub struct MoveTableReq {
    capture_id: String,
    table_id: i64,
}

/// `POST /api/v1/changefeeds/{id}/tables/move_table`.
pub async fn move_table(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let id = changefeed_id(path)?;
    let req: MoveTableReq = body(&bytes)?;
    let target = CaptureId::new(req.capture_id);
    ApiError::require_capture(&ctx.meta.load().await?, &target)?;
    let fwd = Forwardable {
        method,
        uri,
        headers,
        body: bytes,
    };
    let request = OwnerRequest::Schedule(
        id.clone(),
        ScheduleRequest::MoveTable {
            table: TableId(req.table_id),
            target,
        },
    );
    owner_request(&ctx, &id, fwd, request).await
}

/// `POST /api/v1/changefeeds/{id}/tables/rebalance_table`.
pub async fn rebalance(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let id = changefeed_id(path)?;
    let fwd = Forwardable {
        method,
        uri,
        headers,
        body: bytes,
    };
    let request = OwnerRequest::Schedule(id.clone(), ScheduleRequest::Rebalance);
    owner_request(&ctx, &id, fwd, request).await
}
