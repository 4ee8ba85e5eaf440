//! A worker waiting for its next request sleeps once per invocation: it is
//! not woken again when the pool reads its answer (which a reader blocked in
//! `recv` on a stream socket would be, costing a context switch each time).

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

fn voluntary_switches(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_worker_sleeps_once_per_invocation() {
    const INVOCATIONS: u64 = 300;
    let pool = start(config(1, Isolation::Shared)).await;
    let tiny = script(r#""pong""#);
    let first = pool.invoke(invocation(&tiny, &[])).await.unwrap();
    assert_eq!(first.outcome, Outcome::Ok);
    let pid = first.stats.worker_pid.unwrap();

    let before = voluntary_switches(pid);
    for _ in 0..INVOCATIONS {
        let output = pool.invoke(invocation(&tiny, &[])).await.unwrap();
        assert_eq!(output.outcome, Outcome::Ok);
        assert_eq!(output.stats.worker_pid, Some(pid), "no recycling mid-test");
    }
    let slept = voluntary_switches(pid) - before;
    // One wait per request; woken for every answer read it would be near twice that.
    assert!(
        slept <= INVOCATIONS + INVOCATIONS / 10,
        "the worker slept {slept} times for {INVOCATIONS} invocations"
    );
    pool.shutdown().await;
}
