//! Admin API errors: one enum, one JSON shape, `IntoResponse`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::{CompileError, ExecutorError};

use crate::store::StoreError;

/// The JSON body of every error answer (documentation type; the body is
/// built in [`ApiError::into_response`]). A compile error adds `line` and `column`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind, e.g. `not_found`, `compile_error`.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The error answers every admin operation documents: any 4xx or 5xx, with
/// an [`ErrorBody`].
#[derive(utoipa::IntoResponses)]
pub enum ErrorResponses {
    /// Refused; see `error` and `message`.
    #[response(status = "4XX")]
    Refused(#[to_schema] ErrorBody),
    /// Unavailable or failed; see `error` and `message`.
    #[response(status = "5XX")]
    Failed(#[to_schema] ErrorBody),
}

/// Everything an admin request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid admin token is required")]
    Unauthorized,
    #[error("too many failed attempts; retry in {0} seconds")]
    RateLimited(u64),
    #[error("the admin API answers only the dashboard's own origin")]
    ForbiddenOrigin,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Compile(CompileError),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::ForbiddenOrigin => (StatusCode::FORBIDDEN, "forbidden_origin"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Compile(_) => (StatusCode::UNPROCESSABLE_ENTITY, "compile_error"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let body = match &self {
            Self::Compile(e) => json!({
                "error": kind, "message": e.message, "line": e.line, "column": e.column,
            }),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "admin request failed");
                json!({ "error": kind, "message": self.to_string() })
            }
            _ => json!({ "error": kind, "message": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        match status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"picloud-admin\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateName(name) => {
                Self::Conflict(format!("a script named `{name}` already exists"))
            }
            StoreError::NotFound => Self::NotFound("no such script".into()),
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                Self::Unavailable("the database is unavailable; retry shortly".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ExecutorError> for ApiError {
    fn from(e: ExecutorError) -> Self {
        tracing::warn!(error = %e, "executor unavailable for a compile check");
        Self::Unavailable("no worker is available to compile the script; retry shortly".into())
    }
}
