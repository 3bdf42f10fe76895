//! The API's one error shape, TiCDC's `model.HTTPError`: `{"error_msg": ..., "error_code": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::meta::MetaError;
use crate::owner::runtime::RequestError;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// TiCDC-style error code, e.g. `CDC:ErrAPIInvalidParam`.
    pub code: &'static str,
    /// What went wrong, naming the offending input (sink URIs masked).
    pub message: String,
}

impl ApiError {
    /// A 400 for a bad parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "CDC:ErrAPIInvalidParam",
            message: message.into(),
        }
    }

    /// A 5xx for a cluster-side failure.
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message: message.into(),
        }
    }

    /// 400 `CDC:ErrCaptureNotExist` unless `capture` is a live capture in `state`.
    pub fn require_capture(
        state: &rcdc_state::GlobalState,
        capture: &rcdc_state::CaptureId,
    ) -> Result<(), Self> {
        if state.captures().contains_key(capture) {
            return Ok(());
        }
        Err(Self {
            status: StatusCode::BAD_REQUEST,
            code: "CDC:ErrCaptureNotExist",
            message: format!("capture {capture} does not exist"),
        })
    }

    /// 404 for a path we do not serve.
    pub fn not_found(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "CDC:ErrAPINotFound",
            message: format!("no route {path}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_msg": self.message, "error_code": self.code });
        (self.status, Json(body)).into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let status = if e.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotOwner => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "CDC:ErrNotOwner",
                message: "this capture is not the owner; retry (ownership is changing)".into(),
            },
            RequestError::Rejected(why) => Self::invalid(why),
            e @ RequestError::Unconfirmed { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "CDC:ErrOwnerUnconfirmed",
                message: e.to_string(),
            },
        }
    }
}
