//! The heap cap, with the counting allocator installed as a worker would.
//!
//! The allocator's counters are process-wide, so the tests in this file run
//! one at a time (they take `SERIAL`), and nothing else runs in this test
//! binary while one of them measures.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{failure, ok_body, run_with};
use executor_core::heap::{self, CountingAllocator};
use executor_core::{MAX_RETAINED_BYTES, ScriptRuntime};
use shared::{Limits, Outcome, ScriptRequest};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::new();

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: u64 = 1024 * 1024;

/// A 16 MiB soft cap, the hard cap far above it (an abort would end the
/// whole test binary).
fn limits() -> Limits {
    Limits {
        memory_bytes: 16 * MIB,
        wall_time_ms: 5_000,
        ..Limits::DEFAULTS
    }
}

fn run_counted(source: &str) -> shared::InvocationOutput {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    heap::enable_counting(4096 * MIB);
    let started = Instant::now();
    let out = run_with(source, &ScriptRequest::default(), &limits());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    out
}

#[test]
fn counting_measures_live_and_peak_bytes() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    heap::enable_counting(4096 * MIB);
    assert!(heap::counting_enabled());
    let before = heap::live_bytes();
    heap::reset_peak();
    let block = vec![1_u8; 8 * 1024 * 1024];
    let during = heap::live_bytes();
    assert!(
        during >= before + 8 * MIB,
        "before {before} during {during}"
    );
    drop(block);
    // Other threads of the test harness may allocate meanwhile: allow 1 MiB.
    let after = heap::live_bytes();
    assert!(after + 7 * MIB <= during, "during {during} after {after}");
    assert!(heap::peak_bytes() >= during);
}

#[test]
fn many_values_each_under_the_size_limits_hit_the_memory_limit() {
    // Rhai's size limits bound each value (containers in total), not their
    // sum: 60 call levels each holding a 1 MB string pass every one of them.
    let source = r#"
        fn hold(n) { let s = ""; s.pad(1000000, 'x'); if n > 0 { hold(n - 1); } s.len() }
        hold(60)
    "#;
    let out = run_counted(source);
    let message = failure(&out, Outcome::MemoryLimit);
    assert_eq!(message, "memory limit (16777216 bytes) exceeded");
    assert!(
        out.stats.peak_heap_bytes >= 16 * MIB,
        "{}",
        out.stats.peak_heap_bytes
    );
}

#[test]
fn many_variables_each_under_the_string_limit_hit_the_memory_limit() {
    // E7: per-value caps do not bound the total.
    let source = r#"
        let all = #{};
        for i in 0..300 { let s = ""; s.pad(1000000, 'x'); all[`v${i}`] = s; }
        all.len()
    "#;
    failure(&run_counted(source), Outcome::MemoryLimit);
}

#[test]
fn map_index_assignment_is_caught_by_the_heap_cap() {
    // E5: index assignment slips past `map_len`; the heap meter does not.
    let source = r#"
        let m = #{};
        let i = 0;
        loop { let s = ""; s.pad(100, 'x'); m[`k${i}`] = s; i += 1; }
    "#;
    failure(&run_counted(source), Outcome::MemoryLimit);
}

#[test]
fn string_doubling_under_the_string_limit_hits_the_memory_limit_or_size_limit() {
    let out = run_counted(r#"let s = "ab"; loop { s += s; }"#);
    assert!(
        matches!(out.outcome, Outcome::MemoryLimit),
        "{:?} {:?}",
        out.outcome,
        out.error
    );
}

#[test]
fn a_small_script_reports_its_peak_and_the_runtime_stays_usable() {
    let out = run_counted(r#"let s = ""; s.pad(100000, 'x'); s.len()"#);
    assert_eq!(ok_body(&out), "100000");
    assert!(
        out.stats.peak_heap_bytes >= 100_000,
        "{}",
        out.stats.peak_heap_bytes
    );
    assert!(out.stats.peak_heap_bytes < 16 * MIB);
}

#[test]
fn the_request_counts_against_the_limit() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    heap::enable_counting(4096 * MIB);
    // 50 000 strings of 40 bytes: within the value allowance, but about
    // 3 MiB once they are Rhai values.
    let item = format!("\"{}\",", "x".repeat(40));
    let body = format!("[{}0]", item.repeat(50_000));
    let request = ScriptRequest {
        body,
        body_is_json: true,
        ..ScriptRequest::default()
    };
    let limits = Limits {
        memory_bytes: MIB,
        ..Limits::DEFAULTS
    };
    let out = run_with("request.json.len()", &request, &limits);
    failure(&out, Outcome::MemoryLimit);
}

#[test]
fn leaked_reference_cycles_poison_the_runtime() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    heap::enable_counting(4096 * MIB);
    common::on_big_stack(|| {
        let mut runtime = ScriptRuntime::new();
        let limits = Limits::DEFAULTS;
        // The closure shares `m`, and `m` holds the closure: a cycle that
        // outlives the function and is never freed.
        let leaky = runtime
            .compile(
                r#"fn leak() { let m = #{}; let f = || m; m.f = f; m.big = ""; m.big.pad(1000000, 'x'); }
                   leak(); "done""#,
                &limits,
            )
            .unwrap();
        let mut runs = 0;
        while !runtime.is_poisoned() {
            let out = runtime.run(&leaky, &ScriptRequest::default(), &limits);
            assert_eq!(ok_body(&out), "done");
            runs += 1;
            assert!(
                runs <= 20,
                "never poisoned: {} bytes retained",
                runtime.retained_bytes()
            );
        }
        assert!(runtime.retained_bytes() > MAX_RETAINED_BYTES);
        assert!(runs >= 4, "poisoned after {runs} runs");
    });
}

#[test]
fn well_behaved_scripts_retain_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    heap::enable_counting(4096 * MIB);
    common::on_big_stack(|| {
        let mut runtime = ScriptRuntime::new();
        runtime.warm_up();
        let limits = Limits {
            operations: 200_000,
            log_bytes: 1_000,
            ..Limits::DEFAULTS
        };
        let sources = [
            r#"let s = ""; s.pad(500000, 'x'); #{ n: s.len(), j: json_parse("[1,2]") }"#,
            r#"for i in 0..100 { print(`line ${i}`); } response(201, "x", #{ "x-a": "b" })"#,
            "let a = []; a.pad(1000, 1); a.map(|x| x + 1).filter(|x| x > 1).len()",
            "let big = []; big.pad(50000, 1); throw big",
            "loop {}",
            r#"let s = ""; s.pad(2000000, 'x'); s"#,
            "fn f(n) { f(n + 1) } f(0)",
            "let x = 1; let f = |y| x + y; f.call(2)",
        ];
        let scripts: Vec<_> = sources
            .iter()
            .map(|source| runtime.compile(source, &limits).unwrap())
            .collect();
        let request = common::query(&[("a", "1")]);
        for _ in 0..20 {
            for script in &scripts {
                drop(runtime.run(script, &request, &limits));
            }
        }
        assert!(!runtime.is_poisoned());
        assert!(
            runtime.retained_bytes() < MIB,
            "{}",
            runtime.retained_bytes()
        );
    });
}
