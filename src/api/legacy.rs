//! TiCDC v5's form-encoded owner routes and `/admin/log` (facts §7.1), for scripts written
//! against v5. Unlike v5, a non-owner forwards to the owner, and a bad `admin-job` is a 400
//! rather than a crash (facts §8.11).

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcdc_state::{CaptureId, ChangefeedId, TableId};
use serde_json::{json, Value};

use super::error::ApiError;
use super::forward::{on_owner, Forwardable};
use super::ApiContext;
use crate::meta::MetaError;
use crate::owner::feed_state::AdminJob;
use crate::owner::scheduler::ScheduleRequest;
use crate::owner::tick::OwnerRequest;

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::invalid(format!("missing form field {name}")))
}

fn changefeed(form: &[(String, String)]) -> Result<ChangefeedId, ApiError> {
    let id = field(form, "cf-id")?;
    if !rcdc_state::ids::is_valid_changefeed_id(id) {
        return Err(MetaError::InvalidId(id.to_owned()).into());
    }
    Ok(ChangefeedId::from(id))
}

fn common_ok() -> Response {
    Json(json!({ "status": true, "message": "" })).into_response()
}

async fn legacy_owner(
    ctx: &ApiContext,
    fwd: Forwardable,
    request: Option<OwnerRequest>,
) -> Result<Response, ApiError> {
    on_owner(ctx, fwd, |owner| async move {
        match request {
            Some(r) => owner.request(r).await?,
            None => {
                owner.resign();
            }
        }
        Ok(common_ok())
    })
    .await
}

macro_rules! fwd {
    ($method:ident, $uri:ident, $headers:ident, $body:ident) => {
        Forwardable {
            method: $method,
            uri: $uri,
            headers: $headers,
            body: $body,
        }
    };
}

/// `POST /capture/owner/resign`.
pub async fn resign(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    legacy_owner(&ctx, fwd!(method, uri, headers, body), None).await
}

/// `POST /capture/owner/admin` with `admin-job` (1 pause, 2 resume, 3 remove) and `cf-id`.
pub async fn admin(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = form(&body);
    let job = match field(&f, "admin-job")?.parse::<i64>() {
        Ok(1) => AdminJob::Pause,
        Ok(2) => AdminJob::Resume,
        Ok(3) => AdminJob::Remove,
        _ => {
            return Err(ApiError::invalid(format!(
                "invalid admin-job {:?}: use 1 (pause), 2 (resume) or 3 (remove)",
                field(&f, "admin-job")?
            )))
        }
    };
    if let Ok(force) = field(&f, "force-remove") {
        force
            .parse::<bool>()
            .map_err(|_| ApiError::invalid(format!("invalid force-remove {force:?}")))?;
    }
    let id = changefeed(&f)?;
    let request = OwnerRequest::Admin(id, job);
    legacy_owner(&ctx, fwd!(method, uri, headers, body), Some(request)).await
}

/// `POST /capture/owner/rebalance_trigger` with `cf-id`.
pub async fn rebalance(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = changefeed(&form(&body))?;
    let request = OwnerRequest::Schedule(id, ScheduleRequest::Rebalance);
    legacy_owner(&ctx, fwd!(method, uri, headers, body), Some(request)).await
}

/// `POST /capture/owner/move_table` with `cf-id`, `target-cp-id`, `table-id`.
pub async fn move_table(
    State(ctx): State<ApiContext>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = form(&body);
    let id = changefeed(&f)?;
    let target = CaptureId::new(field(&f, "target-cp-id")?.to_owned());
    let table = field(&f, "table-id")?;
    let table = table
        .parse::<i64>()
        .map_err(|_| ApiError::invalid(format!("invalid table-id {table:?}")))?;
    let request = OwnerRequest::Schedule(
        id,
        ScheduleRequest::MoveTable {
            table: TableId(table),
            target,
        },
    );
    legacy_owner(&ctx, fwd!(method, uri, headers, body), Some(request)).await
}

/// `POST /capture/owner/changefeed/query` with `cf-id`: answered by any capture from etcd,
/// `{"state","tso","checkpoint","error"}` indented with one space.
pub async fn query(State(ctx): State<ApiContext>, body: Bytes) -> Result<Response, ApiError> {
    let id = changefeed(&form(&body))?;
    let state = ctx.meta.load().await?;
    let v = simple_status(&state, &id, ctx.tz).ok_or(MetaError::NotFound(id))?;
    Ok(indented(&v))
}

/// TiCDC's "simple" changefeed status (`changefeed query -s`, the owner query route).
pub fn simple_status(
    state: &rcdc_state::GlobalState,
    id: &ChangefeedId,
    tz: super::views::TimeZone,
) -> Option<Value> {
    let cf = state.changefeed(id)?;
    let info = cf.info.as_ref()?;
    let ck = info.checkpoint_ts(cf.status.as_ref());
    Some(json!({
        "state": info.state.as_str(),
        "tso": ck.0,
        "checkpoint": tz.format(ck),
        "error": info.error,
    }))
}

fn indented(v: &Value) -> Response {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return ApiError::internal("CDC:ErrInternal", "encoding the answer").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// `POST /admin/log` with a JSON string body, e.g. `"debug"`.
pub async fn admin_log(
    State(ctx): State<ApiContext>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let level: String = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid body: want a JSON string like \"debug\": {e}"
        ))
    })?;
    (ctx.set_log_level)(&level).map_err(ApiError::invalid)?;
    Ok(Json(json!({})))
}
