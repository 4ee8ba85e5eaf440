//! Target `routes`: route patterns (both spellings), overlap detection,
//! request path normalisation and the orchestrator's route table.
//!
//! Input fields (NUL-separated): route specs, one per field, in the CLI
//! form `METHOD /exec/...` or `/exec/...`; a field starting with `>` is a
//! request instead: `>METHOD /raw/path`.
//!
//! Checked: parsing never panics; a parsed pattern is canonical (printing
//! and parsing it again, in either spelling, gives the same pattern);
//! `overlaps` is symmetric and reflexive; a request path built from a
//! pattern normalises and matches it; the accepted routes (each refused
//! when it overlaps an earlier one, as the manager refuses with 409) form a
//! table whose lookups agree with trying every pattern by hand; normalised
//! segments never carry traversal.

use std::sync::Arc;

use orchestrator_core::routing::RouteTable;
use shared::route::{Route, RouteLookup, RoutePattern, Segment, normalize_request_path};
use shared::{Limits, Script, ScriptId, ScriptRef};

use crate::input::Fields;

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut accepted: Vec<(RoutePattern, ScriptId)> = Vec::new();
    let mut requests = Vec::new();
    for field in Fields::new(data).rest() {
        let text = String::from_utf8_lossy(field);
        if let Some(request) = text.strip_prefix('>') {
            requests.push(request.to_owned());
            continue;
        }
        let Some(pattern) = parse_both_ways(&text) else {
            continue;
        };
        check_pattern(&pattern);
        for (other, _) in &accepted {
            assert_eq!(
                pattern.overlaps(other),
                other.overlaps(&pattern),
                "overlaps is not symmetric"
            );
        }
        if !accepted.iter().any(|(other, _)| pattern.overlaps(other)) {
            accepted.push((pattern, ScriptId::new()));
        }
    }
    let scripts: Vec<Arc<ScriptRef>> = accepted
        .iter()
        .map(|(pattern, id)| {
            Arc::new(ScriptRef {
                script: Script {
                    id: *id,
                    route: Some(pattern.to_route()),
                    ..Script::default()
                },
                limits: Limits::DEFAULTS,
            })
        })
        .collect();
    let table = RouteTable::build(scripts.iter());
    // Every accepted pattern is reachable through the table.
    for (pattern, id) in &accepted {
        let segments = sample_path(pattern);
        let method = pattern.method.as_deref().unwrap_or("GET");
        match table.lookup(method, &segments) {
            RouteLookup::Found { target, .. } => {
                assert_eq!(target, *id, "a sample path of one route found another");
            }
            other => panic!("a route's own sample path was not found: {other:?}"),
        }
    }
    for request in requests {
        let (method, path) = request.split_once(' ').unwrap_or(("GET", &request));
        let Some(Ok(segments)) = normalize_request_path(path) else {
            continue;
        };
        for s in &segments {
            assert!(
                !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']),
                "a normalised segment can traverse: {s:?}"
            );
        }
        lookup_agrees(&table, &accepted, method, &segments);
    }
}

/// Parses `text` as the CLI spelling and as the JSON object spelling; they
/// must agree.
fn parse_both_ways(text: &str) -> Option<RoutePattern> {
    let cli = Route::from_cli(text);
    let trimmed = text.trim();
    let (method, path) = match trimmed.split_once(char::is_whitespace) {
        Some((m, p)) => (Some(m.to_owned()), p.trim().to_owned()),
        None => (None, trimmed.to_owned()),
    };
    let object = Route { method, path }.parse();
    match (cli, object) {
        (Ok(route), Ok(pattern)) => {
            assert_eq!(route, pattern.to_route(), "the two spellings disagree");
            Some(pattern)
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the two spellings refuse differently");
            None
        }
        (a, b) => panic!("one spelling parses and the other does not: {a:?} vs {b:?}"),
    }
}

fn check_pattern(pattern: &RoutePattern) {
    let route = pattern.to_route();
    let again = route
        .parse()
        .unwrap_or_else(|e| panic!("a canonical route does not parse: {route}: {e}"));
    assert_eq!(&again, pattern, "parsing is not canonical");
    let printed = Route::from_cli(&route.to_string())
        .unwrap_or_else(|e| panic!("a printed route does not parse: {route}: {e}"));
    assert_eq!(printed, route, "printing and parsing changed the route");
    assert!(
        pattern.overlaps(pattern),
        "a pattern does not overlap itself"
    );
    let segments = sample_path(pattern);
    let raw = format!("/exec/{}", segments.join("/"));
    let normalised = normalize_request_path(&raw)
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("a pattern's sample path does not normalise: {raw}"));
    assert_eq!(normalised, segments);
    let params = pattern
        .matches(&segments)
        .unwrap_or_else(|| panic!("a pattern does not match its own sample path: {raw}"));
    let names = pattern
        .segments
        .iter()
        .filter(|s| !matches!(s, Segment::Literal(_)))
        .count();
    assert_eq!(params.len(), names, "a parameter is missing");
}

/// A request path (segments) that `pattern` matches.
fn sample_path(pattern: &RoutePattern) -> Vec<String> {
    let mut out = Vec::new();
    for s in &pattern.segments {
        match s {
            Segment::Literal(l) => out.push(l.clone()),
            Segment::Param(_) => out.push("v".into()),
            Segment::Wildcard(_) => {
                out.push("w".into());
                out.push("x".into());
            }
        }
    }
    out
}

fn lookup_agrees(
    table: &RouteTable,
    accepted: &[(RoutePattern, ScriptId)],
    method: &str,
    segments: &[String],
) {
    let matching: Vec<&(RoutePattern, ScriptId)> = accepted
        .iter()
        .filter(|(p, _)| p.matches(segments).is_some())
        .collect();
    let for_method: Vec<_> = matching
        .iter()
        .filter(|(p, _)| p.method.as_deref().is_none_or(|m| m == method))
        .collect();
    assert!(
        for_method.len() <= 1,
        "two accepted routes match one request"
    );
    match table.lookup(method, segments) {
        RouteLookup::Found { target, params, .. } => {
            let (pattern, id) = for_method
                .first()
                .unwrap_or_else(|| panic!("the table found a route no pattern matches"));
            assert_eq!(target, *id);
            assert_eq!(Some(params), pattern.matches(segments));
        }
        RouteLookup::MethodNotAllowed { allowed } => {
            assert!(for_method.is_empty(), "a matching route was not found");
            assert!(!matching.is_empty() && !allowed.is_empty());
        }
        RouteLookup::NotFound => {
            assert!(matching.is_empty(), "a matching route was not found");
        }
    }
}
