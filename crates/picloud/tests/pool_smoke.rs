//! The pool end to end at its simplest: workers forked by a `picloud` zygote run scripts.

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
    eprintln!("two invocations took {:?}; {:?}", t.elapsed(), second.stats);

    let spin = script("loop {}");
    let t = Instant::now();
    let out = pool.invoke(invocation(&spin, &[])).await.unwrap();
    eprintln!(
        "loop: {:?} in {:?}: {:?}",
        out.outcome,
        t.elapsed(),
        out.error
    );
    pool.shutdown().await;
}
