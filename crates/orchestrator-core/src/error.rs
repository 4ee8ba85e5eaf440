//! Errors of the data plane, as HTTP answers: a status and a JSON body
//! `{"error": "<kind>", "message": "..."}` that never names host internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A request the data plane refuses or cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client did not send the request (its body) in time.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl RequestError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let message = self.to_string();
        let mut response = (status, json_error(kind, &message)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The platform's JSON error body.
pub fn json_error(kind: &str, message: &str) -> Json<serde_json::Value> {
    Json(
        serde_json::to_value(ErrorBody {
            error: kind,
            message,
        })
        .unwrap_or_default(),
    )
}
