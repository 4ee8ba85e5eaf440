//! Recycling after M invocations, and no zombies.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::collections::HashMap;
use std::time::Duration;

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

#[tokio::test]
async fn a_thousand_invocations_with_m_100_recycle_ten_times_and_leave_no_zombies() {
    let mut cfg = config(2, Isolation::PerScript);
    cfg.max_invocations_per_worker = 100;
    // Exact counts need exact budgets; jitter is covered by the unit tests.
    cfg.recycle_jitter = 0.0;
    let pool = start(cfg).await;
    let zygote = pool.zygote_pid().unwrap();
    let s = script(r#"request.query["i"]"#);
    let mut served_by: HashMap<u32, u64> = HashMap::new();
    for i in 0..1000 {
        let i = i.to_string();
        let out = pool.invoke(invocation(&s, &[("i", &i)])).await.unwrap();
        assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
        assert_eq!(body(&out), i);
        let pid = out.stats.worker_pid.unwrap();
        let n = served_by.entry(pid).or_default();
        *n += 1;
        assert_eq!(
            out.stats.worker_invocations, *n,
            "the pool counts per worker"
        );
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.recycled_max_invocations, 10, "{metrics:?}");
    assert_eq!(metrics.crashed, 0);
    assert!(served_by.values().all(|n| *n == 100), "{served_by:?}");
    assert_eq!(pool.status().recycled_total, 10);

    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    let mut zombies = zombies_of(zygote);
    for _ in 0..100 {
        if zombies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        zombies = zombies_of(zygote);
    }
    assert!(zombies.is_empty(), "zombies under the zygote: {zombies:?}");
    assert_eq!(children_named(zygote, "picloud-worker").len(), 2);

    pool.shutdown().await;
    let me = std::process::id();
    assert!(zombies_of(me).is_empty(), "zombies under the test process");
    assert!(
        children_named(me, "picloud-zygote").is_empty(),
        "the zygote is gone"
    );
    assert!(!std::path::Path::new(&format!("/proc/{zygote}")).exists());
}
