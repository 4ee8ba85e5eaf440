//! Helpers shared by the integration tests.
#![allow(dead_code)]

use executor_core::ScriptRuntime;
use shared::{InvocationOutput, Limits, Outcome, ScriptRequest};

/// Stack of the threads the tests run scripts on (as the in-process executor).
pub const SCRIPT_STACK: usize = executor_core::MIN_SCRIPT_STACK_BYTES;

/// The text of a hostile fixture.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/fixtures/hostile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A GET request with these query pairs.
pub fn query(pairs: &[(&str, &str)]) -> ScriptRequest {
    ScriptRequest {
        method: "GET".into(),
        path: "/".into(),
        query: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ScriptRequest::default()
    }
}

/// Runs `f` on a thread with a big stack, like the executors do.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SCRIPT_STACK)
        .spawn(f)
        .expect("a test thread starts")
        .join()
        .expect("the script thread does not panic")
}

/// Compiles and runs `source` once.
pub fn run_with(source: &str, request: &ScriptRequest, limits: &Limits) -> InvocationOutput {
    let source = source.to_owned();
    let request = request.clone();
    let limits = *limits;
    on_big_stack(move || {
        let mut runtime = ScriptRuntime::new();
        let script = runtime
            .compile(&source, &limits)
            .unwrap_or_else(|e| panic!("compile error: {e:?}"));
        runtime.run(&script, &request, &limits)
    })
}

pub fn run(source: &str) -> InvocationOutput {
    run_with(source, &ScriptRequest::default(), &Limits::DEFAULTS)
}

/// The response body as text; panics unless the outcome is ok.
pub fn ok_body(out: &InvocationOutput) -> String {
    assert_eq!(out.outcome, Outcome::Ok, "error: {:?}", out.error);
    let response = out.response.as_ref().expect("ok has a response");
    String::from_utf8(response.body.clone()).expect("UTF-8 body")
}

/// The error message; panics unless the outcome is `outcome`.
pub fn failure(out: &InvocationOutput, outcome: Outcome) -> String {
    assert_eq!(out.outcome, outcome, "error: {:?}", out.error);
    assert!(out.response.is_none());
    out.error.clone().expect("a failure has a message")
}

pub fn header<'a>(out: &'a InvocationOutput, name: &str) -> Option<&'a str> {
    out.response
        .as_ref()?
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
