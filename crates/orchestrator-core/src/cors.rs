//! CORS for custom routes: the platform answers preflight requests itself
//! and adds `Access-Control-Allow-Origin` only for origins in the script's
//! allow-list (default: none). Scripts cannot set CORS headers themselves.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::ScriptRef;

use crate::error::json_error;

/// How long a browser may cache a preflight answer.
const MAX_AGE_SECS: &str = "600";
/// Requested header lists longer than this are not echoed back.
const MAX_ALLOW_HEADERS: usize = 1024;

/// The request's `Origin`, when the script allows it.
pub fn allowed_origin<'a>(script: &ScriptRef, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    script
        .script
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

/// Adds the CORS headers of an actual (non-preflight) response.
pub fn decorate(response: &mut Response, origin: Option<HeaderValue>) {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}

/// Answers a preflight for `script`, which is bound to `method`.
pub fn preflight(script: &ScriptRef, method: &str, headers: &HeaderMap) -> Response {
    let Some(origin) = allowed_origin(script, headers).cloned() else {
        return (
            StatusCode::FORBIDDEN,
            json_error("cors_not_allowed", "this origin may not call this route"),
        )
            .into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    if let Ok(m) = HeaderValue::from_str(method) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
    }
    if let Some(requested) = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.len() <= MAX_ALLOW_HEADERS)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    response
}
