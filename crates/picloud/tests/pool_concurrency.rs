//! Many callers at once, and callers that go away mid-invocation: nobody
//! hangs and nobody ever gets another caller's answer.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::sync::Arc;
use std::time::Duration;

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

const ECHO: &str = r#"
    let token = request.query["token"];
    let s = 0;
    for i in 0..2000 { s += i; }
    #{ token: token, s: s }
"#;

#[tokio::test]
async fn sixty_four_callers_on_two_workers_all_succeed_or_get_503() {
    let mut cfg = config(2, Isolation::Shared);
    cfg.queue_capacity = 16;
    cfg.queue_timeout = Duration::from_secs(1);
    let pool = start(cfg).await;
    let s = script(ECHO);
    let mut tasks = Vec::new();
    for n in 0..64 {
        let pool = Arc::clone(&pool);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let token = format!("caller-{n}-{}", shared::InvocationId::new());
            let out = pool
                .invoke(invocation(&s, &[("token", &token)]))
                .await
                .unwrap();
            (token, out)
        }));
    }
    let all = tokio::time::timeout(
        Duration::from_mins(1),
        futures_util::future::join_all(tasks),
    )
    .await
    .expect("no caller hangs");
    let (mut ok, mut overloaded) = (0, 0);
    for joined in all {
        let (token, out) = joined.unwrap();
        match out.outcome {
            Outcome::Ok => {
                let v: serde_json::Value = serde_json::from_str(&body(&out)).unwrap();
                assert_eq!(
                    v["token"],
                    token.as_str(),
                    "a caller got another caller's response"
                );
                ok += 1;
            }
            Outcome::Overloaded => {
                assert_eq!(out.outcome.http_status(), 503);
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {out:?}"),
        }
    }
    assert_eq!(ok + overloaded, 64);
    assert!(ok >= 2, "ok {ok}, overloaded {overloaded}");
    pool.shutdown().await;
}

#[tokio::test]
async fn abandoned_invocations_never_answer_the_next_caller() {
    let pool = start(config(2, Isolation::Shared)).await;
    let slow = script(
        r#"
        let token = request.query["token"];
        let s = 0;
        for i in 0..3000000 { s += 1; }
        #{ token: token }
    "#,
    );
    let fast = script(ECHO);
    for round in 0..5 {
        // The caller disconnects while its script is running.
        let gone = format!("gone-{round}");
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            pool.invoke(invocation(&slow, &[("token", &gone)])),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "round {round}: the slow script finished too soon"
        );
        // Every later caller gets exactly its own answer.
        for k in 0..4 {
            let token = format!("next-{round}-{k}");
            let out = pool
                .invoke(invocation(&fast, &[("token", &token)]))
                .await
                .unwrap();
            assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
            let v: serde_json::Value = serde_json::from_str(&body(&out)).unwrap();
            assert_eq!(v["token"], token.as_str());
        }
    }
    assert_eq!(pool.metrics().killed_abandoned, 5);
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_gives_up_while_queued_leaves_the_queue() {
    let mut cfg = config(1, Isolation::Shared);
    cfg.queue_timeout = Duration::from_secs(5);
    let pool = start(cfg).await;
    let slow = script_with("loop {}", |l| {
        l.operations = shared::Limits::MAXIMA.operations;
        l.wall_time_ms = 1_000;
    });
    let busy = pool.invoke(invocation(&slow, &[]));
    let queued = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = tokio::time::timeout(
            Duration::from_millis(100),
            pool.invoke(invocation(&script("1"), &[])),
        )
        .await;
        assert!(r.is_err(), "it was queued behind the busy worker");
        assert_eq!(pool.status().queued, 0, "the waiter left the queue");
    };
    let (busy, ()) = tokio::join!(busy, queued);
    assert_eq!(busy.unwrap().outcome, Outcome::Timeout);
    let out = pool.invoke(invocation(&script("7"), &[])).await.unwrap();
    assert_eq!(body(&out), "7");
    assert_eq!(pool.status().busy, 0);
    pool.shutdown().await;
}
