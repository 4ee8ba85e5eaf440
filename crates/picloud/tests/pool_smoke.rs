//! The pool end to end at its simplest: workers forked by a `picloud` zygote run scripts.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::time::Instant;

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

#[tokio::test]
async fn runs_scripts_and_reports_stats() {
    let pool = start(config(2, Isolation::PerScript)).await;
    let s = script(r#"#{ hello: request.query["name"] ?? "world" }"#);
    let t = Instant::now();
    let first = pool
        .invoke(invocation(&s, &[("name", "pi")]))
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Ok, "{first:?}");
    assert_eq!(body(&first), r#"{"hello":"pi"}"#);
    assert!(!first.stats.cache_hit);
    let second = pool.invoke(invocation(&s, &[])).await.unwrap();
    assert_eq!(body(&second), r#"{"hello":"world"}"#);
    assert!(second.stats.cache_hit, "the second run uses the cached AST");
    assert_eq!(second.stats.worker_pid, first.stats.worker_pid);
    assert_eq!(second.stats.worker_invocations, 2);
    let status = pool.status();
    assert!(status.ready, "{status:?}");
    assert_eq!(status.mode, "per-script");
    assert_eq!(status.workers, 2);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    pool.shutdown().await;
    let status = pool.status();
    assert!(!status.ready);
    assert!(status.detail.unwrap().contains("shutting down"));
    let refused = pool.invoke(invocation(&s, &[])).await;
    assert!(
        matches!(refused, Err(shared::ExecutorError::Unavailable(_))),
        "{refused:?}"
    );
}
