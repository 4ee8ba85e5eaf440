//! HTTP request → the script's `request` value.
//!
//! Everything here is client-controlled, so every step has a cap or a clear
//! refusal: the body must be UTF-8, a JSON content type must carry valid JSON,
//! the query string must decode to UTF-8 and have a bounded number of pairs.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri, header};
use percent_encoding::percent_decode;
use shared::ScriptRequest;

use crate::error::RequestError;

/// More pairs than any real form or webhook sends; past it the client is not
/// talking to a script in good faith.
pub const MAX_QUERY_PAIRS: usize = 512;

/// Builds the script's request from the parts of an HTTP request.
pub fn build(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
    body: Bytes,
) -> Result<ScriptRequest, RequestError> {
    let body = String::from_utf8(Vec::from(body))
        .map_err(|_| RequestError::BadRequest("request body is not valid UTF-8".into()))?;
    let body_is_json = is_json(headers) && !body.trim().is_empty();
    if body_is_json {
        serde_json::from_str::<JsonShape>(&body).map_err(|e| {
            RequestError::BadRequest(format!("request body is not valid JSON: {e}"))
        })?;
    }
    Ok(ScriptRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        params,
        query: parse_query(uri.query().unwrap_or(""))?,
        headers: collect_headers(headers),
        body,
        body_is_json,
    })
}

/// Walks a JSON document without keeping it. Unlike `IgnoredAny` it goes
/// through `deserialize_any`, so `serde_json`'s recursion limit (128 levels,
/// the one the worker parses `request.json` with) holds: a document nested
/// deeper is a `400` here, not a `request.json` the script silently lacks.
struct JsonShape;

impl<'de> serde::Deserialize<'de> for JsonShape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonShape)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonShape {
    type Value = JsonShape;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<JsonShape>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, JsonShape>()?
            .is_some()
        {}
        Ok(self)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

/// Decodes `application/x-www-form-urlencoded` query text strictly: a pair
/// that does not decode to UTF-8 is a `400`, not a silently mangled value.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, RequestError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(RequestError::BadRequest(format!(
                "too many query parameters (at most {MAX_QUERY_PAIRS})"
            )));
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(pairs)
}

fn decode_component(raw: &str) -> Result<String, RequestError> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| RequestError::BadRequest("query string does not decode to valid UTF-8".into()))
}

/// Lower-case names (the `http` crate already normalises them); repeated
/// headers joined with `, ` as HTTP allows; non-UTF-8 bytes replaced.
fn collect_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let mut joined = String::new();
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                joined.push_str(", ");
            }
            joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        out.push((name.as_str().to_owned(), joined));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn decodes_query_strictly() {
        let q = parse_query("name=J%C3%BCrgen+X&flag&empty=&a=1&a=2").unwrap();
        assert_eq!(q[0], ("name".into(), "Jürgen X".into()));
        assert_eq!(q[1], ("flag".into(), String::new()));
        assert_eq!(q.len(), 5);
        assert!(parse_query("bad=%FF%FE").is_err());
        assert!(parse_query(&"a=1&".repeat(MAX_QUERY_PAIRS + 1)).is_err());
        // A lone or malformed escape is kept literally, as browsers do.
        assert_eq!(parse_query("p=100%").unwrap()[0].1, "100%");
    }

    #[test]
    fn checks_body_and_json() {
        let uri: Uri = "/api/execute/x?a=1".parse().unwrap();
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let ok = build(
            &Method::POST,
            &uri,
            &json,
            vec![],
            Bytes::from_static(b"{\"a\":1}"),
        )
        .unwrap();
        assert!(ok.body_is_json);
        assert_eq!(ok.path, "/api/execute/x");
        assert!(
            build(
                &Method::POST,
                &uri,
                &json,
                vec![],
                Bytes::from_static(b"{nope")
            )
            .is_err()
        );
        assert!(
            build(
                &Method::POST,
                &uri,
                &json,
                vec![],
                Bytes::from_static(b"\xff\xfe")
            )
            .is_err()
        );
        // Nested deeper than the worker's parser goes: refused here.
        let nested = |n: usize| Bytes::from(format!("{}{}", "[".repeat(n), "]".repeat(n)));
        assert!(build(&Method::POST, &uri, &json, vec![], nested(100)).is_ok());
        let deep = build(&Method::POST, &uri, &json, vec![], nested(100_000));
        assert!(matches!(deep, Err(RequestError::BadRequest(m)) if m.contains("recursion")));
        let empty = build(&Method::GET, &uri, &json, vec![], Bytes::new()).unwrap();
        assert!(!empty.body_is_json);
        let vnd = headers(&[("content-type", "application/vnd.api+json")]);
        assert!(
            build(&Method::POST, &uri, &vnd, vec![], Bytes::from_static(b"[]"))
                .unwrap()
                .body_is_json
        );
    }

    #[test]
    fn joins_repeated_headers() {
        let h = headers(&[("x-a", "1"), ("x-a", "2"), ("accept", "text/plain")]);
        let got = collect_headers(&h);
        assert!(got.contains(&("x-a".into(), "1, 2".into())));
    }
}
