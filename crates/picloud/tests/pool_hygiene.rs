//! What a worker process looks like from outside, how the pool recycles by
//! memory and CPU, and how an allocation-failure abort is classified.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod pool_common;

use std::path::PathBuf;
use std::time::Duration;

use pool_common::*;
use sandbox::{Isolation, Pool, PoolConfig};
use shared::{ExecutorClient, Outcome};

fn fd_targets(pid: u32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap();
            let target = std::fs::read_link(e.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (n, target)
        })
        .collect();
    fds.sort();
    fds
}

#[tokio::test]
async fn workers_have_a_name_no_environment_and_only_their_socket() {
    let pool = start(config(1, Isolation::PerScript)).await;
    let zygote = pool.zygote_pid().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{zygote}/comm"))
            .unwrap()
            .trim(),
        "picloud-zygote"
    );
    let workers = children_named(zygote, "picloud-worker");
    assert_eq!(workers.len(), 1, "the worker reads `picloud-worker` in ps");
    let worker = workers[0];

    // The test runs as root (as CI does); a non-dumpable worker's /proc
    // entries need that to be read.
    let environ = std::fs::read(format!("/proc/{worker}/environ")).unwrap();
    assert!(
        environ.is_empty(),
        "environment: {:?}",
        String::from_utf8_lossy(&environ)
    );

    let fds = fd_targets(worker);
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[0].1, "/dev/null");
    assert_eq!(fds[1].1, "/dev/null");
    assert!(fds[2].1.starts_with("pipe:"), "stderr is a pipe: {fds:?}");
    assert!(
        fds[3].1.starts_with("socket:"),
        "fd 3 is the socket: {fds:?}"
    );

    // Its own session (setsid): the session id is its pid.
    let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let session: u32 = after.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, worker);

    // The socket is unnamed: it appears in no listing of bound Unix sockets.
    let inode = fds[3]
        .1
        .trim_start_matches("socket:[")
        .trim_end_matches(']')
        .to_owned();
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    let line = unix
        .lines()
        .find(|l| l.split_whitespace().nth(6) == Some(inode.as_str()));
    if let Some(line) = line {
        assert_eq!(
            line.split_whitespace().count(),
            7,
            "the socket has a path: {line}"
        );
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn workers_are_recycled_past_the_memory_high_water_mark() {
    let mut cfg = config(1, Isolation::Shared);
    // Every worker's resident set is above 1 MiB (the binary alone is), so
    // it is recycled at its first RSS check; a tiny script's heap does not
    // trigger an early check.
    cfg.rss_high_water_bytes = 1024 * 1024;
    let pool = start(cfg).await;
    let s = script("1");
    let mut pids = Vec::new();
    for _ in 0..16 {
        let out = pool.invoke(invocation(&s, &[])).await.unwrap();
        assert_eq!(out.outcome, Outcome::Ok);
        pids.push(out.stats.worker_pid.unwrap());
    }
    assert_eq!(
        pool.metrics().recycled_rss,
        2,
        "checked every 8 invocations"
    );
    assert_eq!(pids[0], pids[7]);
    assert_ne!(pids[7], pids[8]);
    pool.shutdown().await;
}

#[tokio::test]
async fn workers_are_recycled_before_their_lifetime_cpu_limit() {
    let mut cfg = config(1, Isolation::Shared);
    cfg.worker_cpu_recycle = Duration::from_micros(1);
    let pool = start(cfg).await;
    let s = script("let n = 0; for i in 0..1000 { n += i } n");
    let a = pool.invoke(invocation(&s, &[])).await.unwrap();
    let b = pool.invoke(invocation(&s, &[])).await.unwrap();
    assert_eq!(body(&a), "499500");
    assert_ne!(a.stats.worker_pid, b.stats.worker_pid);
    assert!(pool.metrics().recycled_cpu >= 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn an_allocation_past_the_hard_cap_is_the_memory_limit() {
    let mut cfg = config(1, Isolation::Shared);
    // The script's soft cap (512 MiB) is far above the worker's hard cap, so
    // the allocator refuses before the runtime's own check: Rust aborts.
    cfg.heap_hard_cap_bytes = 48 * 1024 * 1024;
    let pool = start(cfg).await;
    let hog = script_with(
        r#"let s = "x"; for i in 0..20 { s += s; } let a = []; loop { a.push(s + ""); }"#,
        |l| l.memory_bytes = shared::Limits::MAXIMA.memory_bytes,
    );
    let out = pool.invoke(invocation(&hog, &[])).await.unwrap();
    assert_eq!(out.outcome, Outcome::MemoryLimit, "{out:?}");
    assert!(pool.wait_until_full(Duration::from_secs(5)).await);
    let out = pool.invoke(invocation(&script("2"), &[])).await.unwrap();
    assert_eq!(body(&out), "2");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_host_binary_that_is_not_a_zygote_is_refused_at_start() {
    for exe in ["/bin/true", "/nonexistent/picloud"] {
        let mut cfg = PoolConfig::new(PathBuf::from(exe));
        cfg.workers = 1;
        let err = Pool::start(cfg).await.err().expect("no zygote, no pool");
        assert!(err.to_string().contains("zygote"), "{exe}: {err}");
    }
}
