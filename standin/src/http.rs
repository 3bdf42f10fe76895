//! Plain HTTP on a member's port: the part of PD's API that TiCDC reads, and the stand-in's
//! control surface (the fault switches). Anything else is etcd's (see [`crate::proxy`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::cluster::{Cluster, ControlError, StoreState};

/// Paths this router answers; every other plain HTTP path is forwarded to etcd.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with("/pd/") || path.starts_with("/standin/")
}

/// The router for one member (every member shares the cluster, so any member can flip a
/// switch).
pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/pd/api/v1/version", get(version))
        .route("/pd/api/v1/health", get(health))
        .route("/pd/health", get(health))
        .route("/standin/state", get(state))
        .route("/standin/leader", post(transfer_leader))
        .route("/standin/tso", put(tso_switch))
        .route("/standin/members/{name}", put(member_switch))
        .route("/standin/stores/{id}", put(store_switch))
        .with_state(cluster)
}

/// PD's `GET /pd/api/v1/version`: `{"version": "v5.1.0"}`.
async fn version(State(c): State<Arc<Cluster>>) -> Response {
    Json(serde_json::json!({ "version": c.pd_version })).into_response()
}

/// PD's member health list; a member that is down is reported unhealthy, as PD's own probe
/// of it would fail.
async fn health(State(c): State<Arc<Cluster>>) -> Response {
    let list: Vec<_> = c
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::json!({
                "name": m.name, "member_id": m.member_id,
                "client_urls": [m.url], "health": c.is_up(i),
            })
        })
        .collect();
    Json(list).into_response()
}

async fn state(State(c): State<Arc<Cluster>>) -> Response {
    Json(c.snapshot()).into_response()
}

/// A JSON body; an empty body reads as the type's default.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, (StatusCode, String)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON body: {e}\n")))
}

fn refused(e: ControlError) -> Response {
    let status = match e {
        ControlError::UnknownMember(_) | ControlError::UnknownStore(_) => StatusCode::NOT_FOUND,
        ControlError::MemberDown(_) | ControlError::NoLiveMember => StatusCode::CONFLICT,
        ControlError::Tso(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{e}\n")).into_response()
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderBody {
    to: Option<String>,
}

/// `POST /standin/leader` `{"to": "pd-2"}`; without `to`, the next live member.
async fn transfer_leader(State(c): State<Arc<Cluster>>, raw: Bytes) -> Response {
    let b: LeaderBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match c.transfer_leader(b.to.as_deref()) {
        Ok(name) => Json(serde_json::json!({ "leader": name })).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TsoBody {
    fail: bool,
}

/// `PUT /standin/tso` `{"fail": true|false}`.
async fn tso_switch(State(c): State<Arc<Cluster>>, raw: Bytes) -> Response {
    match body::<TsoBody>(&raw) {
        Ok(b) => {
            c.set_tso_failing(b.fail);
            Json(serde_json::json!({ "tso_failing": b.fail })).into_response()
        }
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    up: bool,
}

impl Default for MemberBody {
    fn default() -> Self {
        Self { up: true }
    }
}

/// `PUT /standin/members/{name}` `{"up": false}` takes the member down.
async fn member_switch(
    State(c): State<Arc<Cluster>>,
    Path(name): Path<String>,
    raw: Bytes,
) -> Response {
    let b: MemberBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match c.set_member_up(&name, b.up) {
        Ok(()) => Json(serde_json::json!({ "member": name, "up": b.up })).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreBody {
    address: Option<String>,
    version: Option<String>,
    state: Option<StoreState>,
}

/// `PUT /standin/stores/{id}` `{"address"?, "version"?, "state"?: "Up"|"Offline"|"Tombstone"}`
/// adds the store (address required) or changes it.
async fn store_switch(State(c): State<Arc<Cluster>>, Path(id): Path<u64>, raw: Bytes) -> Response {
    let b: StoreBody = match body(&raw) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match c.upsert_store(id, b.address, b.version, b.state) {
        Ok(store) => Json(store).into_response(),
        Err(e) => refused(e),
    }
}
