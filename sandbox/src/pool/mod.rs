//! The pool client: [`Pool`] implements [`ExecutorClient`] over pre-forked
//! workers.
//!
//! - `scheduler`: which idle worker serves which request (isolation modes,
//!   per-script caps, the bounded wait queue); pure state under one mutex.
//! - `handle`: the pool's end of one worker.
//! - `supervisor`: the zygote, spawning, death reports, restarts.
//! - `invoke`: one invocation or compile check on a leased worker, with the
//!   deadline, the kill and the classification of deaths.
//! - `metrics`: the counters behind [`PoolMetrics`].
//!
//! Invariants: the scheduler mutex is never held across an `.await` and no
//! worker is dropped while it is held; a worker is leased to one invocation
//! at a time; a lease dropped mid-invocation (caller gone) kills its worker.

mod handle;
mod invoke;
mod metrics;
mod scheduler;
mod supervisor;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shared::{
    CompileError, ExecutorClient, ExecutorError, ExecutorStatus, Invocation, InvocationOutput,
    Limits, Outcome, ScriptId,
};
use tokio::sync::{Notify, oneshot};

pub use metrics::PoolMetrics;

use self::handle::WorkerHandle;
use self::metrics::{Counters, Retirement};
use self::scheduler::{Acquire, Purpose, Refusal, Scheduler};
use crate::config::PoolConfig;
use crate::error::SandboxError;

/// The concurrency key compile checks run under (they belong to no script yet).
const COMPILE_KEY: ScriptId = ScriptId(uuid::Uuid::nil());

/// State shared by the pool's callers and its supervisor.
pub(crate) struct PoolShared {
    config: PoolConfig,
    sched: Mutex<Scheduler<WorkerHandle>>,
    counters: Counters,
    /// Worker handles alive (starting, idle or leased).
    live: Arc<AtomicUsize>,
    /// Wakes the supervisor (a worker left, the pool is closing).
    wake: Arc<Notify>,
    closed: AtomicBool,
    zygote_up: AtomicBool,
    /// The current zygote's pid (0 when none).
    zygote_pid: AtomicU32,
    /// Consecutive workers that failed to start, and when the last one did.
    start_failures: AtomicU32,
    last_start_failure_ms: AtomicU64,
    created: Instant,
    problem: Mutex<Option<String>>,
}

impl PoolShared {
    fn new(config: PoolConfig) -> Arc<Self> {
        let sched = Scheduler::new(
            config.isolation,
            config.workers,
            config.per_script_concurrency,
            config.queue_capacity,
        );
        Arc::new(PoolShared {
            config,
            sched: Mutex::new(sched),
            counters: Counters::default(),
            live: Arc::new(AtomicUsize::new(0)),
            wake: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            zygote_up: AtomicBool::new(false),
            zygote_pid: AtomicU32::new(0),
            start_failures: AtomicU32::new(0),
            last_start_failure_ms: AtomicU64::new(0),
            created: Instant::now(),
            problem: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler<WorkerHandle>> {
        // The scheduler's state stays consistent across a panic in a caller
        // (no method leaves it half-updated on unwind), so poisoning is ignored.
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }

    fn start_failed(&self, why: &str) {
        self.counters.spawn_failures.fetch_add(1, Ordering::Relaxed);
        self.start_failures.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_start_failure_ms.store(now, Ordering::Relaxed);
        self.set_problem(Some(why.to_owned()));
    }

    fn start_succeeded(&self) {
        if self.start_failures.swap(0, Ordering::Relaxed) > 0 {
            self.set_problem(None);
        }
    }

    fn last_start_failure_age(&self) -> Duration {
        let at = Duration::from_millis(self.last_start_failure_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(at)
    }

    /// Returns a healthy worker to the idle set.
    fn release(&self, key: ScriptId, worker: WorkerHandle) {
        let evicted = self.lock().release(key, worker);
        self.evicted(evicted);
    }

    /// Takes a worker out of the pool for good; the supervisor replaces it.
    fn retire(&self, key: ScriptId, worker: WorkerHandle, why: Retirement) {
        self.counters.retired(why);
        // Count the replacement before the worker's live token goes: the
        // supervisor may fork it, and it may say Hello, as soon as the token
        // is dropped; counted after, its arrival would be lost and waiters
        // would wait for a worker that never comes instead of evicting.
        let evicted = self.lock().release_retired(key);
        drop(worker);
        self.evicted(evicted);
    }

    /// A new worker is ready to serve.
    fn add_fresh(&self, worker: WorkerHandle) {
        let evicted = self.lock().add_fresh(worker);
        self.evicted(evicted);
    }

    /// Drops (outside the lock) idle workers the scheduler evicted so another
    /// script can have a fresh one.
    fn evicted(&self, workers: Vec<WorkerHandle>) {
        for worker in workers {
            self.counters.retired(Retirement::Isolation);
            drop(worker);
        }
    }
}

/// A worker leased to one caller. Dropping it returns the worker, or kills
/// it when it may be mid-invocation.
pub(crate) struct Lease {
    shared: Arc<PoolShared>,
    key: ScriptId,
    worker: Option<WorkerHandle>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            if worker.in_flight {
                tracing::warn!(
                    pid = worker.pid,
                    "executor pool: invocation abandoned; killing its worker"
                );
                self.shared.retire(self.key, worker, Retirement::Abandoned);
            } else {
                self.shared.release(self.key, worker);
            }
        }
    }
}

/// A queued request; dropping it (timeout or caller gone) leaves the queue
/// and gives back a worker that was granted in the meantime.
struct Pending {
    shared: Arc<PoolShared>,
    key: ScriptId,
    waiter: u64,
    rx: Option<oneshot::Receiver<WorkerHandle>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        rx.close();
        if let Ok(worker) = rx.try_recv() {
            self.shared.release(self.key, worker);
        } else {
            self.shared.lock().cancel(self.waiter);
        }
    }
}

/// Why no worker was leased.
enum NoWorker {
    Overloaded(String),
    Closed,
}

/// The pre-forked worker pool.
pub struct Pool {
    shared: Arc<PoolShared>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Pool {
    /// Starts the zygote (failing if it cannot) and the supervisor, which
    /// then forks the workers in the background.
    pub async fn start(config: PoolConfig) -> Result<Arc<Pool>, SandboxError> {
        config.validate()?;
        // Orphaned workers (their zygote died) come back to us to be reaped.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "executor pool: cannot become a child subreaper");
        }
        let shared = PoolShared::new(config);
        let zygote = supervisor::start_zygote(&shared).await?;
        shared.zygote_up.store(true, Ordering::SeqCst);
        let task = tokio::spawn(supervisor::supervise(shared.clone(), zygote));
        tracing::info!(
            workers = shared.config.workers,
            isolation = %shared.config.isolation,
            confine = shared.config.confine,
            "executor pool started"
        );
        Ok(Arc::new(Pool {
            shared,
            supervisor: Mutex::new(Some(task)),
        }))
    }

    /// The settings the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Waits until every worker is started and idle (false on timeout).
    pub async fn wait_until_full(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.lock().idle_count() >= self.shared.config.processes() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The pid of the current zygote process, if one is running.
    pub fn zygote_pid(&self) -> Option<u32> {
        let pid = self.shared.zygote_pid.load(Ordering::SeqCst);
        (pid != 0 && self.shared.zygote_up.load(Ordering::SeqCst)).then_some(pid)
    }

    pub fn metrics(&self) -> PoolMetrics {
        self.shared.counters.snapshot()
    }

    /// Fork-to-ready times (spawn request to `Hello`) of recent workers.
    pub fn ready_latencies(&self) -> Vec<Duration> {
        self.shared
            .counters
            .ready_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Stops taking work, fails queued callers, and stops the zygote and every
    /// idle worker. Leased workers finish their invocation and then exit.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let idle = {
            let mut sched = self.shared.lock();
            sched.drain_waiters();
            sched.drain_idle()
        };
        drop(idle);
        self.shared.wake.notify_one();
        let task = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// A worker for `key`. `cap` is the script's own concurrency setting
    /// (`None`: the pool's default); it travels with every invocation, so a
    /// change through the admin API applies from the next call on.
    async fn lease(
        &self,
        key: ScriptId,
        cap: Option<usize>,
        purpose: Purpose,
    ) -> Result<Lease, NoWorker> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(NoWorker::Closed);
        }
        let (acquired, evicted) = {
            let mut sched = shared.lock();
            if purpose == Purpose::Run {
                sched.set_cap(key, cap);
            }
            sched.acquire(key, purpose)
        };
        shared.evicted(evicted);
        let lease = |worker| Lease {
            shared: shared.clone(),
            key,
            worker: Some(worker),
        };
        match acquired {
            Acquire::Granted(worker) => Ok(lease(worker)),
            Acquire::Refused(Refusal::Closed) => Err(NoWorker::Closed),
            Acquire::Refused(Refusal::QueueFull) => {
                let counter = &shared.counters.overloaded_queue_full;
                counter.fetch_add(1, Ordering::Relaxed);
                Err(NoWorker::Overloaded(
                    "all workers are busy and the wait queue is full".to_owned(),
                ))
            }
            Acquire::Refused(Refusal::ScriptQueueFull) => {
                let counter = &shared.counters.overloaded_script_cap;
                counter.fetch_add(1, Ordering::Relaxed);
                Err(NoWorker::Overloaded(
                    "the script is at its concurrency limit and its share of the wait queue is full"
                        .to_owned(),
                ))
            }
            Acquire::Queued { waiter, rx } => {
                let mut pending = Pending {
                    shared: shared.clone(),
                    key,
                    waiter,
                    rx: Some(rx),
                };
                let rx = pending.rx.as_mut().expect("set just above");
                match tokio::time::timeout(shared.config.queue_timeout, rx).await {
                    Ok(Ok(worker)) => {
                        pending.rx = None;
                        Ok(lease(worker))
                    }
                    // The sender was dropped: the pool is closing.
                    Ok(Err(_)) => Err(NoWorker::Closed),
                    Err(_) => {
                        // Drop handles a worker granted at the last moment by releasing it.
                        drop(pending);
                        shared
                            .counters
                            .overloaded_wait
                            .fetch_add(1, Ordering::Relaxed);
                        Err(NoWorker::Overloaded(format!(
                            "no worker became free within {} ms",
                            shared.config.queue_timeout.as_millis()
                        )))
                    }
                }
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Without an explicit shutdown the supervisor still ends (and with it
        // the zygote and its workers).
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

#[async_trait]
impl ExecutorClient for Pool {
    async fn invoke(&self, invocation: Invocation) -> Result<InvocationOutput, ExecutorError> {
        let enqueued = Instant::now();
        let cap = invocation
            .script
            .script
            .concurrency
            .map(|c| usize::try_from(c).unwrap_or(usize::MAX));
        let mut lease = match self
            .lease(invocation.script.script.id, cap, Purpose::Run)
            .await
        {
            Ok(lease) => lease,
            Err(NoWorker::Overloaded(msg)) => {
                let mut output = InvocationOutput::failed(Outcome::Overloaded, msg);
                output.stats.queue_wait_us = micros(enqueued.elapsed());
                return Ok(output);
            }
            Err(NoWorker::Closed) => {
                return Err(ExecutorError::Unavailable(
                    "the executor pool is shutting down".into(),
                ));
            }
        };
        let queue_wait = enqueued.elapsed();
        let mut output = invoke::run(&mut lease, &invocation).await;
        output.stats.queue_wait_us = micros(queue_wait);
        Ok(output)
    }

    async fn compile_check(
        &self,
        source: &str,
        limits: &Limits,
    ) -> Result<Result<(), CompileError>, ExecutorError> {
        let mut lease = match self.lease(COMPILE_KEY, None, Purpose::Compile).await {
            Ok(lease) => lease,
            Err(NoWorker::Overloaded(msg)) => return Err(ExecutorError::Unavailable(msg)),
            Err(NoWorker::Closed) => {
                return Err(ExecutorError::Unavailable(
                    "the executor pool is shutting down".into(),
                ));
            }
        };
        Ok(invoke::compile(&mut lease, source, limits).await)
    }

    fn status(&self) -> ExecutorStatus {
        let shared = &self.shared;
        let (idle, busy, queued) = {
            let s = shared.lock();
            (s.idle_count(), s.busy_count(), s.queued_count())
        };
        let metrics = shared.counters.snapshot();
        let zygote_up = shared.zygote_up.load(Ordering::SeqCst);
        let closed = shared.closed.load(Ordering::SeqCst);
        // In per-invocation mode every used worker leaves at once, so "no
        // worker right now" is normal under load: while workers keep starting
        // fine, a pool that has had them is still ready.
        let refilling = metrics.spawned > 0 && shared.start_failures.load(Ordering::Relaxed) == 0;
        let ready = zygote_up && !closed && (idle + busy > 0 || refilling);
        let problem = shared
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let detail = if closed {
            Some("the executor pool is shutting down".to_owned())
        } else if ready {
            problem
        } else {
            Some(problem.unwrap_or_else(|| "no worker is ready yet".to_owned()))
        };
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ExecutorStatus {
            ready,
            mode: shared.config.isolation.to_string(),
            workers: count(idle + busy),
            busy: count(busy),
            idle: count(idle),
            queued: count(queued),
            spawned_total: metrics.spawned,
            recycled_total: metrics.recycled_total(),
            recycled_by_reason: [
                ("max_invocations", metrics.recycled_max_invocations),
                ("rss", metrics.recycled_rss),
                ("cpu", metrics.recycled_cpu),
                ("isolation", metrics.recycled_isolation),
                ("after_limit", metrics.recycled_after_limit),
            ]
            .into_iter()
            .map(|(reason, n)| (reason.to_owned(), n))
            .collect(),
            detail,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
