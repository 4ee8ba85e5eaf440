//! `picloud-loadgen`: sends GET requests to one URL at a fixed offered rate
//! for a fixed time and prints one JSON summary line.
//!
//! Open loop: request `i` is due at `start + i / rate` whether or not earlier
//! ones were answered, so a slow server meets the same load instead of
//! throttling its own benchmark (no coordinated omission). Requests that
//! would exceed `--max-outstanding` are not sent but counted as `skipped`,
//! and how late the generator itself fell behind its timetable is reported,
//! so a run that did not hold the rate says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use tokio::sync::Semaphore;

/// Fixed-rate GET load against one URL.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The URL every request goes to.
    #[arg(long)]
    url: String,
    /// Requests per second offered.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Seconds to offer load for.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Requests in flight at most; more are skipped (and counted).
    #[arg(long, default_value_t = 4096)]
    max_outstanding: usize,
    /// Seconds before one request counts as failed.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Runtime threads of the generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    latencies_us: Vec<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0, "--rate must be positive");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .pool_max_idle_per_host(args.max_outstanding)
        .build()
        .context("building the HTTP client")?;
    let total = u64::from(args.rate) * args.duration_secs;
    let period = Duration::from_secs(1) / args.rate;
    let outstanding = Arc::new(Semaphore::new(args.max_outstanding));
    let tally = Arc::new(Mutex::new(Tally {
        latencies_us: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        ..Tally::default()
    }));
    let mut skipped = 0u64;
    let mut max_lateness = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();

    let start = Instant::now();
    for i in 0..total {
        let due = start
            + period * u32::try_from(i % u64::from(args.rate)).unwrap_or(0)
            + Duration::from_secs(i / u64::from(args.rate));
        tokio::time::sleep_until(due.into()).await;
        max_lateness = max_lateness.max(Instant::now().saturating_duration_since(due));
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let request = client.get(&args.url).send();
        let tally = Arc::clone(&tally);
        tasks.spawn(async move {
            let sent = Instant::now();
            let outcome = match request.await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.bytes().await.map(|_| status)
                }
                Err(e) => Err(e),
            };
            let latency = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(status) => *t.statuses.entry(status).or_insert(0) += 1,
                Err(_) => t.errors += 1,
            }
            t.latencies_us.push(latency);
            drop(permit);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let offered_for = start.elapsed();
    while tasks.join_next().await.is_some() {}

    let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
    t.latencies_us.sort_unstable();
    let sent = total - skipped;
    let percentile = |p: usize| {
        let n = t.latencies_us.len();
        if n == 0 {
            0
        } else {
            t.latencies_us[(p * n).div_ceil(100).max(1) - 1]
        }
    };
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let achieved = sent as f64 / offered_for.as_secs_f64();
    let summary = json!({
        "url": args.url,
        "offered_rate": args.rate,
        "offered": total,
        "sent": sent,
        "skipped": skipped,
        "achieved_rate": (achieved * 10.0).round() / 10.0,
        "offered_for_s": offered_for.as_secs_f64(),
        "max_lateness_ms": max_lateness.as_millis(),
        "statuses": t.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": t.errors,
        "latency_us": { "p50": percentile(50), "p99": percentile(99), "max": t.latencies_us.last().copied().unwrap_or(0) },
    });
    println!("{summary}");
    Ok(())
}
