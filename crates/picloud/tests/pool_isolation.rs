//! Isolation modes and per-script concurrency caps, observed through the
//! worker pids the stats report.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

#[tokio::test]
async fn per_script_mode_never_shares_a_worker_between_scripts() {
    let pool = start(config(3, Isolation::PerScript)).await;
    let a = script(r#""a""#);
    let b = script(r#""b""#);
    let (mut pids_a, mut pids_b) = (HashSet::new(), HashSet::new());
    for round in 0..20 {
        // Sequential and concurrent use, so idle workers of the other script exist.
        let (x, y) = tokio::join!(
            pool.invoke(invocation(&a, &[])),
            pool.invoke(invocation(&b, &[]))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(body(&x), "a", "round {round}");
        assert_eq!(body(&y), "b", "round {round}");
        pids_a.insert(x.stats.worker_pid.unwrap());
        pids_b.insert(y.stats.worker_pid.unwrap());
        let x = pool.invoke(invocation(&a, &[])).await.unwrap();
        pids_a.insert(x.stats.worker_pid.unwrap());
    }
    assert!(pids_a.is_disjoint(&pids_b), "a: {pids_a:?}, b: {pids_b:?}");
    pool.shutdown().await;
}

#[tokio::test]
async fn per_script_mode_recycles_another_scripts_idle_worker_when_needed() {
    // One worker: script b can only run once a's idle worker is recycled.
    let pool = start(config(1, Isolation::PerScript)).await;
    let a = script(r#""a""#);
    let b = script(r#""b""#);
    let x = pool.invoke(invocation(&a, &[])).await.unwrap();
    let y = pool.invoke(invocation(&b, &[])).await.unwrap();
    assert_eq!((body(&x).as_str(), body(&y).as_str()), ("a", "b"));
    assert_ne!(x.stats.worker_pid, y.stats.worker_pid);
    assert_eq!(pool.metrics().recycled_isolation, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn per_invocation_mode_never_reuses_a_worker() {
    let pool = start(config(2, Isolation::PerInvocation)).await;
    let a = script(r#""a""#);
    let b = script(r#""b""#);
    let mut pids = HashSet::new();
    for i in 0..30 {
        let s = if i % 3 == 0 { &b } else { &a };
        let out = pool.invoke(invocation(s, &[])).await.unwrap();
        assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
        assert_eq!(out.stats.worker_invocations, 1);
        assert!(!out.stats.cache_hit);
        assert!(
            pids.insert(out.stats.worker_pid.unwrap()),
            "pid repeated at {i}"
        );
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn per_invocation_mode_keeps_spares_ready_but_runs_only_its_workers_at_once() {
    let pool = start(config(1, Isolation::PerInvocation)).await;
    // One worker: one running invocation, and one never-used spare forked ahead.
    let status = pool.status();
    assert_eq!((status.idle, status.busy), (2, 0), "{status:?}");
    let slow = script("let s = 0; for i in 0..200000 { s += i; } s");
    let runs = futures_util::future::join_all((0..3).map(|_| pool.invoke(invocation(&slow, &[]))));
    let watch = async {
        let (mut most_busy, mut saw_queue) = (0, false);
        for _ in 0..5_000 {
            let s = pool.status();
            most_busy = most_busy.max(s.busy);
            saw_queue |= s.queued > 0;
            if s.busy == 0 && s.queued == 0 && saw_queue {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (most_busy, saw_queue)
    };
    let (outputs, (most_busy, saw_queue)) = tokio::join!(runs, watch);
    for out in outputs {
        assert_eq!(out.unwrap().outcome, Outcome::Ok);
    }
    assert!(saw_queue, "three callers on one worker must queue");
    assert_eq!(most_busy, 1, "spares must not raise the concurrency");
    pool.shutdown().await;
}

#[tokio::test]
async fn shared_mode_lets_any_worker_run_any_script() {
    let pool = start(config(1, Isolation::Shared)).await;
    let a = script(r#""a""#);
    let b = script(r#""b""#);
    let x = pool.invoke(invocation(&a, &[])).await.unwrap();
    let y = pool.invoke(invocation(&b, &[])).await.unwrap();
    assert_eq!(x.stats.worker_pid, y.stats.worker_pid);
    assert_eq!(body(&y), "b");
    // Both stay compiled in the one worker's cache.
    let x2 = pool.invoke(invocation(&a, &[])).await.unwrap();
    let y2 = pool.invoke(invocation(&b, &[])).await.unwrap();
    assert!(!x.stats.cache_hit && !y.stats.cache_hit);
    assert!(
        x2.stats.cache_hit && y2.stats.cache_hit,
        "{:?} {:?}",
        x2.stats,
        y2.stats
    );
    assert_eq!((body(&x2).as_str(), body(&y2).as_str()), ("a", "b"));
    assert_eq!(pool.metrics().recycled_isolation, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_hostile_script_at_its_cap_leaves_workers_for_others() {
    let mut cfg = config(2, Isolation::PerScript);
    cfg.per_script_concurrency = 1;
    cfg.queue_timeout = Duration::from_millis(500);
    let pool = start(cfg).await;
    let hostile = script_with("loop {}", |l| {
        l.operations = shared::Limits::MAXIMA.operations;
        l.wall_time_ms = 2_000;
    });
    let control = script(&fixture("00-control.rhai"));
    let flood = async {
        let runs = (0..4).map(|_| pool.invoke(invocation(&hostile, &[])));
        futures_util::future::join_all(runs).await
    };
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..20 {
            let t = Instant::now();
            let out = pool.invoke(invocation(&control, &[])).await.unwrap();
            assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "control waited {:?}",
                t.elapsed()
            );
        }
    };
    let (hostile_results, ()) = tokio::join!(flood, others);
    let outcomes: Vec<Outcome> = hostile_results
        .into_iter()
        .map(|r| r.unwrap().outcome)
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Timeout | Outcome::Overloaded)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&Outcome::Overloaded),
        "the cap turned some away: {outcomes:?}"
    );
    assert!(outcomes.contains(&Outcome::Timeout), "{outcomes:?}");
    pool.shutdown().await;
}
