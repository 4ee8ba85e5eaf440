//! Compile checks run in a worker under a deadline.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::time::{Duration, Instant};

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Limits};

#[tokio::test]
async fn compile_checks_report_errors_with_positions() {
    let pool = start(config(2, Isolation::PerScript)).await;
    let limits = Limits::DEFAULTS;
    assert_eq!(
        pool.compile_check("let x = 1;\nx + 1", &limits)
            .await
            .unwrap(),
        Ok(())
    );
    let err = pool
        .compile_check("let x = 1;\nlet = ;", &limits)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.line, Some(2), "{err:?}");
    assert!(err.column.is_some(), "{err:?}");
    // Compile workers are never reused for scripts in per-script mode.
    assert!(pool.metrics().recycled_isolation >= 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_slow_compile_is_rejected_with_a_clear_message() {
    let pool = start(config(2, Isolation::Shared)).await;
    let mut limits = Limits::DEFAULTS;
    limits.compile_time_ms = 1;
    // ~250 KiB of statements: more than 1 ms to parse. Whether the worker
    // notices after parsing or the pool kills it first, the source is refused.
    let source = "let x = 1 + 2 * (3 - 4) / 5;\n".repeat(8_500);
    assert!(source.len() as u64 <= limits.source_bytes);
    let err = pool
        .compile_check(&source, &limits)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.message.contains("compile time limit of 1 ms exceeded")
            || err.message.contains("longer than the limit of 1 ms"),
        "{err:?}"
    );
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    assert_eq!(
        pool.compile_check("1", &Limits::DEFAULTS).await.unwrap(),
        Ok(())
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_compile_that_does_not_answer_in_time_is_killed() {
    let pool = start(config(1, Isolation::Shared)).await;
    let zygote = pool.zygote_pid().unwrap();
    let workers = children_named(zygote, "picloud-worker");
    assert_eq!(workers.len(), 1);
    // A stopped worker cannot answer: only the pool's deadline ends the compile.
    signal(workers[0], libc::SIGSTOP);
    let mut limits = Limits::DEFAULTS;
    limits.compile_time_ms = 200;
    let started = Instant::now();
    let err = pool
        .compile_check("1 + 1", &limits)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.message, "compile time limit of 200 ms exceeded");
    assert_eq!((err.line, err.column), (None, None));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pool.metrics().killed_timeout, 1);
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    assert_eq!(
        pool.compile_check("1", &Limits::DEFAULTS).await.unwrap(),
        Ok(())
    );
    pool.shutdown().await;
}
