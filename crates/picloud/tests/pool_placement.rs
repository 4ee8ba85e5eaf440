//! Worker placement: with pinning on, the zygote binds each worker to one
//! CPU and spreads them; with it off, workers may run anywhere the server may.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use pool_common::*;
use sandbox::Isolation;
use shared::{ExecutorClient, Outcome};

/// The CPUs a process may run on, from `/proc/<pid>/status`.
fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Runs invocations until `n` distinct workers answered; their pids.
async fn worker_pids(pool: &sandbox::Pool, n: usize) -> Vec<u32> {
    let s = script("#{ ok: true }");
    let mut pids = Vec::new();
    for _ in 0..200 {
        let calls: Vec<_> = (0..n).map(|_| pool.invoke(invocation(&s, &[]))).collect();
        for out in futures_util::future::join_all(calls).await {
            let out = out.unwrap();
            assert_eq!(out.outcome, Outcome::Ok, "{out:?}");
            let pid = out.stats.worker_pid.unwrap();
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        if pids.len() >= n {
            break;
        }
    }
    pids
}

#[tokio::test]
async fn pinned_workers_are_spread_one_per_cpu() {
    let own = cpus_allowed(std::process::id());
    let cpus = std::thread::available_parallelism().unwrap().get();
    if cpus < 2 {
        eprintln!("skipped: needs two CPUs, this process may use {own}");
        return;
    }
    let mut config = config(2, Isolation::Shared);
    config.pin_workers = true;
    let pool = start(config).await;
    let pids = worker_pids(&pool, 2).await;
    assert_eq!(pids.len(), 2, "both workers answered");
    let placed: Vec<String> = pids.iter().map(|&p| cpus_allowed(p)).collect();
    for cpu in &placed {
        assert!(
            cpu.parse::<usize>().is_ok(),
            "pinned to one CPU: {placed:?}"
        );
    }
    assert_ne!(placed[0], placed[1], "two workers, two CPUs: {placed:?}");
    pool.shutdown().await;

    let mut config = pool_common::config(2, Isolation::Shared);
    config.pin_workers = false;
    let pool = start(config).await;
    for pid in worker_pids(&pool, 2).await {
        assert_eq!(cpus_allowed(pid), own, "unpinned workers float");
    }
    pool.shutdown().await;
}

mod common;

/// The `Cpus_allowed_list` of each thread of `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_owned();
            out.push(cpus);
        }
    }
    out
}

#[tokio::test]
async fn the_server_pins_one_async_thread_per_cpu_unless_told_not_to() {
    let own = cpus_allowed(std::process::id());
    if std::thread::available_parallelism().unwrap().get() < 2 {
        eprintln!("skipped: needs two CPUs, this process may use {own}");
        return;
    }
    let start = |pinning: &str| {
        common::Server::start_with(common::Options {
            env: vec![
                ("PICLOUD_WORKERS".into(), "2".into()),
                ("PICLOUD_CPU_PINNING".into(), pinning.into()),
            ],
            ..common::Options::default()
        })
    };
    let server = start("auto");
    // Each async thread pins itself the first time it goes idle.
    let started = std::time::Instant::now();
    loop {
        let threads = threads_named(server.pid(), "tokio-rt-worker");
        let mut pinned: Vec<&String> = threads
            .iter()
            .filter(|c| c.parse::<usize>().is_ok())
            .collect();
        pinned.sort();
        pinned.dedup();
        if pinned.len() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "async threads on distinct CPUs: {threads:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.stop();

    let server = start("0");
    let threads = threads_named(server.pid(), "tokio-rt-worker");
    assert!(!threads.is_empty());
    assert!(threads.iter().all(|c| *c == own), "{threads:?}");
    server.stop();
}
