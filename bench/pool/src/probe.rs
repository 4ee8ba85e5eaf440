//! `probe`: the pool's own costs, measured through its public client in
//! this process (which hosts the zygote, like `picloud` does):
//!
//! - fork-to-ready: a `per-invocation` pool of one worker, so every
//!   invocation retires its worker and the pool forks the next one; the
//!   pool times each spawn from request to the worker's `Hello`.
//! - the IPC round trip: a tiny script invoked through a `shared` pool of
//!   one worker, against the same script on the in-process executor and
//!   run directly on this thread; the difference is the process boundary.
//! - idle worker memory: `smaps_rollup` of fresh workers and of the same
//!   workers after serving invocations, and of the zygote.
//!
//! Workers are confined as in production; the pool's defaults apply except
//! the sizes each measurement needs (stated in the output).

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use executor_core::{InProcessExecutor, ScriptRuntime};
use sandbox::{Isolation, Pool, PoolConfig};
use serde_json::{Value, json};
use shared::{
    ExecutorClient, Invocation, InvocationId, InvocationOutput, Limits, Outcome, ScriptRequest,
};

use crate::procfs::{self, Memory};
use crate::stats::Samples;
use crate::workload::{self, Workload};

const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Worker spawns to time.
    #[arg(long, default_value_t = 500)]
    pub fork_samples: usize,
    /// Invocations to time per executor for the IPC round trip.
    #[arg(long, default_value_t = 5000)]
    pub ipc_samples: usize,
    /// Idle workers whose memory is read.
    #[arg(long, default_value_t = 2)]
    pub memory_workers: usize,
    /// Invocations each measured worker serves before its memory is read again.
    #[arg(long, default_value_t = 500)]
    pub memory_invocations: usize,
}

pub async fn run(args: &ProbeArgs) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let fork = fork_to_ready(&exe, args.fork_samples).await?;
    let ipc = ipc_round_trip(&exe, args.ipc_samples).await?;
    let memory = idle_memory(&exe, args.memory_workers, args.memory_invocations).await?;
    Ok(json!({
        "cpus_allowed": procfs::cpus_allowed(),
        "fork_to_ready_us": fork,
        "ipc": ipc,
        "memory": memory,
    }))
}

fn config(exe: &Path, isolation: Isolation, workers: usize) -> PoolConfig {
    let mut config = PoolConfig::new(exe.to_path_buf());
    config.isolation = isolation;
    config.workers = workers;
    config.per_script_concurrency = workers;
    // Recycling would put spawns inside the timed loops.
    config.max_invocations_per_worker = u64::MAX / 2;
    config
}

async fn start(config: PoolConfig) -> anyhow::Result<Arc<Pool>> {
    let workers = config.workers;
    let pool = Pool::start(config).await.context("starting the pool")?;
    anyhow::ensure!(
        pool.wait_until_full(START_TIMEOUT).await,
        "the pool did not start {workers} workers in {START_TIMEOUT:?}: {:?}",
        pool.status().detail
    );
    Ok(pool)
}

fn invocation(w: Workload, script: &Arc<shared::ScriptRef>) -> Invocation {
    Invocation {
        id: InvocationId::new(),
        script: Arc::clone(script),
        request: request_for(w),
    }
}

fn request_for(w: Workload) -> ScriptRequest {
    ScriptRequest {
        method: "GET".to_owned(),
        path: format!("/run/{}", w.name),
        query: vec![("name".to_owned(), "bench".to_owned())],
        ..ScriptRequest::default()
    }
}

fn ok(output: InvocationOutput) -> anyhow::Result<InvocationOutput> {
    anyhow::ensure!(
        output.outcome == Outcome::Ok,
        "invocation failed: {} {:?}",
        output.outcome,
        output.error
    );
    Ok(output)
}

/// Times `samples` worker spawns of a one-worker `per-invocation` pool.
async fn fork_to_ready(exe: &Path, samples: usize) -> anyhow::Result<Value> {
    let pool = start(config(exe, Isolation::PerInvocation, 1)).await?;
    let script = workload::TINY.script_ref();
    let mut invoke_us = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        ok(pool.invoke(invocation(workload::TINY, &script)).await?)?;
        invoke_us.push(started.elapsed());
        // The next spawn is timed alone, not racing the next invocation.
        anyhow::ensure!(
            pool.wait_until_full(START_TIMEOUT).await,
            "no replacement worker"
        );
    }
    let latencies = pool.ready_latencies();
    pool.shutdown().await;
    // The first spawn started with the pool; keep the ones the loop caused.
    let spawns = Samples::from_durations(latencies.iter().rev().take(samples).copied());
    Ok(json!({
        "spawn": spawns.summary(),
        "invoke_on_fresh_worker": Samples::from_durations(invoke_us).summary(),
    }))
}

/// A tiny script through the pool, the in-process executor, and directly.
async fn ipc_round_trip(exe: &Path, samples: usize) -> anyhow::Result<Value> {
    let w = workload::TINY;
    let script = w.script_ref();
    let warm_up = samples / 10 + 1;

    let pool = start(config(exe, Isolation::Shared, 1)).await?;
    let mut pool_us = Vec::with_capacity(samples);
    let mut worker_wall_us = Vec::with_capacity(samples);
    for i in 0..warm_up + samples {
        let started = Instant::now();
        let output = ok(pool.invoke(invocation(w, &script)).await?)?;
        if i >= warm_up {
            pool_us.push(started.elapsed());
            worker_wall_us.push(output.stats.wall_us);
        }
    }
    pool.shutdown().await;

    let in_process = InProcessExecutor::with_threads(NonZeroUsize::MIN);
    let mut in_process_us = Vec::with_capacity(samples);
    for i in 0..warm_up + samples {
        let started = Instant::now();
        ok(in_process.invoke(invocation(w, &script)).await?)?;
        if i >= warm_up {
            in_process_us.push(started.elapsed());
        }
    }

    let direct_us = tokio::task::spawn_blocking(move || direct_runs(w, warm_up, samples))
        .await
        .context("the direct-run thread")??;

    let pool_us = Samples::from_durations(pool_us);
    let worker_wall_us = Samples::from_micros(worker_wall_us);
    let in_process_us = Samples::from_durations(in_process_us);
    let direct_us = Samples::from_durations(direct_us);
    let diff = |a: &Samples, b: &Samples, p| a.percentile(p).saturating_sub(b.percentile(p));
    Ok(json!({
        "script": w.name,
        "pool_invoke_us": pool_us.summary(),
        "worker_wall_us": worker_wall_us.summary(),
        "in_process_invoke_us": in_process_us.summary(),
        "direct_run_us": direct_us.summary(),
        "round_trip_p50_us": diff(&pool_us, &worker_wall_us, 50),
        "overhead_vs_in_process_p50_us": diff(&pool_us, &in_process_us, 50),
        "overhead_vs_in_process_p99_us": diff(&pool_us, &in_process_us, 99),
    }))
}

/// Runs `w` on this thread's own runtime, with no hand-off at all.
fn direct_runs(w: Workload, warm_up: usize, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let limits = Limits::DEFAULTS;
    let mut runtime = ScriptRuntime::new();
    let compiled = runtime
        .compile(w.source, &limits)
        .context("compiling the workload")?;
    let request = request_for(w);
    let mut times = Vec::with_capacity(samples);
    for i in 0..warm_up + samples {
        let started = Instant::now();
        ok(runtime.run(&compiled, &request, &limits))?;
        if i >= warm_up {
            times.push(started.elapsed());
        }
    }
    Ok(times)
}

/// Memory of fresh idle workers, of the same workers once they served
/// `invocations` hello requests each, and of the zygote.
async fn idle_memory(exe: &Path, workers: usize, invocations: usize) -> anyhow::Result<Value> {
    let pool = start(config(exe, Isolation::Shared, workers)).await?;
    let zygote = pool.zygote_pid().context("no zygote")?;
    let pids = procfs::children_of(zygote);
    anyhow::ensure!(
        pids.len() == workers,
        "expected {workers} workers under the zygote, found {pids:?}"
    );
    let fresh = read_all(&pids)?;
    let zygote_memory = Memory::of(zygote)?;

    // Enough concurrent callers that every worker serves its share.
    let script = workload::HELLO.script_ref();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let pool = Arc::clone(&pool);
        let script = Arc::clone(&script);
        callers.spawn(async move {
            for _ in 0..invocations {
                ok(pool.invoke(invocation(workload::HELLO, &script)).await?)?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = callers.join_next().await {
        done.context("a caller task")??;
    }
    let still = procfs::children_of(zygote);
    let used = read_all(&still)?;
    pool.shutdown().await;
    Ok(json!({
        "workers": workers,
        "fresh_idle": memory_json(&fresh),
        "after_invocations": invocations,
        "used_idle": memory_json(&used),
        "zygote": memory_json(&[zygote_memory]),
    }))
}

fn read_all(pids: &[u32]) -> anyhow::Result<Vec<Memory>> {
    pids.iter().map(|&pid| Memory::of(pid)).collect()
}

/// The median (by PSS) process's memory, and the largest PSS.
fn memory_json(all: &[Memory]) -> Value {
    let mut sorted = all.to_vec();
    sorted.sort_by_key(|m| m.pss);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    json!({
        "processes": all.len(),
        "rss_kib": median.rss,
        "pss_kib": median.pss,
        "private_kib": median.private,
        "max_pss_kib": sorted.last().map_or(0, |m| m.pss),
    })
}
