//! The `request` variable a script sees.
//!
//! `request` is an object map with `method`, `path`, `params` (map),
//! `query` (map; the last of duplicate keys wins), `headers` (map with
//! lower-case names), `body` (string) and `json` (the body parsed by
//! `serde_json` when the request said it is JSON, else `()`). The request's
//! sizes were capped before it reached the executor; converting it is
//! counted against the script's memory limit (the runtime measures the heap
//! from before the conversion), and the JSON body may hold at most
//! `array_len + map_len` values, so a small body cannot turn into a huge
//! tree before any limit looks at it.

use rhai::{Dynamic, Map};
use shared::{Limits, ScriptRequest};

use crate::json::{self, ParseError};

/// The request's JSON body holds more values than the script may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request's JSON body has more than {0} values (the script's array_len + map_len)")]
pub struct JsonTooLarge(pub usize);

/// Builds the `request` map.
pub fn to_dynamic(request: &ScriptRequest, limits: &Limits) -> Result<Dynamic, JsonTooLarge> {
    let mut map = Map::new();
    map.insert("method".into(), Dynamic::from(request.method.clone()));
    map.insert("path".into(), Dynamic::from(request.path.clone()));
    map.insert("params".into(), pairs_to_map(&request.params, false));
    map.insert("query".into(), pairs_to_map(&request.query, false));
    map.insert("headers".into(), pairs_to_map(&request.headers, true));
    map.insert("body".into(), Dynamic::from(request.body.clone()));
    let parsed = if request.body_is_json {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let allowance = json::value_allowance(size(limits.array_len), size(limits.map_len));
        match json::parse(&request.body, allowance) {
            Ok(value) => value,
            Err(ParseError::TooManyValues(n)) => return Err(JsonTooLarge(n)),
            // The orchestrator checked that the body parses; if it did not,
            // the script sees no JSON rather than an error it cannot cause.
            Err(ParseError::Invalid(_)) => Dynamic::UNIT,
        }
    } else {
        Dynamic::UNIT
    };
    map.insert("json".into(), parsed);
    Ok(Dynamic::from_map(map))
}

/// Later pairs overwrite earlier ones with the same key.
fn pairs_to_map(pairs: &[(String, String)], lower_case_keys: bool) -> Dynamic {
    let mut map = Map::new();
    for (key, value) in pairs {
        let key = if lower_case_keys {
            key.to_ascii_lowercase()
        } else {
            key.clone()
        };
        map.insert(key.into(), Dynamic::from(value.clone()));
    }
    Dynamic::from_map(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_last_duplicate_win() {
        let request = ScriptRequest {
            method: "POST".into(),
            path: "/x".into(),
            query: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            headers: vec![("X-Token".into(), "t".into())],
            body: r#"{"n": 1}"#.into(),
            body_is_json: true,
            ..ScriptRequest::default()
        };
        let value = to_dynamic(&request, &Limits::DEFAULTS).unwrap();
        let map = value.as_map_ref().unwrap();
        let query = map["query"].as_map_ref().unwrap();
        assert_eq!(query["a"].clone().into_string().unwrap(), "2");
        let headers = map["headers"].as_map_ref().unwrap();
        assert!(headers.contains_key("x-token"));
        let json = map["json"].as_map_ref().unwrap();
        assert_eq!(json["n"].as_int(), Ok(1));
    }

    #[test]
    fn json_is_unit_unless_flagged() {
        let request = ScriptRequest {
            body: "[1]".into(),
            ..ScriptRequest::default()
        };
        let value = to_dynamic(&request, &Limits::DEFAULTS).unwrap();
        assert!(value.as_map_ref().unwrap()["json"].is_unit());
    }

    #[test]
    fn a_json_body_with_too_many_values_is_refused() {
        let request = ScriptRequest {
            body: "[1, 2, 3, 4]".into(),
            body_is_json: true,
            ..ScriptRequest::default()
        };
        let limits = Limits {
            array_len: 2,
            map_len: 2,
            ..Limits::DEFAULTS
        };
        assert_eq!(to_dynamic(&request, &limits).unwrap_err(), JsonTooLarge(4));
    }
}
