//! Target `http`: what a client sends becoming the script's `request`, and
//! what a script (through a worker, which is not trusted) answers becoming
//! the HTTP response.
//!
//! Input fields (NUL-separated): method, URI, request headers (one
//! `name: value` per line), request body, response status (decimal),
//! response headers (one per line), response body, flags.
//!
//! Checked, request side: the path goes through normalisation and the route
//! table as the router does; `request::build` either refuses with a 4xx or
//! yields a request whose method, body and path are the client's, with at
//! most `MAX_QUERY_PAIRS` pairs; the result converts to the script's value
//! under the default limits without panicking. Response side: `respond`
//! never panics; the status is the script's when it is accepted (200–599)
//! and an error otherwise; platform headers are present exactly once and
//! cannot be set or removed by the script; no hop-by-hop or framing header
//! passes; a `Set-Cookie` that passes has no `Domain`; the body is the
//! script's bytes unchanged (none for 204 and 304).

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use orchestrator_core::request::{MAX_QUERY_PAIRS, build};
use orchestrator_core::respond::{INVOCATION_ID_HEADER, SCRIPT_CSP, respond};
use orchestrator_core::routing::RouteTable;
use shared::route::{Route, RouteLookup, normalize_request_path};
use shared::{
    InvocationId, InvocationOutput, InvocationStats, Limits, Outcome, Script, ScriptRef,
    ScriptResponse,
};

use crate::input::Fields;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let routes = [
            (Some("GET"), "/exec/users/{id}"),
            (None, "/exec/files/{*rest}"),
            (Some("POST"), "/exec/hooks/{source}/{id}"),
            (None, "/exec/{tenant}/status"),
        ];
        let scripts: Vec<Arc<ScriptRef>> = routes
            .iter()
            .map(|(method, path)| {
                Arc::new(ScriptRef {
                    script: Script {
                        route: Some(Route {
                            method: method.map(str::to_owned),
                            path: (*path).to_owned(),
                        }),
                        ..Script::default()
                    },
                    limits: Limits::DEFAULTS,
                })
            })
            .collect();
        RouteTable::build(scripts.iter())
    })
}

fn header_map(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut fields = Fields::new(data);
    let method = fields.bytes();
    let uri = fields.bytes();
    let headers = fields.bytes();
    let body = fields.bytes();
    request_side(method, uri, headers, body);

    let status = fields.text().trim().parse::<u16>().unwrap_or(200);
    let headers = fields.bytes();
    let body = fields.bytes();
    let flags = fields.bytes().first().copied().unwrap_or(0);
    response_side(status, headers, body, flags);
}

fn request_side(method: &[u8], uri: &[u8], headers: &[u8], body: &[u8]) {
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(uri)) else {
        return;
    };
    let headers = header_map(headers);
    let params = match normalize_request_path(uri.path()) {
        Some(Ok(segments)) => {
            for s in &segments {
                assert!(
                    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']),
                    "a normalised segment can traverse: {s:?}"
                );
            }
            match table().lookup(method.as_str(), &segments) {
                RouteLookup::Found { params, .. } => params,
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    match build(
        &method,
        &uri,
        &headers,
        params.clone(),
        Bytes::copy_from_slice(body),
    ) {
        Ok(req) => {
            assert_eq!(req.method, method.as_str());
            assert_eq!(req.path, uri.path());
            assert_eq!(req.body.as_bytes(), body, "the body changed");
            assert_eq!(req.params, params);
            assert!(req.query.len() <= MAX_QUERY_PAIRS, "too many query pairs");
            if req.body_is_json {
                assert!(
                    serde_json::from_str::<serde_json::Value>(&req.body).is_ok(),
                    "a body marked JSON does not parse"
                );
            }
            let _ = executor_core::request::to_dynamic(&req, &Limits::DEFAULTS);
        }
        Err(e) => {
            let status = axum::response::IntoResponse::into_response(e).status();
            assert!(
                status.is_client_error(),
                "a refused request is {status}, not a 4xx"
            );
        }
    }
}

fn response_side(status: u16, headers: &[u8], body: &[u8], flags: u8) {
    let script_headers: Vec<(String, String)> = headers
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let text = String::from_utf8_lossy(line);
            let (n, v) = text.split_once(':')?;
            Some((n.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()))
        })
        .collect();
    let mut output = InvocationOutput {
        outcome: if flags & 2 == 0 {
            Outcome::Ok
        } else {
            Outcome::ScriptError
        },
        response: Some(ScriptResponse {
            status,
            headers: script_headers,
            body: body.to_vec(),
        }),
        error: (flags & 2 != 0).then(|| "script error".to_owned()),
        logs: Vec::new(),
        logs_truncated: false,
        stats: InvocationStats::default(),
    };
    let was_ok = output.outcome == Outcome::Ok;
    let id = InvocationId::new();
    let (response, code) = respond(id, &mut output, flags & 1 != 0);
    assert_eq!(response.status().as_u16(), code);
    let accepted = was_ok && output.outcome == Outcome::Ok;
    if accepted {
        assert_eq!(code, status, "an accepted response changed status");
        assert!((200..=599).contains(&code), "status {code} passed");
    } else {
        assert!(code >= 400, "a failed invocation answered {code}");
    }
    let h = response.headers();
    let one = |name: &str| h.get_all(name).iter().count() == 1;
    assert!(one("content-security-policy") && h[header::CONTENT_SECURITY_POLICY] == SCRIPT_CSP);
    assert!(one("x-content-type-options") && h[header::X_CONTENT_TYPE_OPTIONS] == "nosniff");
    assert!(one(INVOCATION_ID_HEADER));
    assert_eq!(h[INVOCATION_ID_HEADER], id.to_string().as_str());
    for banned in [
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "content-length",
        "x-frame-options",
        "content-security-policy-report-only",
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert!(!h.contains_key(banned), "the script set `{banned}`");
    }
    for cookie in h.get_all(header::SET_COOKIE) {
        // Attributes as a browser reads them (RFC 6265 5.2): after the
        // first `;`, a name up to `=`, trimmed, compared case-insensitively.
        let text = String::from_utf8_lossy(cookie.as_bytes()).into_owned();
        for attr in text.split(';').skip(1) {
            let (key, value) = attr.split_once('=').unwrap_or((attr, ""));
            let key = key.trim().to_ascii_lowercase();
            assert!(key != "domain", "a cookie with a Domain passed: {text}");
            if key == "path" {
                let path = value.trim();
                assert!(
                    (path.starts_with("/exec/") || path.starts_with("/api/execute/"))
                        && !path.contains(".."),
                    "a cookie for another path passed: {text}"
                );
            }
        }
    }
    let sent = crate::ready(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("an in-memory body reads");
    if accepted {
        if matches!(code, 204 | 304) {
            assert!(sent.is_empty(), "a {code} carries a body");
        } else {
            assert_eq!(sent.as_ref(), body, "the body changed on its way out");
        }
    }
}
