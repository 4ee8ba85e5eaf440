//! Budgets: every runaway script ends with a limit outcome, promptly.
//!
//! Time bounds here are generous (the limit plus about a second) because the
//! test VM is noisy; they guard against "never ends", not against jitter.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::time::{Duration, Instant};

use common::{failure, fixture, ok_body, query, run, run_with};
use shared::{InvocationOutput, Limits, Outcome, ScriptRequest};

/// A wall budget short enough for tests, with the default operation budget.
fn short_wall() -> Limits {
    Limits {
        wall_time_ms: 1_000,
        ..Limits::DEFAULTS
    }
}

/// Runs and asserts that it ended within `within`.
fn run_timed(
    source: &str,
    request: &ScriptRequest,
    limits: &Limits,
    within: Duration,
) -> InvocationOutput {
    let started = Instant::now();
    let out = run_with(source, request, limits);
    let elapsed = started.elapsed();
    assert!(
        elapsed < within,
        "took {elapsed:?}: {:?} {:?}",
        out.outcome,
        out.error
    );
    out
}

fn assert_limit(out: &InvocationOutput) {
    assert!(
        matches!(
            out.outcome,
            Outcome::OperationLimit | Outcome::Timeout | Outcome::MemoryLimit
        ),
        "{:?}: {:?}",
        out.outcome,
        out.error
    );
}

#[test]
fn an_empty_loop_hits_the_operation_limit() {
    let limits = Limits {
        operations: 100_000,
        ..Limits::DEFAULTS
    };
    let out = run_with("loop {}", &ScriptRequest::default(), &limits);
    let message = failure(&out, Outcome::OperationLimit);
    assert_eq!(message, "operation limit (100000) exceeded");
    assert_eq!(out.stats.operations, 100_001);
    assert!(out.stats.wall_us > 0 && out.stats.cpu_us > 0);
}

#[test]
fn the_wall_deadline_ends_a_long_loop() {
    let limits = Limits {
        operations: Limits::MAXIMA.operations,
        wall_time_ms: 300,
        ..Limits::DEFAULTS
    };
    let out = run_timed(
        "loop {}",
        &ScriptRequest::default(),
        &limits,
        Duration::from_millis(1_300),
    );
    let message = failure(&out, Outcome::Timeout);
    assert_eq!(message, "wall-clock limit (300 ms) exceeded");
    assert!(out.stats.wall_us >= 300_000);
}

#[test]
fn fixture_01_spin_forever_ends_with_a_limit() {
    let out = run_timed(
        &fixture("01-spin-forever.rhai"),
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(3),
    );
    assert_limit(&out);
}

#[test]
fn fixture_02_spinning_in_callbacks_is_counted() {
    let source = fixture("02-spin-in-callbacks.rhai");
    let limits = Limits {
        operations: 200_000,
        wall_time_ms: 10_000,
        ..Limits::DEFAULTS
    };
    for variant in ["map", "reduce", "sort"] {
        let out = run_timed(
            &source,
            &query(&[("v", variant)]),
            &limits,
            Duration::from_secs(5),
        );
        let message = failure(&out, Outcome::OperationLimit);
        assert!(message.contains("operation limit"), "{variant}: {message}");
        // Our own counter saw the callback operations (Rhai's would not).
        assert!(
            out.stats.operations > 200_000,
            "{variant}: {}",
            out.stats.operations
        );
    }
}

#[test]
fn nested_callbacks_are_counted_too() {
    // E1: Rhai reports ~25 operations for this; the real count is millions.
    let source =
        "let a = []; a.pad(2000, 1); let c = a; a.filter(|x| c.filter(|y| y > x).len() > 0)";
    let limits = Limits {
        operations: 200_000,
        wall_time_ms: 10_000,
        ..Limits::DEFAULTS
    };
    let out = run_timed(
        source,
        &ScriptRequest::default(),
        &limits,
        Duration::from_secs(5),
    );
    failure(&out, Outcome::OperationLimit);
    assert_eq!(out.stats.operations, 200_001);
}

#[test]
fn a_caught_termination_still_ends_the_script() {
    let source = r#"
        fn spin() { loop {} }
        let caught = false;
        try { spin(); } catch { caught = true; }
        loop { print("still running"); }
    "#;
    let limits = Limits {
        operations: 10_000,
        ..Limits::DEFAULTS
    };
    let out = run_with(source, &ScriptRequest::default(), &limits);
    failure(&out, Outcome::OperationLimit);
    assert!(out.logs.is_empty(), "{:?}", out.logs);
}

#[test]
fn fixture_03_one_huge_blob_is_a_size_error() {
    let out = run_timed(
        &fixture("03-one-huge-blob.rhai"),
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(2),
    );
    let message = failure(&out, Outcome::MemoryLimit);
    assert!(message.contains("array/BLOB size limit"), "{message}");
}

#[test]
fn fixture_04_string_doubling_is_a_size_error() {
    let out = run_timed(
        &fixture("04-string-doubling.rhai"),
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(2),
    );
    let message = failure(&out, Outcome::MemoryLimit);
    assert!(
        message.contains("string size limit (1048576 bytes)"),
        "{message}"
    );
}

#[test]
fn fixture_05_nested_array_bomb_is_a_size_error() {
    let out = run_timed(
        &fixture("05-nested-array-bomb.rhai"),
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(2),
    );
    let message = failure(&out, Outcome::MemoryLimit);
    assert!(message.contains("size limit"), "{message}");
}

#[test]
fn fixture_06_deep_recursion_is_a_clean_script_error() {
    let out = run(&fixture("06-deep-recursion.rhai"));
    let message = failure(&out, Outcome::ScriptError);
    assert!(
        message.contains("call depth limit (64) exceeded"),
        "{message}"
    );
}

#[test]
fn heavy_recursion_at_the_maximum_call_depth_fits_the_stack() {
    // The fixture's `heavy` at the platform's maximum call depth (128), on a
    // 64 MiB thread; in a debug build, which needs the most stack per level.
    let max = Limits::MAXIMA.call_depth;
    let limits = Limits {
        call_depth: max,
        ..Limits::DEFAULTS
    };
    let heavy = fixture("06-deep-recursion.rhai")
        .lines()
        .take_while(|line| !line.starts_with("fn unbounded"))
        .collect::<Vec<_>>()
        .join("\n");
    // `heavy(n)` nests n + 1 calls.
    let at_limit = format!("{heavy}\nheavy({})", max - 1);
    assert_eq!(
        ok_body(&run_with(&at_limit, &ScriptRequest::default(), &limits)),
        (max - 1).to_string()
    );
    let over = format!("{heavy}\nheavy({max})");
    let message = failure(
        &run_with(&over, &ScriptRequest::default(), &limits),
        Outcome::ScriptError,
    );
    assert!(
        message.contains("call depth limit (128) exceeded"),
        "{message}"
    );
}

#[test]
fn the_deepest_frames_at_the_maximum_call_depth_fit_the_stack() {
    // Every call level nested as deep as `fn_expr_depth` allows: the most
    // stack per level measured (about 28 MiB in total in a debug build).
    let limits = Limits {
        call_depth: Limits::MAXIMA.call_depth,
        fn_expr_depth: Limits::MAXIMA.fn_expr_depth,
        expr_depth: Limits::MAXIMA.expr_depth,
        ..Limits::DEFAULTS
    };
    let source = format!(
        "fn f(n) {{ if n <= 0 {{ return 0; }} {}f(n - 1){} }} f(126)",
        "if true { ".repeat(14),
        " }".repeat(14)
    );
    assert_eq!(
        ok_body(&run_with(&source, &ScriptRequest::default(), &limits)),
        "0"
    );
}

#[test]
fn fixture_07_log_flood_is_capped_with_a_marker() {
    let out = run_timed(
        &fixture("07-log-flood.rhai"),
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(3),
    );
    assert_eq!(ok_body(&out), "1000");
    assert!(out.logs_truncated);
    let marker = out.logs.last().unwrap();
    assert!(
        marker.starts_with("[log truncated: ") && marker.ends_with(" bytes dropped]"),
        "{marker}"
    );
    assert_eq!(out.stats.log_bytes, Limits::DEFAULTS.log_bytes);
    let kept: usize = out.logs[..out.logs.len() - 1].iter().map(String::len).sum();
    assert_eq!(kept as u64, Limits::DEFAULTS.log_bytes);
}

#[test]
fn quadratic_array_growth_is_bounded_by_the_deadline() {
    // E2: each push re-checks the whole array's size.
    let out = run_timed(
        "let a = []; for i in 0..99000 { a.push(i) } a.len()",
        &ScriptRequest::default(),
        &short_wall(),
        Duration::from_secs(3),
    );
    // Fast machines may finish in time; the point is that it ends promptly.
    if out.outcome != Outcome::Ok {
        assert_limit(&out);
    }
}

#[test]
fn deep_nesting_is_bounded_by_the_deadline() {
    // E3: every level deep-clones and re-checks the whole value.
    for source in [
        "let a = []; for i in 0..99000 { a = [a]; } 1",
        "let m = #{}; for i in 0..99000 { m = #{ a: m }; } 1",
    ] {
        let out = run_timed(
            source,
            &ScriptRequest::default(),
            &short_wall(),
            Duration::from_secs(3),
        );
        assert_limit(&out);
    }
}

#[test]
fn expensive_native_operations_are_bounded() {
    // E4: O(size) work per operation.
    for source in [
        r#"let s = ""; s.pad(1000000, 'x'); loop { s.contains("y"); }"#,
        r#"let s = ""; s.pad(1000000, 'x'); loop { s.to_upper(); }"#,
        "let m = #{}; for i in 0..10000 { m[`k${i}`] = i; } loop { m.to_json(); }",
        "let a = []; a.pad(99000, 1); loop { a == a; }",
    ] {
        let out = run_timed(
            source,
            &ScriptRequest::default(),
            &short_wall(),
            Duration::from_secs(3),
        );
        assert_limit(&out);
    }
}

#[test]
fn map_index_assignment_growth_ends() {
    // E5: index assignment bypasses the map size limit; operations still end it.
    let limits = Limits {
        operations: 1_000_000,
        ..short_wall()
    };
    let out = run_timed(
        "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
        &ScriptRequest::default(),
        &limits,
        Duration::from_secs(3),
    );
    assert_limit(&out);
}

#[test]
fn amplifying_builtins_are_refused_before_allocating() {
    // E6: `replace` with a long substitute, `split("")` on a long string.
    for source in [
        r#"let t = ""; t.pad(1000000, 'x'); let s = ""; s.pad(100, 'a'); s.replace("a", t); s.len()"#,
        r#"let t = ""; t.pad(1000, 'x'); let s = ""; s.pad(1000000, 'a'); s.replace('a', t); s.len()"#,
        r#"let s = ""; s.pad(1000000, 'a'); s.split("").len()"#,
        r#"let s = ""; s.pad(1000000, 'a'); s.to_chars().len()"#,
        r#"let s = ""; s.pad(400000, 'a'); s.replace("", "--"); s.len()"#,
        r#"let s = ""; s.pad(100000, '&'); s.replace("&", "a&"); form_decode(s).len()"#,
    ] {
        let out = run_timed(
            source,
            &ScriptRequest::default(),
            &short_wall(),
            Duration::from_secs(2),
        );
        let message = failure(&out, Outcome::MemoryLimit);
        assert!(message.contains("size limit"), "{source}: {message}");
    }
    // Within the limits they behave like Rhai's own.
    assert_eq!(
        ok_body(&run(r#"let s = "a,b,,c"; s.split(",").len()"#)),
        "4"
    );
    assert_eq!(
        ok_body(&run(r#"let s = "hello"; s.replace("l", "L"); s"#)),
        "heLLo"
    );
    assert_eq!(ok_body(&run(r#""a b  c".split().len()"#)), "3");
    assert_eq!(
        ok_body(&run(r#""a-b-c".split_rev("-", 2)"#)),
        r#"["c","a-b"]"#
    );
}

#[test]
fn error_messages_are_truncated() {
    // E8: the parse error would embed the whole 1 MB input.
    let out = run(r#"let s = ""; s.pad(1000000, '9'); s += "x"; parse_int(s)"#);
    let message = failure(&out, Outcome::ScriptError);
    assert!(
        message.len() <= executor_core::MAX_MESSAGE_BYTES + 3,
        "{}",
        message.len()
    );
    let out = run(r#"let s = ""; s.pad(1000000, 'x'); throw s"#);
    let message = failure(&out, Outcome::ScriptError);
    assert!(
        message.len() <= executor_core::MAX_MESSAGE_BYTES + 3,
        "{}",
        message.len()
    );
}

#[test]
fn an_oversized_response_is_an_output_limit() {
    let limits = Limits {
        response_bytes: 1_000,
        ..Limits::DEFAULTS
    };
    for source in [
        r#"let s = ""; s.pad(2000, 'x'); s"#,
        r#"let a = []; a.pad(500, "xx"); a"#,
        r#"let s = ""; s.pad(2000, 'x'); response(200, s)"#,
    ] {
        let out = run_with(source, &ScriptRequest::default(), &limits);
        let message = failure(&out, Outcome::OutputLimit);
        assert!(message.contains("1000 bytes"), "{message}");
    }
}

#[test]
fn per_value_limits_follow_the_script_limits() {
    let limits = Limits {
        string_bytes: 100,
        array_len: 10,
        map_len: 5,
        variables: 5,
        ..Limits::DEFAULTS
    };
    for (source, expected) in [
        (
            r#"let s = ""; s.pad(101, 'x'); s"#,
            "string size limit (100 bytes)",
        ),
        (
            "let a = []; a.pad(11, 0); a",
            "array/BLOB size limit (10 items)",
        ),
        (
            "let m = #{a:1, b:2, c:3}; m += #{d:4, e:5, f:6}; m",
            "object map size limit (5 entries)",
        ),
    ] {
        let message = failure(
            &run_with(source, &ScriptRequest::default(), &limits),
            Outcome::MemoryLimit,
        );
        assert!(message.contains(expected), "{source}: {message}");
    }
    let message = failure(
        &run_with(
            "let a=1; let b=2; let c=3; let d=4; let e=5; let f=6; f",
            &ScriptRequest::default(),
            &limits,
        ),
        Outcome::ScriptError,
    );
    assert!(message.contains("variable limit (5)"), "{message}");
}

#[test]
fn json_documents_are_limited_in_values() {
    let limits = Limits {
        array_len: 100,
        map_len: 10,
        ..Limits::DEFAULTS
    };
    // From a script: more values than the array and map limits allow.
    let source = format!(r#"json_parse("[{}0]")"#, "0,".repeat(200));
    let out = run_with(&source, &ScriptRequest::default(), &limits);
    let message = failure(&out, Outcome::MemoryLimit);
    assert!(
        message.contains("JSON document of more than 110 values"),
        "{message}"
    );
    // From the request: the script never starts.
    let request = ScriptRequest {
        body: format!("[{}0]", "0,".repeat(200)),
        body_is_json: true,
        ..ScriptRequest::default()
    };
    let out = run_with(r#"print("ran"); 1"#, &request, &limits);
    let message = failure(&out, Outcome::MemoryLimit);
    assert!(message.contains("more than 110 values"), "{message}");
    assert!(out.logs.is_empty());
    // Within the allowance both work.
    let small = ScriptRequest {
        body: "[1, 2, 3]".into(),
        body_is_json: true,
        ..ScriptRequest::default()
    };
    assert_eq!(
        ok_body(&run_with("request.json.len()", &small, &limits)),
        "3"
    );
}
