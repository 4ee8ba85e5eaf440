//! The route table: which script answers `METHOD /exec/...`.
//!
//! Built from the catalog on every change, never on the request path.
//! Routes never overlap (the manager refuses overlapping ones with `409`),
//! so at most one pattern matches a request; patterns are bucketed by their
//! first segment so a lookup compares against a handful, not all of them.
//! A stored route that no longer parses is skipped with a warning rather
//! than taking the table down.

use std::collections::HashMap;
use std::sync::Arc;

use shared::route::{RouteLookup, RoutePattern, Segment};
use shared::{ScriptId, ScriptRef};

#[derive(Default)]
pub struct RouteTable {
    /// Patterns whose first segment is this literal.
    by_first: HashMap<String, Vec<Entry>>,
    /// Patterns that start with a parameter or wildcard.
    open: Vec<Entry>,
}

struct Entry {
    pattern: RoutePattern,
    script: ScriptId,
}

impl RouteTable {
    pub fn build<'a>(scripts: impl Iterator<Item = &'a Arc<ScriptRef>>) -> Self {
        let mut table = Self::default();
        for s in scripts {
            let Some(route) = &s.script.route else {
                continue;
            };
            let pattern = match route.parse() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(script = %s.script.id, route = %route, error = %e, "skipping a stored route that does not parse");
                    continue;
                }
            };
            let entry = Entry {
                pattern,
                script: s.script.id,
            };
            match entry.pattern.segments.first() {
                Some(Segment::Literal(l)) => {
                    table.by_first.entry(l.clone()).or_default().push(entry);
                }
                _ => table.open.push(entry),
            }
        }
        table
    }

    fn candidates<'a>(&'a self, segments: &[String]) -> impl Iterator<Item = &'a Entry> {
        let bucket = segments
            .first()
            .and_then(|f| self.by_first.get(f))
            .map_or(&[][..], Vec::as_slice);
        bucket.iter().chain(self.open.iter())
    }

    pub fn lookup(&self, method: &str, segments: &[String]) -> RouteLookup<ScriptId> {
        let mut allowed = Vec::new();
        for entry in self.candidates(segments) {
            let Some(params) = entry.pattern.matches(segments) else {
                continue;
            };
            match &entry.pattern.method {
                Some(m) if m != method => allowed.push(m.clone()),
                _ => {
                    return RouteLookup::Found {
                        target: entry.script,
                        params,
                        pattern: entry.pattern.to_route().to_string(),
                    };
                }
            }
        }
        if allowed.is_empty() {
            RouteLookup::NotFound
        } else {
            RouteLookup::MethodNotAllowed { allowed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::route::{Route, normalize_request_path};
    use shared::{Limits, Script};

    fn script(route: Option<(&str, &str)>) -> Arc<ScriptRef> {
        Arc::new(ScriptRef {
            script: Script {
                route: route.map(|(m, p)| Route {
                    method: (!m.is_empty()).then(|| m.to_owned()),
                    path: p.to_owned(),
                }),
                ..Script::default()
            },
            limits: Limits::DEFAULTS,
        })
    }

    #[test]
    fn table_driven_lookups() {
        let scripts = [
            script(Some(("GET", "/exec/users/{id}"))),
            script(Some(("", "/exec/files/{*rest}"))),
            script(Some(("POST", "/exec/hooks/github"))),
            script(Some(("", "/exec/{tenant}/status"))),
            script(Some(("GET", "/exec/broken path"))),
            script(None),
        ];
        let table = RouteTable::build(scripts.iter());
        let id = |i: usize| scripts[i].script.id;
        let look = |m: &str, p: &str| table.lookup(m, &normalize_request_path(p).unwrap().unwrap());
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("GET", "/exec/users/42", Some(0)),
            ("GET", "/exec/users/42/", Some(0)),
            ("GET", "//exec/users/42", None),
            ("DELETE", "/exec/files/a/b/c", Some(1)),
            ("POST", "/exec/hooks/github", Some(2)),
            ("GET", "/exec/acme/status", Some(3)),
            ("GET", "/exec/users", None),
            ("GET", "/exec/nothing/here/at/all", None),
            ("GET", "/exec/files", None),
        ];
        for (m, p, want) in cases {
            let got = if p.starts_with("//") {
                None
            } else {
                match look(m, p) {
                    RouteLookup::Found { target, .. } => Some(target),
                    _ => None,
                }
            };
            assert_eq!(got, want.map(id), "{m} {p}");
        }
        match look("PUT", "/exec/users/1") {
            RouteLookup::MethodNotAllowed { allowed } => assert_eq!(allowed, vec!["GET"]),
            other => panic!("{other:?}"),
        }
        match look("GET", "/exec/files/x/y") {
            RouteLookup::Found {
                params, pattern, ..
            } => {
                assert_eq!(params, vec![("rest".to_owned(), "x/y".to_owned())]);
                assert_eq!(pattern, "ANY /exec/files/{*rest}");
            }
            other => panic!("{other:?}"),
        }
    }
}
