//! Compiling untrusted source: positions, size cap and the time limit.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

use std::time::{Duration, Instant};

use executor_core::ScriptRuntime;
use shared::Limits;

fn compile_timed(source: &str, limits: &Limits) -> (Result<(), shared::CompileError>, Duration) {
    let source = source.to_owned();
    let limits = *limits;
    std::thread::Builder::new()
        .stack_size(executor_core::MIN_SCRIPT_STACK_BYTES)
        .spawn(move || {
            let mut runtime = ScriptRuntime::new();
            let started = Instant::now();
            let result = runtime.compile(&source, &limits).map(drop);
            (result, started.elapsed())
        })
        .expect("a test thread starts")
        .join()
        .expect("compiling does not panic")
}

/// Repeats `piece(i)` until the text would pass `bytes`.
fn repeated(bytes: usize, piece: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    for i in 0.. {
        let next = piece(i);
        if out.len() + next.len() > bytes {
            break;
        }
        out.push_str(&next);
    }
    out
}

#[test]
fn superlinear_parses_stop_at_the_compile_time_limit() {
    // Inputs on which Rhai's parser is superlinear: each took tens of
    // seconds at 1 MiB in a release build before the compile clock.
    let limits = Limits {
        source_bytes: Limits::MAXIMA.source_bytes,
        compile_time_ms: 300,
        ..Limits::DEFAULTS
    };
    let max = usize::try_from(limits.source_bytes).unwrap();
    let sources = [
        format!(
            "let v = 0;{}",
            repeated(max - 20, |i| format!("let x{i} = v;"))
        ),
        format!(
            "fn f({}z) {{ 0 }}",
            repeated(max - 20, |i| format!("p{i},"))
        ),
    ];
    for source in sources {
        let (result, elapsed) = compile_timed(&source, &limits);
        let err = result.unwrap_err();
        assert!(
            err.message.contains("longer than the limit of 300 ms"),
            "{err:?}"
        );
        assert!(elapsed < Duration::from_millis(1_300), "{elapsed:?}");
    }
}

#[test]
fn long_flat_scripts_compile_in_linear_time() {
    // The optimizer (off) was quadratic in the statements of one block.
    let limits = Limits {
        source_bytes: Limits::MAXIMA.source_bytes,
        compile_time_ms: 5_000,
        ..Limits::DEFAULTS
    };
    let source = "x;".repeat(usize::try_from(limits.source_bytes).unwrap() / 2 - 1);
    let (result, elapsed) = compile_timed(&source, &limits);
    assert_eq!(result, Ok(()), "{elapsed:?}");
}

#[test]
fn nesting_is_refused_by_the_depth_limits() {
    for source in [
        format!("{}1{}", "(".repeat(200), ")".repeat(200)),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        format!("{}1", "!".repeat(100_000)),
        format!("fn f() {{ {}1{} }}", "(".repeat(100), ")".repeat(100)),
    ] {
        let (result, _) = compile_timed(&source, &Limits::DEFAULTS);
        let err = result.unwrap_err();
        assert!(err.message.contains("maximum complexity"), "{err:?}");
        assert_eq!(err.line, Some(1));
    }
}

#[test]
fn literals_and_definitions_respect_the_limits() {
    let limits = Limits {
        functions: 2,
        string_bytes: 10,
        ..Limits::DEFAULTS
    };
    let (result, _) = compile_timed("fn a() {} fn b() {} fn c() {}", &limits);
    assert!(result.is_err());
    let (result, _) = compile_timed(r#""a long string literal""#, &limits);
    assert!(result.is_err());
}
