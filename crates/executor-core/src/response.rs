//! From a script's result to an HTTP response.
//!
//! The value of a script's last expression is its response:
//!
//! | value | status | body | content type |
//! |---|---|---|---|
//! | string | 200 | the text | `text/plain; charset=utf-8` |
//! | map or array | 200 | JSON | `application/json` |
//! | BLOB | 200 | the bytes | `application/octet-stream` |
//! | integer, float, bool, char | 200 | its text (`42`, `1.5`, `true`) | `text/plain; charset=utf-8` |
//! | `()` | 204 | none | none |
//! | `response(status, body[, headers])` | `status` | as above for `body` | as above unless a `content-type` header is given |
//!
//! Invariants:
//! - A status is an integer in 200..=599, checked as a 64-bit integer before
//!   any narrowing, so 65736 or 4294967496 can never wrap to 200. 1xx is
//!   refused: an informational status cannot be a final response (hyper
//!   would turn it into a 500).
//! - 204 and 304 never carry a body or a content type.
//! - Header names are RFC 9110 tokens, lower-cased; values contain no CR,
//!   LF, NUL or other control characters except tab; hop-by-hop headers and
//!   `content-length` (the platform frames the body) are refused; names,
//!   values and the header count are capped. Anything invalid is a script
//!   error naming the header, raised where `response()` is called.
//! - The body is at most `response_bytes` bytes, or the invocation fails
//!   with `output_limit`; JSON bodies are written with a depth bound and stop
//!   at that cap (see [`crate::json`]).

use rhai::Dynamic;
use shared::{Limits, Outcome, ScriptResponse};

use crate::json::{self, ToJsonError};

/// Longest accepted header name.
pub const MAX_HEADER_NAME_BYTES: usize = 256;
/// Longest accepted header value.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Most headers one response may set.
pub const MAX_HEADERS: usize = 64;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const BYTES: &str = "application/octet-stream";

/// Headers the platform owns: hop-by-hop ones (RFC 9110 §7.6.1) and the
/// body framing.
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// What `response(status, body, headers)` returns: the script's explicit
/// response, validated except for its body (converted at the end).
#[derive(Debug, Clone)]
pub struct ResponseValue {
    status: u16,
    headers: Vec<(String, String)>,
    body: Dynamic,
}

impl ResponseValue {
    /// Validates a status and headers from a script.
    pub fn new(status: &Dynamic, body: Dynamic, headers: &Dynamic) -> Result<Self, String> {
        Ok(Self {
            status: validate_status(status)?,
            headers: validate_headers(headers)?,
            body,
        })
    }
}

/// Why a result could not become a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseError {
    pub outcome: Outcome,
    pub message: String,
}

impl ResponseError {
    fn script(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::ScriptError,
            message: message.into(),
        }
    }
}

/// Turns a script's final value into its response.
pub fn from_result(value: &Dynamic, limits: &Limits) -> Result<ScriptResponse, ResponseError> {
    if let Some(explicit) = value.read_lock::<ResponseValue>() {
        return build(
            explicit.status,
            explicit.headers.clone(),
            &explicit.body,
            limits,
        );
    }
    if value.is_unit() {
        return Ok(ScriptResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
    build(200, Vec::new(), value, limits)
}

fn build(
    status: u16,
    mut headers: Vec<(String, String)>,
    body: &Dynamic,
    limits: &Limits,
) -> Result<ScriptResponse, ResponseError> {
    if status == 204 || status == 304 {
        return Ok(ScriptResponse {
            status,
            headers,
            body: Vec::new(),
        });
    }
    let (body, content_type) = body_bytes(body, limits)?;
    if let Some(content_type) = content_type
        && !headers.iter().any(|(name, _)| name == "content-type")
    {
        headers.push(("content-type".to_owned(), content_type.to_owned()));
    }
    Ok(ScriptResponse {
        status,
        headers,
        body,
    })
}

fn body_bytes(
    body: &Dynamic,
    limits: &Limits,
) -> Result<(Vec<u8>, Option<&'static str>), ResponseError> {
    let cap = usize::try_from(limits.response_bytes).unwrap_or(usize::MAX);
    let too_large = || ResponseError {
        outcome: Outcome::OutputLimit,
        message: format!("response body larger than {} bytes", limits.response_bytes),
    };
    let capped = |bytes: Vec<u8>, content_type| {
        if bytes.len() > cap {
            Err(too_large())
        } else {
            Ok((bytes, Some(content_type)))
        }
    };
    if body.is_unit() {
        return Ok((Vec::new(), None));
    }
    if let Ok(text) = body.as_immutable_string_ref() {
        if text.len() > cap {
            return Err(too_large());
        }
        return Ok((text.as_bytes().to_vec(), Some(TEXT)));
    }
    if let Ok(blob) = body.as_blob_ref() {
        if blob.len() > cap {
            return Err(too_large());
        }
        return Ok((blob.clone(), Some(BYTES)));
    }
    if body.is_array() || body.is_map() {
        return match json::to_json_bytes(body, cap) {
            Ok(bytes) => Ok((bytes, Some(JSON))),
            Err(ToJsonError::TooLarge(_)) => Err(too_large()),
            Err(err) => Err(ResponseError::script(format!(
                "the response cannot be written as JSON: {err}"
            ))),
        };
    }
    if body.is_int() || body.is_float() || body.is_bool() || body.is_char() {
        return capped(body.to_string().into_bytes(), TEXT);
    }
    Err(ResponseError::script(format!(
        "a value of type `{}` cannot be a response body",
        body.type_name()
    )))
}

/// A status is an integer in 200..=599.
pub fn validate_status(status: &Dynamic) -> Result<u16, String> {
    let Ok(code) = status.as_int() else {
        return Err(format!(
            "invalid status: expected an integer from 200 to 599, got a value of type `{}`",
            status.type_name()
        ));
    };
    match u16::try_from(code) {
        Ok(code) if (200..=599).contains(&code) => Ok(code),
        _ => Err(format!(
            "invalid status {code}: expected an integer from 200 to 599"
        )),
    }
}

/// Validates and lower-cases the headers map (`()` means none).
pub fn validate_headers(headers: &Dynamic) -> Result<Vec<(String, String)>, String> {
    if headers.is_unit() {
        return Ok(Vec::new());
    }
    let Ok(map) = headers.as_map_ref() else {
        return Err(format!(
            "invalid response headers: expected an object map, got a value of type `{}`",
            headers.type_name()
        ));
    };
    if map.len() > MAX_HEADERS {
        return Err(format!(
            "invalid response headers: {} headers, at most {MAX_HEADERS} allowed",
            map.len()
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map.iter() {
        let name = validate_header_name(name)?;
        let value = header_value_text(&name, value)?;
        validate_header_value(&name, &value)?;
        out.push((name, value));
    }
    Ok(out)
}

/// A short, quoted, escaped rendering of a header name for messages.
fn shown(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

fn validate_header_name(name: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid response header name {}: {why}",
            shown(name)
        ))
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name.len() > MAX_HEADER_NAME_BYTES {
        return invalid("the name is too long");
    }
    if !name.bytes().all(is_token_byte) {
        return invalid("a header name may only contain letters, digits and !#$%&'*+-.^_`|~");
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        return invalid("this header is set by the platform");
    }
    Ok(lower)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn header_value_text(name: &str, value: &Dynamic) -> Result<String, String> {
    if let Ok(text) = value.as_immutable_string_ref() {
        if text.len() > MAX_HEADER_VALUE_BYTES {
            return Err(format!(
                "invalid response header {}: the value is longer than {MAX_HEADER_VALUE_BYTES} bytes",
                shown(name)
            ));
        }
        return Ok(text.to_string());
    }
    if value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
        return Ok(value.to_string());
    }
    Err(format!(
        "invalid response header {}: the value must be a string, got a value of type `{}`",
        shown(name),
        value.type_name()
    ))
}

/// Visible ASCII, space, tab and non-ASCII text; no CR, LF, NUL, DEL or
/// other control characters.
fn validate_header_value(name: &str, value: &str) -> Result<(), String> {
    let ok = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid response header {}: the value contains CR, LF, NUL or another control character",
            shown(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Map;

    fn headers(pairs: &[(&str, &str)]) -> Dynamic {
        let mut map = Map::new();
        for (k, v) in pairs {
            map.insert((*k).into(), Dynamic::from((*v).to_owned()));
        }
        Dynamic::from_map(map)
    }

    #[test]
    fn statuses_never_wrap() {
        for good in [200, 204, 304, 404, 555, 599] {
            assert_eq!(
                validate_status(&Dynamic::from_int(good)),
                Ok(u16::try_from(good).unwrap())
            );
        }
        for bad in [0, 99, 100, 101, 199, 600, 999, -1, 65_736, 4_294_967_496] {
            let err = validate_status(&Dynamic::from_int(bad)).unwrap_err();
            assert!(err.starts_with("invalid status"), "{err}");
        }
        assert!(validate_status(&Dynamic::from("200")).is_err());
        assert!(validate_status(&Dynamic::from_float(200.5)).is_err());
        assert!(validate_status(&Dynamic::UNIT).is_err());
    }

    #[test]
    fn header_injection_is_refused() {
        for (name, value) in [
            ("X-Split", "a\r\nSet-Cookie: pwned=1"),
            ("X-Bare-LF", "a\nX-Injected: 1"),
            ("X-Nul", "a\0b"),
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("", "v"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authorization", "x"),
            ("Content-Length", "1"),
        ] {
            let err = validate_headers(&headers(&[(name, value)])).unwrap_err();
            assert!(err.starts_with("invalid response header"), "{err}");
        }
        let huge = "v".repeat(MAX_HEADER_VALUE_BYTES + 1);
        assert!(validate_headers(&headers(&[("x-huge", &huge)])).is_err());
    }

    #[test]
    fn names_are_lower_cased_and_text_values_pass() {
        let out = validate_headers(&headers(&[("X-Thing", "a\tb é")])).unwrap();
        assert_eq!(out, [("x-thing".to_owned(), "a\tb é".to_owned())]);
    }

    #[test]
    fn bodies_pick_their_content_type() {
        let limits = Limits::DEFAULTS;
        let text = from_result(&Dynamic::from("hi"), &limits).unwrap();
        assert_eq!(text.status, 200);
        assert_eq!(text.body, b"hi");
        assert_eq!(text.headers, [("content-type".into(), TEXT.into())]);
        let none = from_result(&Dynamic::UNIT, &limits).unwrap();
        assert_eq!((none.status, none.body.len()), (204, 0));
        let number = from_result(&Dynamic::from_int(42), &limits).unwrap();
        assert_eq!(number.body, b"42");
    }

    #[test]
    fn explicit_content_type_wins_and_204_has_no_body() {
        let limits = Limits::DEFAULTS;
        let custom = ResponseValue::new(
            &Dynamic::from_int(201),
            Dynamic::from("<p>"),
            &headers(&[("Content-Type", "text/html")]),
        )
        .unwrap();
        let out = from_result(&Dynamic::from(custom), &limits).unwrap();
        assert_eq!(out.headers, [("content-type".into(), "text/html".into())]);
        let empty = ResponseValue::new(&Dynamic::from_int(204), Dynamic::from("x"), &Dynamic::UNIT)
            .unwrap();
        let out = from_result(&Dynamic::from(empty), &limits).unwrap();
        assert!(out.body.is_empty() && out.headers.is_empty());
    }

    #[test]
    fn oversized_bodies_are_output_limits() {
        let limits = Limits {
            response_bytes: 4,
            ..Limits::DEFAULTS
        };
        let err = from_result(&Dynamic::from("hello"), &limits).unwrap_err();
        assert_eq!(err.outcome, Outcome::OutputLimit);
        let array = Dynamic::from_array(vec![Dynamic::from_int(12_345)]);
        assert_eq!(
            from_result(&array, &limits).unwrap_err().outcome,
            Outcome::OutputLimit
        );
    }
}
