//! Workers and the zygote die; callers get a clean error and the pool heals.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::time::{Duration, Instant};

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

/// A worker of `zygote` that is running (state `R`), i.e. busy with a script.
fn running_worker(zygote: u32) -> Option<u32> {
    children_named(zygote, "picloud-worker")
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('R'))
                })
                .unwrap_or(false)
        })
}

#[tokio::test]
async fn a_worker_killed_mid_invocation_fails_only_that_call() {
    let pool = start(config(2, Isolation::PerScript)).await;
    let spin = script_with("loop {}", |l| {
        l.operations = shared::Limits::MAXIMA.operations;
        l.wall_time_ms = 5_000;
    });
    let zygote = pool.zygote_pid().unwrap();
    let started = Instant::now();
    let run = pool.invoke(invocation(&spin, &[]));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut victim = None;
        for _ in 0..100 {
            victim = running_worker(zygote);
            if victim.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = victim.expect("a busy worker");
        signal(victim, libc::SIGKILL);
        victim
    };
    let (out, victim) = tokio::join!(run, kill);
    let out = out.unwrap();
    assert_eq!(out.outcome, Outcome::WorkerCrashed, "{out:?}");
    assert_eq!(out.outcome.http_status(), 502);
    assert!(out.response.is_none());
    let message = out.error.clone().unwrap();
    assert!(!message.is_empty() && !message.contains('/'), "{message}");
    assert_eq!(out.stats.worker_pid, Some(victim));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the crash was noticed late"
    );

    let echo = script(r#"request.query["n"]"#);
    for n in 0..100 {
        let n = n.to_string();
        let out = pool.invoke(invocation(&echo, &[("n", &n)])).await.unwrap();
        assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
        assert_eq!(body(&out), n);
    }
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    assert_eq!(pool.metrics().crashed, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_killed_zygote_is_restarted_and_the_pool_recovers() {
    let pool = start(config(2, Isolation::Shared)).await;
    let echo = script("40 + 2");
    assert_eq!(
        body(&pool.invoke(invocation(&echo, &[])).await.unwrap()),
        "42"
    );
    let old = pool.zygote_pid().unwrap();
    let old_workers = children_named(old, "picloud-worker");
    assert_eq!(old_workers.len(), 2);
    signal(old, libc::SIGKILL);

    let deadline = Instant::now() + Duration::from_secs(15);
    while pool.metrics().zygote_restarts == 0 {
        assert!(Instant::now() < deadline, "no restart: {:?}", pool.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Invocations in the meantime wait (bounded) and then succeed.
    let out = pool.invoke(invocation(&echo, &[])).await.unwrap();
    assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
    assert!(pool.wait_until_full(Duration::from_secs(10)).await);
    let new = pool.zygote_pid().unwrap();
    assert_ne!(new, old);
    assert!(pool.status().ready);
    // The old zygote and its workers are gone and reaped (we are their subreaper).
    for pid in std::iter::once(old).chain(old_workers) {
        let gone = wait_until(|| !std::path::Path::new(&format!("/proc/{pid}")).exists()).await;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(gone, "process {pid} is still there: {stat}");
    }
    pool.shutdown().await;
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
