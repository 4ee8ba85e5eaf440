//! The in-process `ExecutorClient`.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor_core::InProcessExecutor;
use shared::{
    ExecutorClient, Invocation, InvocationId, Limits, Outcome, Script, ScriptId, ScriptRef,
    ScriptRequest,
};

fn script(source: &str, version: u32, limits: Limits) -> Arc<ScriptRef> {
    let now = chrono::Utc::now();
    Arc::new(ScriptRef {
        script: Script {
            id: ScriptId::new(),
            name: "test".into(),
            version,
            source: source.into(),
            created_at: now,
            updated_at: now,
            ..Script::default()
        },
        limits,
    })
}

fn invocation(script: &Arc<ScriptRef>, request: ScriptRequest) -> Invocation {
    Invocation {
        id: InvocationId::new(),
        script: Arc::clone(script),
        request,
    }
}

#[tokio::test]
async fn invokes_and_caches_the_compiled_script() {
    let executor = InProcessExecutor::with_threads(NonZeroUsize::MIN);
    let script = script("request.query.name + \"!\"", 1, Limits::DEFAULTS);
    let first = executor
        .invoke(invocation(&script, common::query(&[("name", "ada")])))
        .await
        .unwrap();
    assert_eq!(common::ok_body(&first), "ada!");
    assert!(!first.stats.cache_hit);
    let second = executor
        .invoke(invocation(&script, common::query(&[("name", "bob")])))
        .await
        .unwrap();
    assert_eq!(common::ok_body(&second), "bob!");
    assert!(second.stats.cache_hit);
    assert_eq!(second.stats.worker_invocations, 2);
    assert_eq!(second.stats.worker_pid, None);
}

#[tokio::test]
async fn a_compile_error_is_an_outcome() {
    let executor = InProcessExecutor::with_threads(NonZeroUsize::MIN);
    let script = script("let x = ;", 1, Limits::DEFAULTS);
    let out = executor
        .invoke(invocation(&script, ScriptRequest::default()))
        .await
        .unwrap();
    assert_eq!(out.outcome, Outcome::CompileError);
    let message = out.error.unwrap();
    assert!(message.contains("line 1, column 9"), "{message}");
}

#[tokio::test]
async fn compile_check_reports_the_position() {
    let executor = InProcessExecutor::with_threads(NonZeroUsize::MIN);
    let ok = executor
        .compile_check("1 + 1", &Limits::DEFAULTS)
        .await
        .unwrap();
    assert_eq!(ok, Ok(()));
    let err = executor
        .compile_check("let a = 1;\n  a +* 2", &Limits::DEFAULTS)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.line, Some(2), "{err:?}");
    assert!(err.column.is_some());
}

#[tokio::test]
async fn a_runaway_script_does_not_block_the_others() {
    let executor = Arc::new(InProcessExecutor::with_threads(
        NonZeroUsize::new(2).unwrap(),
    ));
    let spin = script(
        "loop {}",
        1,
        Limits {
            operations: Limits::MAXIMA.operations,
            wall_time_ms: 1_000,
            ..Limits::DEFAULTS
        },
    );
    let control = script("\"ok\"", 1, Limits::DEFAULTS);
    let runaway = {
        let executor = Arc::clone(&executor);
        tokio::spawn(async move {
            executor
                .invoke(invocation(&spin, ScriptRequest::default()))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let out = executor
        .invoke(invocation(&control, ScriptRequest::default()))
        .await
        .unwrap();
    assert_eq!(common::ok_body(&out), "ok");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let timed_out = runaway.await.unwrap().unwrap();
    assert_eq!(timed_out.outcome, Outcome::Timeout);
    let status = executor.status();
    assert!(status.ready);
    assert_eq!(status.workers, 2);
    assert_eq!(status.mode, "in-process");
}

#[tokio::test]
async fn deep_recursion_at_the_maximum_depth_runs_on_the_script_threads() {
    let executor = InProcessExecutor::with_threads(NonZeroUsize::MIN);
    let limits = Limits {
        call_depth: Limits::MAXIMA.call_depth,
        ..Limits::DEFAULTS
    };
    let deep = script(
        "fn f(n) { if n <= 0 { 0 } else { f(n - 1) + 1 } } f(127)",
        1,
        limits,
    );
    let out = executor
        .invoke(invocation(&deep, ScriptRequest::default()))
        .await
        .unwrap();
    assert_eq!(common::ok_body(&out), "127");
}
