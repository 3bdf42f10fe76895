//! Owner-only actions: run on the local owner, or forward the request once to the owner.

use std::future::Future;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{ApiContext, ELECTION_GRACE};
use crate::owner::runtime::OwnerHandle;

/// Marks a forwarded request so a capture that is not the owner (ownership moved meanwhile)
/// answers "not owner" instead of forwarding again.
const FORWARDED_FROM: &str = "x-rcdc-forwarded-from";

/// The parts of a request needed to forward it.
pub struct Forwardable {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Runs `local` with the local owner, or forwards the request to the owner.
pub async fn on_owner<F, Fut>(
    ctx: &ApiContext,
    req: Forwardable,
    local: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(OwnerHandle) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    if let Some(owner) = ctx.local_owner() {
        return local(owner).await;
    }
    let not_owner = |message: String| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "CDC:ErrNotOwner",
        message,
    };
    if req.headers.contains_key(FORWARDED_FROM) {
        return Err(not_owner(
            "this capture is no longer the owner; retry".into(),
        ));
    }
    let owner = ctx
        .meta
        .owner_within(ELECTION_GRACE)
        .await?
        .ok_or_else(|| not_owner("the cluster has no owner right now; retry".into()))?;
    let state = ctx.meta.load().await?;
    let address = state
        .captures()
        .get(&owner)
        .map(|c| c.address.clone())
        .ok_or_else(|| not_owner(format!("owner {owner} has no capture info; retry")))?;
    let path = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path().to_owned(), |p| p.as_str().to_owned());
    let me = ctx
        .status
        .borrow()
        .id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let mut out = ctx
        .http
        .request(req.method, ctx.security.api_url(&address, &path))
        .header(FORWARDED_FROM, me)
        .body(req.body);
    if let Some(ct) = req.headers.get(axum::http::header::CONTENT_TYPE) {
        out = out.header(axum::http::header::CONTENT_TYPE, ct);
    }
    let answer = match out.send().await {
        Ok(answer) => answer,
        Err(e) => {
            let why = match crate::security::api_tls_failure(&ctx.security, &address, &e).await {
                Some(tls) => tls.to_string(),
                None => format!("forwarding to the owner at {address}: {e}"),
            };
            return Err(ApiError::internal("CDC:ErrReachOwner", why));
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.map_err(|e| {
        ApiError::internal(
            "CDC:ErrReachOwner",
            format!("reading the owner's answer from {address}: {e}"),
        )
    })?;
    let mut response = (status, body).into_response();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_bytes(c.as_bytes()).ok()) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    Ok(response)
}
