#![allow(clippy::unwrap_used)]
mod pool_common;
use std::time::{Duration, Instant};
use pool_common::*;
use sandbox::Isolation;
use shared::ExecutorClient;

fn pct(v: &mut Vec<Duration>, p: f64) -> Duration { v.sort(); v[((v.len() as f64 - 1.0) * p) as usize] }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing() {
    for mode in [Isolation::Shared, Isolation::PerInvocation] {
        let mut cfg = config(2, mode);
        cfg.max_invocations_per_worker = 1_000_000;
        let pool = start(cfg).await;
        let s = script(r#"#{ hello: request.query["name"] }"#);
        let n = if mode == Isolation::Shared { 5000 } else { 2000 };
        let mut lat = Vec::new();
        let t = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            let out = pool.invoke(invocation(&s, &[("name", "x")])).await.unwrap();
            assert!(out.response.is_some());
            lat.push(t0.elapsed());
        }
        let el = t.elapsed();
        eprintln!("{mode}: sequential {n} in {el:?} = {:.0}/s; p50 {:?} p99 {:?}", n as f64 / el.as_secs_f64(), pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        // 16 concurrent
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..16 { let pool = pool.clone(); let s = s.clone(); tasks.push(tokio::spawn(async move { for _ in 0..(n/16) { pool.invoke(invocation(&s, &[("name","x")])).await.unwrap(); } })); }
        for t in tasks { t.await.unwrap(); }
        let el = t.elapsed();
        eprintln!("{mode}: c16 {} in {el:?} = {:.0}/s", n/16*16, (n/16*16) as f64 / el.as_secs_f64());
        let mut ready = pool.ready_latencies();
        eprintln!("{mode}: fork-to-ready n={} p50 {:?} p99 {:?}; {:?}", ready.len(), pct(&mut ready, 0.5), pct(&mut ready, 0.99), pool.metrics());
        pool.shutdown().await;
    }
}
