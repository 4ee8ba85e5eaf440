//! The soak: a mixed load (mostly the examples with their payloads, some
//! hostile fixtures) against one real server for a while, then: no normal
//! request failed, no zombie processes, the server's descriptors and memory
//! did not grow past a small bound after the warm-up, and every invocation
//! has its record. No speed is asserted; the report prints the latency.
//!
//! 30 s by default. `bench/soak/run` runs it in release mode for longer:
//! `PICLOUD_SOAK_SECS`, `PICLOUD_SOAK_RATE` (requests/s offered),
//! `PICLOUD_SOAK_HOSTILE_EVERY` (one request in N is hostile) and
//! `PICLOUD_SOAK_REPORT` (a file for the JSON report).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

#[allow(
    dead_code,
    reason = "shared with the pool benchmark, which uses all of it"
)]
#[path = "../../../bench/pool/src/procfs.rs"]
mod procfs;
#[allow(
    dead_code,
    reason = "shared with the pool benchmark, which uses all of it"
)]
#[path = "../../../bench/pool/src/stats.rs"]
mod stats;

#[path = "../../../bench/soak/driver.rs"]
mod driver;

use std::time::Duration;

use common::{Server, TOKEN};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How much the server may grow between the end of the warm-up and the end.
const FD_GROWTH: u64 = 16;
const RSS_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_load_fails_no_normal_request_and_loses_no_record() {
    let secs = env_u64("PICLOUD_SOAK_SECS", 30);
    let config = driver::Config {
        duration: Duration::from_secs(secs),
        rate: u32::try_from(env_u64("PICLOUD_SOAK_RATE", 40)).unwrap(),
        hostile_every: env_u64("PICLOUD_SOAK_HOSTILE_EVERY", 20),
        warmup: Duration::from_secs((secs / 6).clamp(5, 60)),
        max_outstanding: 256,
    };
    let server = Server::start_with(common::Options {
        env: vec![
            ("PICLOUD_WORKERS".into(), "4".into()),
            // Keep every record of the run: the count is the point.
            ("PICLOUD_RECORDS_KEEP".into(), "100000000".into()),
        ],
        ..common::Options::default()
    });
    let target = driver::Target {
        base: server.base.clone(),
        token: TOKEN.to_owned(),
        pid: server.pid(),
    };
    let report = driver::run(&target, &config).await;
    println!("{}", report.summary());
    let json = serde_json::to_string_pretty(&report).unwrap();
    if let Ok(path) = std::env::var("PICLOUD_SOAK_REPORT") {
        std::fs::write(&path, &json).unwrap();
    }

    assert_eq!(
        report.normal_failures, 0,
        "normal requests failed: {:#?}",
        report.normal_failure_samples
    );
    assert_eq!(
        report.hostile_unexpected, 0,
        "hostile requests ended unexpectedly: {:#?}",
        report.hostile_unexpected_samples
    );
    assert!(report.normal > 0 && report.hostile > 0, "{json}");
    assert_eq!(report.end.zombies, 0, "zombies after the load: {json}");
    assert!(
        report.end.fds <= report.after_warmup.fds + FD_GROWTH,
        "descriptors grew: {json}"
    );
    assert!(
        report.end.rss_kib <= report.after_warmup.rss_kib + RSS_GROWTH_KIB,
        "memory grew: {json}"
    );
    assert_eq!(
        report.records, report.invocations,
        "records written vs invocations made: {json}"
    );
    assert_eq!(
        report.records_dropped["records_dropped"], 0,
        "records dropped: {json}"
    );
    let server_pid = server.pid();
    assert_eq!(server_pid, target.pid);
}
