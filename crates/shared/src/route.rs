//! Custom routes under `/exec/*`: parsing patterns, detecting overlaps, and
//! normalising request paths.
//!
//! A pattern is `/exec/` followed by segments, each a literal, a named
//! parameter `{name}`, or — last only — a wildcard `{*name}` that takes one
//! or more remaining segments. Two routes conflict when their methods can be
//! the same (equal, or either is "any") and some path matches both; conflicts
//! are refused at write time, so at most one route ever matches a request.
//!
//! Request paths are normalised before matching: segments are
//! percent-decoded one by one, empty segments collapse, and a segment that is
//! `.` or `..` or decodes to something containing `/`, `\` or NUL is refused
//! outright — a traversal trick never reaches a different route.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every route lives under this prefix.
pub const PREFIX: &str = "/exec";
const MAX_PATTERN_LEN: usize = 512;
const MAX_SEGMENTS: usize = 32;

/// The methods a route may name (`ANY`, or none, matches every method).
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A route as stored and shown: `{"method": "POST", "path": "/exec/hooks/{id}"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Upper-case method; `None` (or `"ANY"` on input) matches every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub path: String,
}

/// One parsed pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    Wildcard(String),
}

/// A validated route, ready for overlap checks and matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    pub method: Option<String>,
    /// Segments after `/exec`.
    pub segments: Vec<Segment>,
}

/// What a route lookup found.
#[derive(Debug, Clone)]
pub enum RouteLookup<T> {
    /// A route for this method and path.
    Found {
        target: T,
        /// Named segments, in pattern order; a wildcard's value joins its segments with `/`.
        params: Vec<(String, String)>,
        /// The pattern that matched, e.g. `POST /exec/hooks/{id}`.
        pattern: String,
    },
    /// Routes exist for this path, but not for this method.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

/// Why a route or a request path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route path must start with `/exec/` and have at least one segment")]
    Prefix,
    #[error(
        "route path is longer than {MAX_PATTERN_LEN} bytes or has more than {MAX_SEGMENTS} segments"
    )]
    TooLong,
    #[error(
        "route segment `{0}` is not a literal ([A-Za-z0-9._~-]), `{{name}}` or a final `{{*name}}`"
    )]
    BadSegment(String),
    #[error(
        "route path has an empty segment: it needs at least one segment after `/exec/`, and no `//` or trailing `/`"
    )]
    EmptySegment,
    #[error("route parameter `{0}` appears twice")]
    DuplicateParam(String),
    #[error(
        "`{0}` is not an HTTP method a route can have (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or ANY)"
    )]
    BadMethod(String),
    #[error("path segment `{0}` is not allowed (traversal or encoded separator)")]
    Traversal(String),
    #[error("path is not valid percent-encoded UTF-8")]
    BadEncoding,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.method.as_deref().unwrap_or("ANY"),
            self.path
        )
    }
}

impl Route {
    /// Parses the command-line form `METHOD /exec/path` or just `/exec/path`.
    pub fn from_cli(s: &str) -> Result<Self, RouteError> {
        let s = s.trim();
        let (method, path) = match s.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m.to_owned()), p.trim().to_owned()),
            None => (None, s.to_owned()),
        };
        let route = Self { method, path };
        Ok(route.parse()?.to_route())
    }

    /// Validates the route.
    pub fn parse(&self) -> Result<RoutePattern, RouteError> {
        let method = match self.method.as_deref().map(str::trim) {
            None | Some("" | "*") => None,
            Some(m) if m.eq_ignore_ascii_case("any") => None,
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                // A typo (`GTE`) would otherwise bind a route nobody can call.
                if !METHODS.contains(&upper.as_str()) {
                    return Err(RouteError::BadMethod(m.chars().take(32).collect()));
                }
                Some(upper)
            }
        };
        let path = self.path.trim();
        if path.len() > MAX_PATTERN_LEN {
            return Err(RouteError::TooLong);
        }
        let rest = path
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(RouteError::Prefix)?;
        let raw: Vec<&str> = rest.split('/').collect();
        if raw.len() > MAX_SEGMENTS {
            return Err(RouteError::TooLong);
        }
        let mut segments = Vec::with_capacity(raw.len());
        let mut names = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            let parsed = parse_segment(seg, last)?;
            if let Segment::Param(n) | Segment::Wildcard(n) = &parsed {
                if names.contains(n) {
                    return Err(RouteError::DuplicateParam(n.clone()));
                }
                names.push(n.clone());
            }
            segments.push(parsed);
        }
        Ok(RoutePattern { method, segments })
    }
}

fn parse_segment(seg: &str, last: bool) -> Result<Segment, RouteError> {
    if seg.is_empty() {
        return Err(RouteError::EmptySegment);
    }
    let bad = || RouteError::BadSegment(seg.chars().take(64).collect());
    if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        let (wild, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        let ident = matches!(
            name.as_bytes().first(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_')
        ) && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        return match (ident, wild, last) {
            (true, true, true) => Ok(Segment::Wildcard(name.to_owned())),
            (true, false, _) => Ok(Segment::Param(name.to_owned())),
            _ => Err(bad()),
        };
    }
    let literal = !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if literal {
        Ok(Segment::Literal(seg.to_owned()))
    } else {
        Err(bad())
    }
}

impl RoutePattern {
    /// The canonical route this pattern came from.
    pub fn to_route(&self) -> Route {
        Route {
            method: self.method.clone(),
            path: self.path(),
        }
    }

    /// `/exec/...` in the pattern syntax.
    pub fn path(&self) -> String {
        let mut p = String::from(PREFIX);
        for s in &self.segments {
            p.push('/');
            match s {
                Segment::Literal(l) => p.push_str(l),
                Segment::Param(n) => {
                    p.push('{');
                    p.push_str(n);
                    p.push('}');
                }
                Segment::Wildcard(n) => {
                    p.push_str("{*");
                    p.push_str(n);
                    p.push('}');
                }
            }
        }
        p
    }

    /// The named values if `segments` (a normalised request path) matches.
    pub fn matches(&self, segments: &[String]) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(l) => {
                    if segments.get(i)? != l {
                        return None;
                    }
                }
                Segment::Param(name) => params.push((name.clone(), segments.get(i)?.clone())),
                Segment::Wildcard(name) => {
                    let rest = segments.get(i..).filter(|r| !r.is_empty())?;
                    params.push((name.clone(), rest.join("/")));
                    return Some(params);
                }
            }
        }
        (segments.len() == self.segments.len()).then_some(params)
    }

    /// Whether some request could match both patterns.
    pub fn overlaps(&self, other: &RoutePattern) -> bool {
        let methods_meet = match (&self.method, &other.method) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        methods_meet && segments_overlap(&self.segments, &other.segments)
    }
}

fn segments_overlap(a: &[Segment], b: &[Segment]) -> bool {
    match (a.first(), b.first()) {
        // Both end together, or a wildcard (one or more segments) meets anything non-empty.
        (None, None)
        | (Some(Segment::Wildcard(_)), Some(_))
        | (Some(_), Some(Segment::Wildcard(_))) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x != y => false,
        (Some(_), Some(_)) => segments_overlap(&a[1..], &b[1..]),
    }
}

/// Splits a request path under `/exec` into decoded segments, refusing
/// traversal tricks. `None` when the path is not under `/exec/` at all.
pub fn normalize_request_path(raw: &str) -> Option<Result<Vec<String>, RouteError>> {
    let rest = raw.strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut out = Vec::new();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let Ok(decoded) = percent_encoding::percent_decode_str(seg).decode_utf8() else {
            return Some(Err(RouteError::BadEncoding));
        };
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\', '\0']) {
            return Some(Err(RouteError::Traversal(seg.chars().take(64).collect())));
        }
        if out.len() == MAX_SEGMENTS * 4 {
            return Some(Err(RouteError::TooLong));
        }
        out.push(decoded.into_owned());
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(method: Option<&str>, path: &str) -> RoutePattern {
        Route {
            method: method.map(str::to_owned),
            path: path.to_owned(),
        }
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_valid_patterns() {
        let p = pat(Some("post"), "/exec/users/{id}/files/{*rest}");
        assert_eq!(p.method.as_deref(), Some("POST"));
        assert_eq!(p.segments.len(), 4);
        assert_eq!(p.path(), "/exec/users/{id}/files/{*rest}");
        assert_eq!(pat(Some("any"), "/exec/x").method, None);
        assert_eq!(
            pat(Some("patch"), "/exec/x").method.as_deref(),
            Some("PATCH")
        );
        for empty in ["/exec/", "/exec//x", "/exec/x/"] {
            let route = Route {
                method: None,
                path: empty.to_owned(),
            };
            assert_eq!(route.parse(), Err(RouteError::EmptySegment), "{empty}");
        }
        for typo in ["GTE", "FETCH", "G3T", "PO ST"] {
            let route = Route {
                method: Some(typo.to_owned()),
                path: "/exec/x".to_owned(),
            };
            assert!(
                matches!(route.parse(), Err(RouteError::BadMethod(_))),
                "{typo:?}"
            );
        }
        assert_eq!(
            Route::from_cli("GET /exec/a/{b}").unwrap().to_string(),
            "GET /exec/a/{b}"
        );
        assert_eq!(Route::from_cli("/exec/a").unwrap().method, None);
    }

    #[test]
    fn refuses_invalid_patterns() {
        for (m, p) in [
            (None, "/users"),
            (None, "/exec"),
            (None, "/exec/"),
            (None, "/exec//a"),
            (None, "/exec/a/../b"),
            (None, "/exec/./a"),
            (None, "/exec/{*rest}/more"),
            (None, "/exec/{id}/{id}"),
            (None, "/exec/{}"),
            (None, "/exec/{1x}"),
            (None, "/exec/a%2Fb"),
            (None, "/exec/a b"),
            (Some("GE T"), "/exec/a"),
            (Some("GET1"), "/exec/a"),
        ] {
            let r = Route {
                method: m.map(str::to_owned),
                path: p.to_owned(),
            };
            assert!(r.parse().is_err(), "{m:?} {p}");
        }
        let long = format!("/exec{}", "/a".repeat(40));
        assert_eq!(
            Route {
                method: None,
                path: long
            }
            .parse(),
            Err(RouteError::TooLong)
        );
    }

    #[test]
    fn detects_overlaps_table() {
        let cases = [
            (
                (Some("GET"), "/exec/users/{id}"),
                (Some("GET"), "/exec/users/me"),
                true,
            ),
            (
                (Some("GET"), "/exec/users/{id}"),
                (Some("POST"), "/exec/users/{id}"),
                false,
            ),
            (
                (None, "/exec/users/{id}"),
                (Some("POST"), "/exec/users/{x}"),
                true,
            ),
            ((None, "/exec/a/{x}"), (None, "/exec/a/{y}/b"), false),
            ((None, "/exec/a/x"), (None, "/exec/a/{p}/y"), false),
            (
                (None, "/exec/files/{*rest}"),
                (None, "/exec/files/a/b/c"),
                true,
            ),
            ((None, "/exec/files/{*rest}"), (None, "/exec/files"), false),
            ((None, "/exec/{a}/x"), (None, "/exec/y/{b}"), true),
            ((None, "/exec/{*all}"), (None, "/exec/anything/{x}"), true),
            ((None, "/exec/a"), (None, "/exec/b"), false),
        ];
        for ((m1, p1), (m2, p2), expected) in cases {
            let (a, b) = (pat(m1, p1), pat(m2, p2));
            assert_eq!(a.overlaps(&b), expected, "{p1} vs {p2}");
            assert_eq!(b.overlaps(&a), expected, "symmetry: {p2} vs {p1}");
        }
    }

    #[test]
    fn matches_segments() {
        let segs = |p: &str| normalize_request_path(p).unwrap().unwrap();
        let p = pat(None, "/exec/users/{id}/files/{*rest}");
        assert_eq!(
            p.matches(&segs("/exec/users/7/files/a/b.txt")),
            Some(vec![
                ("id".into(), "7".into()),
                ("rest".into(), "a/b.txt".into())
            ])
        );
        assert_eq!(p.matches(&segs("/exec/users/7/files")), None);
        assert_eq!(p.matches(&segs("/exec/users/7")), None);
        let q = pat(None, "/exec/users/{id}");
        assert_eq!(q.matches(&segs("/exec/users/7/extra")), None);
        assert_eq!(q.matches(&segs("/exec/users/J%C3%BC")).unwrap()[0].1, "Jü");
    }

    #[test]
    fn normalises_request_paths() {
        assert_eq!(normalize_request_path("/api/execute/x"), None);
        assert_eq!(normalize_request_path("/executive"), None);
        assert_eq!(
            normalize_request_path("/exec//users/J%C3%BC//x")
                .unwrap()
                .unwrap(),
            vec!["users", "Jü", "x"]
        );
        for bad in [
            "/exec/a/../b",
            "/exec/a/%2e%2e/b",
            "/exec/a/%2E/b",
            "/exec/a%2Fb",
            "/exec/a%5cb",
            "/exec/a%00",
            "/exec/%FF",
        ] {
            assert!(normalize_request_path(bad).unwrap().is_err(), "{bad}");
        }
    }
}
