//! An executor's [`InvocationOutput`] → the HTTP response a client gets.
//!
//! The worker already validated the script's response, but the worker is not
//! trusted: status and headers are checked again here, and a response that
//! fails the check becomes a `script_error` instead of reaching the wire.
//! Platform-owned headers (`Content-Security-Policy`, `nosniff`,
//! `X-PiCloud-*`) are set last, so a script can neither set nor remove them.

use std::fmt::Write as _;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::{InvocationId, InvocationOutput, InvocationStats, Outcome, ScriptResponse};

use crate::error::json_error;

/// Puts every data-plane response in an opaque origin: a script's page can run
/// scripts, submit forms and open popups, but never read the dashboard's origin.
pub const SCRIPT_CSP: &str = "sandbox allow-scripts allow-forms allow-popups";
/// Carries the invocation id, so a caller can find the record of its call.
pub const INVOCATION_ID_HEADER: &str = "x-picloud-invocation-id";
/// Per-invocation stats, only when the operator enables it.
pub const STATS_HEADER: &str = "x-picloud-stats";

/// Headers only the platform (or the HTTP layer) may set.
fn is_platform_owned(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-picloud-")
        // CORS is answered by the platform from the script's allow-list.
        || n.starts_with("access-control-")
        || matches!(
            n,
            "content-security-policy"
                | "content-security-policy-report-only"
                | "x-content-type-options"
                // Framing is the platform's decision, not a script's.
                | "x-frame-options"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "te"
                | "trailer"
                | "upgrade"
                | "proxy-connection"
        )
}

/// The response for one finished invocation, and the status it carries.
pub fn respond(
    id: InvocationId,
    output: &mut InvocationOutput,
    expose_stats: bool,
) -> (Response, u16) {
    let mut response = match output.outcome {
        Outcome::Ok => match output.response.take().map(script_response) {
            Some(Ok(r)) => r,
            Some(Err(message)) => {
                output.outcome = Outcome::ScriptError;
                output.error = Some(message);
                error_response(output)
            }
            None => {
                output.outcome = Outcome::WorkerCrashed;
                output.error = Some("the executor returned no response".into());
                error_response(output)
            }
        },
        _ => error_response(output),
    };
    let headers = response.headers_mut();
    platform_headers(headers, id);
    if expose_stats
        && let Ok(v) = HeaderValue::from_str(&stats_header(output.outcome, &output.stats))
    {
        headers.insert(STATS_HEADER, v);
    }
    let status = response.status().as_u16();
    (response, status)
}

/// Security headers every data-plane response carries, error or not.
pub fn platform_headers(headers: &mut HeaderMap, id: InvocationId) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SCRIPT_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(INVOCATION_ID_HEADER, v);
    }
}

fn script_response(r: ScriptResponse) -> Result<Response, String> {
    let status = match r.status {
        // An informational status cannot be a final response.
        200..=599 => StatusCode::from_u16(r.status).map_err(|_| invalid_status(r.status))?,
        other => return Err(invalid_status(other)),
    };
    let mut headers = HeaderMap::with_capacity(r.headers.len() + 4);
    for (name, value) in &r.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "invalid response header name".to_owned())?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for response header `{name}`"))?;
        if name == header::SET_COOKIE && !cookie_stays_with_scripts(value.as_bytes()) {
            return Err(
                "a script may set cookies only for its own paths (/exec/ or /api/execute/) \
                 and without a Domain attribute"
                    .to_owned(),
            );
        }
        if !is_platform_owned(&name) {
            headers.append(name, value);
        }
    }
    let body = if matches!(status.as_u16(), 204 | 304) {
        Body::empty()
    } else {
        Body::from(r.body)
    };
    let mut response = (status, body).into_response();
    *response.headers_mut() = headers;
    Ok(response)
}

/// A script's cookie must not reach the dashboard: no `Domain` (which could
/// widen it to other hosts) and, when a `Path` is given, one under the data
/// plane. Without a `Path` the browser scopes it to the script's own path.
fn cookie_stays_with_scripts(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    text.split(';').skip(1).all(|attr| {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        let key = key.trim();
        if key.eq_ignore_ascii_case("domain") {
            return false;
        }
        if key.eq_ignore_ascii_case("path") {
            let path = val.trim();
            return (path.starts_with("/exec/") || path.starts_with("/api/execute/"))
                && !path.contains("..");
        }
        true
    })
}

fn invalid_status(status: u16) -> String {
    format!("invalid response status {status}: must be 200 to 599")
}

fn error_response(output: &InvocationOutput) -> Response {
    let outcome = output.outcome;
    let status =
        StatusCode::from_u16(outcome.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = output.error.as_deref().unwrap_or(outcome.describe());
    let mut response = (status, json_error(outcome.kind(), message)).into_response();
    if outcome == Outcome::Overloaded {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `key=value;...`, compact enough for one header.
pub fn stats_header(outcome: Outcome, s: &InvocationStats) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "outcome={};wall_us={};cpu_us={};queue_us={};ops={};heap={};resp={};log={};cache={}",
        outcome.kind(),
        s.wall_us,
        s.cpu_us,
        s.queue_wait_us,
        s.operations,
        s.peak_heap_bytes,
        s.response_bytes,
        s.log_bytes,
        if s.cache_hit { "hit" } else { "miss" },
    );
    if let Some(pid) = s.worker_pid {
        let _ = write!(out, ";pid={pid};served={}", s.worker_invocations);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, headers: &[(&str, &str)]) -> InvocationOutput {
        InvocationOutput {
            response: Some(ScriptResponse {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                body: b"hi".to_vec(),
            }),
            ..InvocationOutput::default()
        }
    }

    #[test]
    fn passes_a_valid_response_and_adds_platform_headers() {
        let mut out = ok(201, &[("x-mine", "1"), ("content-security-policy", "none")]);
        let (r, status) = respond(InvocationId::new(), &mut out, false);
        assert_eq!(status, 201);
        assert_eq!(r.headers()["x-mine"], "1");
        assert_eq!(r.headers()["content-security-policy"], SCRIPT_CSP);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.headers().contains_key(INVOCATION_ID_HEADER));
        assert!(!r.headers().contains_key(STATS_HEADER));
    }

    #[test]
    fn rechecks_what_the_worker_sent() {
        for bad in [
            ok(65_535, &[]),
            ok(99, &[]),
            ok(100, &[]),
            ok(101, &[]),
            ok(200, &[("x-split", "a\r\nb")]),
            ok(200, &[("bad name", "v")]),
        ] {
            let mut out = bad;
            let (_, status) = respond(InvocationId::new(), &mut out, false);
            assert_eq!(status, 500);
            assert_eq!(out.outcome, Outcome::ScriptError);
        }
    }

    #[test]
    fn cookies_stay_on_the_data_plane() {
        for ok_cookie in [
            "a=1",
            "a=1; HttpOnly; Secure",
            "a=1; Path=/exec/app",
            "a=1; path=/api/execute/x",
        ] {
            let mut out = ok(200, &[("set-cookie", ok_cookie)]);
            let (r, status) = respond(InvocationId::new(), &mut out, false);
            assert_eq!(status, 200, "{ok_cookie}");
            assert_eq!(r.headers()["set-cookie"], ok_cookie);
        }
        for bad in [
            "a=1; Path=/",
            "a=1; Path=/api/admin",
            "a=1; Domain=example.test",
            "a=1; Path=/exec/../",
        ] {
            let mut out = ok(200, &[("set-cookie", bad)]);
            let (_, status) = respond(InvocationId::new(), &mut out, false);
            assert_eq!(status, 500, "{bad}");
        }
        let mut out = ok(200, &[("x-frame-options", "ALLOWALL")]);
        let (r, _) = respond(InvocationId::new(), &mut out, false);
        assert!(!r.headers().contains_key("x-frame-options"));
    }

    #[test]
    fn maps_outcomes_and_adds_retry_after() {
        let mut out = InvocationOutput::failed(Outcome::Overloaded, "busy");
        let (r, status) = respond(InvocationId::new(), &mut out, true);
        assert_eq!(status, 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(
            r.headers()[STATS_HEADER]
                .to_str()
                .unwrap()
                .starts_with("outcome=overloaded")
        );
        let mut out = InvocationOutput::failed(Outcome::Timeout, "too slow");
        assert_eq!(respond(InvocationId::new(), &mut out, false).1, 504);
    }
}
