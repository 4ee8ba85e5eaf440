//! The benchmark's workloads: one Rhai source each, shared by every target
//! (the in-process baseline, the fork+exec server, the pool probe, and the
//! `picloud` server the run script uploads them to), so every target runs
//! byte-for-byte the same script.

use std::sync::Arc;

use shared::{Limits, Script, ScriptId, ScriptRef};

/// A named benchmark script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub name: &'static str,
    pub source: &'static str,
    /// Fixed, so a server's URL for a workload is known before it starts.
    id: u128,
}

pub const HELLO: Workload = Workload {
    name: "hello",
    source: include_str!("../workloads/hello.rhai"),
    id: 0x0000_0000_0000_4000_8000_0000_0000_0001,
};

pub const CPU: Workload = Workload {
    name: "cpu",
    source: include_str!("../workloads/cpu.rhai"),
    id: 0x0000_0000_0000_4000_8000_0000_0000_0002,
};

/// Takes the push-event fixture (`tests/fixtures/payloads/git-push-event.json`)
/// as a JSON POST body.
pub const JSON: Workload = Workload {
    name: "json",
    source: include_str!("../workloads/json.rhai"),
    id: 0x0000_0000_0000_4000_8000_0000_0000_0004,
};

pub const TINY: Workload = Workload {
    name: "tiny",
    source: include_str!("../workloads/tiny.rhai"),
    id: 0x0000_0000_0000_4000_8000_0000_0000_0003,
};

pub const ALL: [Workload; 4] = [HELLO, CPU, JSON, TINY];

impl Workload {
    pub fn by_name(name: &str) -> Option<Workload> {
        ALL.into_iter().find(|w| w.name == name)
    }

    pub fn id(self) -> ScriptId {
        ScriptId(uuid::Uuid::from_u128(self.id))
    }

    /// The script as an executor receives it, under the default limits.
    pub fn script(self) -> Script {
        Script {
            id: self.id(),
            name: self.name.to_owned(),
            version: 1,
            source: self.source.to_owned(),
            ..Script::default()
        }
    }

    pub fn script_ref(self) -> Arc<ScriptRef> {
        Arc::new(ScriptRef {
            script: self.script(),
            limits: Limits::DEFAULTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use executor_core::ScriptRuntime;
    use shared::{Outcome, ScriptRequest};

    use super::*;

    fn run(w: Workload, query: &[(&str, &str)]) -> String {
        run_with_body(w, query, "")
    }

    fn run_with_body(w: Workload, query: &[(&str, &str)], json_body: &str) -> String {
        let mut runtime = ScriptRuntime::new();
        let compiled = runtime
            .compile(w.source, &Limits::DEFAULTS)
            .expect("the workload compiles");
        let request = ScriptRequest {
            method: "GET".into(),
            path: "/".into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: json_body.to_owned(),
            body_is_json: !json_body.is_empty(),
            ..ScriptRequest::default()
        };
        let output = runtime.run(&compiled, &request, &Limits::DEFAULTS);
        assert_eq!(output.outcome, Outcome::Ok, "{:?}", output.error);
        String::from_utf8(output.response.expect("a response").body).expect("UTF-8")
    }

    #[test]
    fn hello_echoes_the_name() {
        assert_eq!(run(HELLO, &[("name", "bench")]), r#"{"hello":"bench"}"#);
        assert_eq!(run(HELLO, &[]), r#"{"hello":"world"}"#);
    }

    #[test]
    fn cpu_sums_the_squares() {
        let expected: i64 = (0..10_000i64).map(|i| i * i).sum();
        assert_eq!(run(CPU, &[]), format!(r#"{{"sum":{expected}}}"#));
    }

    #[test]
    fn json_summarises_the_push_fixture() {
        let body = include_str!("../../../tests/fixtures/payloads/git-push-event.json");
        assert_eq!(
            run_with_body(JSON, &[], body),
            r#"{"branch":"main","commits":2,"files":{"added":1,"modified":4,"removed":1},"pusher":"jdoe","repository":"acme/inventory"}"#
        );
    }

    #[test]
    fn ids_are_distinct_and_names_resolve() {
        for w in ALL {
            assert_eq!(Workload::by_name(w.name), Some(w));
            assert_eq!(ALL.iter().filter(|o| o.id() == w.id()).count(), 1);
        }
        assert_eq!(Workload::by_name("nope"), None);
    }
}
