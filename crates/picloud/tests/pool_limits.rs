//! Budgets that really bound CPU and the wall clock, in real workers: the
//! worker stops runaway scripts itself, the parent kills one that stops
//! answering, and the pool is full again right after while other requests
//! keep being served.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::time::{Duration, Instant};

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

/// Runs the control script while `hostile` is in flight; both must end.
async fn with_control(
    pool: &sandbox::Pool,
    hostile: shared::Invocation,
) -> (shared::InvocationOutput, Duration) {
    let control = script(&fixture("00-control.rhai"));
    let started = Instant::now();
    let hostile_run = async {
        let out = pool.invoke(hostile).await.unwrap();
        (out, started.elapsed())
    };
    let control_runs = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..5 {
            let t = Instant::now();
            let out = pool.invoke(invocation(&control, &[])).await.unwrap();
            assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
            assert_eq!(body(&out), "ok");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "the control was slow: {:?}",
                t.elapsed()
            );
        }
    };
    let (result, ()) = tokio::join!(hostile_run, control_runs);
    result
}

#[tokio::test]
async fn a_loop_forever_ends_with_the_operation_limit_within_a_second() {
    let pool = start(config(2, Isolation::PerScript)).await;
    // The debug build runs Rhai ~10x slower than release; a 1 M budget keeps
    // this about the limit, not the build. (The default 10 M takes ~0.5 s here.)
    let spin = script_with(&fixture("01-spin-forever.rhai"), |l| {
        l.operations = 1_000_000;
    });
    let (out, took) = with_control(&pool, invocation(&spin, &[])).await;
    assert_eq!(out.outcome, Outcome::OperationLimit, "{out:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(out.stats.operations >= 1_000_000, "{:?}", out.stats);
    assert!(
        pool.wait_until_full(Duration::from_secs(5)).await,
        "the pool refills"
    );
    assert_eq!(
        pool.metrics().recycled_after_limit,
        1,
        "the worker that hit a limit is recycled"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn past_the_wall_clock_it_is_a_504_timeout_within_the_timeout_plus_a_second() {
    let pool = start(config(2, Isolation::PerScript)).await;
    let spin = script_with(&fixture("01-spin-forever.rhai"), |l| {
        l.operations = shared::Limits::MAXIMA.operations;
        l.wall_time_ms = 1_000;
    });
    let (out, took) = with_control(&pool, invocation(&spin, &[])).await;
    assert_eq!(out.outcome, Outcome::Timeout, "{out:?}");
    assert_eq!(out.outcome.http_status(), 504);
    assert!(took >= Duration::from_secs(1), "ended early: {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    pool.shutdown().await;
}

#[tokio::test]
async fn spinning_inside_native_callbacks_is_stopped_the_same_way() {
    let pool = start(config(2, Isolation::PerScript)).await;
    let spin = script_with(&fixture("02-spin-in-callbacks.rhai"), |l| {
        l.operations = 1_000_000;
        l.wall_time_ms = 2_000;
    });
    for variant in ["map", "reduce", "sort"] {
        let (out, took) = with_control(&pool, invocation(&spin, &[("v", variant)])).await;
        assert!(
            matches!(out.outcome, Outcome::OperationLimit | Outcome::Timeout),
            "{variant}: {out:?}"
        );
        assert!(took < Duration::from_secs(3), "{variant} took {took:?}");
        assert!(
            pool.wait_until_full(Duration::from_secs(5)).await,
            "{variant}: refill"
        );
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_stops_answering_is_killed_at_the_deadline_plus_grace() {
    // One worker, so the stopped process is certainly the one running the script.
    let mut cfg = config(1, Isolation::PerScript);
    cfg.kill_grace = Duration::from_millis(300);
    let pool = start(cfg).await;
    let spin = script_with("loop {}", |l| {
        l.operations = shared::Limits::MAXIMA.operations;
        l.wall_time_ms = 1_000;
    });
    let zygote = pool.zygote_pid().expect("a zygote runs");
    let workers = children_named(zygote, "picloud-worker");
    assert_eq!(workers.len(), 1, "{workers:?}");
    let started = Instant::now();
    let run = pool.invoke(invocation(&spin, &[]));
    let stop = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // SIGSTOP: the worker can no longer stop itself; only the parent's kill ends it.
        signal(workers[0], libc::SIGSTOP);
    };
    let (out, ()) = tokio::join!(run, stop);
    let out = out.unwrap();
    let took = started.elapsed();
    assert_eq!(out.outcome, Outcome::Timeout, "{out:?}");
    assert_eq!(out.stats.worker_pid, Some(workers[0]));
    assert!(
        took >= Duration::from_millis(1_300),
        "killed before deadline + grace: {took:?}"
    );
    assert!(took < Duration::from_millis(2_300), "took {took:?}");
    assert_eq!(pool.metrics().killed_timeout, 1);
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    let out = pool
        .invoke(invocation(&script("1 + 1"), &[]))
        .await
        .unwrap();
    assert_eq!(body(&out), "2");
    pool.shutdown().await;
}

#[tokio::test]
async fn memory_bombs_end_cleanly_and_the_worker_is_replaced() {
    let pool = start(config(2, Isolation::PerScript)).await;
    for name in [
        "04-string-doubling.rhai",
        "05-nested-array-bomb.rhai",
        "03-one-huge-blob.rhai",
    ] {
        let bomb = script(&fixture(name));
        let started = Instant::now();
        let out = pool.invoke(invocation(&bomb, &[])).await.unwrap();
        assert!(out.outcome.is_error(), "{name}: {out:?}");
        assert!(
            matches!(
                out.outcome,
                Outcome::MemoryLimit | Outcome::ScriptError | Outcome::OperationLimit
            ),
            "{name}: {out:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(
            pool.wait_until_full(Duration::from_secs(5)).await,
            "{name}: refill"
        );
    }
    let out = pool
        .invoke(invocation(&script(&fixture("00-control.rhai")), &[]))
        .await
        .unwrap();
    assert_eq!(body(&out), "ok");
    pool.shutdown().await;
}
