//! [`InProcessExecutor`]: an `ExecutorClient` that runs scripts on threads of
//! the calling process. For tests and benchmarks only, never the server
//! default: there is no process to kill, no confinement and no heap cap
//! unless the binary installed and enabled the counting allocator.
//!
//! Invariants:
//! - Scripts run on a fixed set of threads spawned with
//!   [`MIN_SCRIPT_STACK_BYTES`] of stack (not tokio's blocking pool, whose
//!   stack size belongs to whoever built the runtime; deep script recursion
//!   needs a known, large stack). Each thread owns one [`ScriptRuntime`] and
//!   one bounded [`ScriptCache`] keyed by (script id, version).
//! - Only the cooperative limits apply: the wall deadline is checked by the
//!   progress hook every few hundred operations, so a single native call
//!   that never returns (none is known) would hold its thread forever.
//! - A runtime that caught a panic is replaced before the next invocation.
//! - The job queue is unbounded (tests control their load); `status()`
//!   reports its length.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use shared::{
    CompileError, ExecutorClient, ExecutorError, ExecutorStatus, Invocation, InvocationOutput,
    Limits, Outcome,
};
use tokio::sync::oneshot;

use crate::cache::ScriptCache;
use crate::runtime::{MIN_SCRIPT_STACK_BYTES, ScriptRuntime};

/// Compiled scripts each thread keeps.
const DEFAULT_CACHE_CAPACITY: NonZeroUsize = NonZeroUsize::new(128).expect("non-zero");

enum Job {
    Invoke {
        invocation: Invocation,
        queued_at: Instant,
        reply: oneshot::Sender<InvocationOutput>,
    },
    Compile {
        source: String,
        limits: Limits,
        reply: oneshot::Sender<Result<(), CompileError>>,
    },
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU32,
    busy: AtomicU32,
}

/// Runs invocations on a pool of big-stack threads in this process.
#[derive(Debug)]
pub struct InProcessExecutor {
    jobs: Mutex<Sender<Job>>,
    threads: u32,
    counters: Arc<Counters>,
}

impl InProcessExecutor {
    /// An executor with one script thread per available CPU.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self::with_threads(NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN))
    }

    /// An executor with `threads` script threads. Panics if the OS refuses to
    /// start a thread (tests and benchmarks only).
    pub fn with_threads(threads: NonZeroUsize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::new(Counters::default());
        for index in 0..threads.get() {
            let receiver = Arc::clone(&receiver);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name(format!("picloud-script-{index}"))
                .stack_size(MIN_SCRIPT_STACK_BYTES)
                .spawn(move || serve(&receiver, &counters))
                .expect("the OS starts a script thread");
        }
        Self {
            jobs: Mutex::new(sender),
            threads: u32::try_from(threads.get()).unwrap_or(u32::MAX),
            counters,
        }
    }

    fn submit(&self, job: Job) -> Result<(), ExecutorError> {
        let jobs = self
            .jobs
            .lock()
            .map_err(|_| ExecutorError::Internal("job queue poisoned".into()))?;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        jobs.send(job).map_err(|_| {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            ExecutorError::Unavailable("the script threads have stopped".into())
        })
    }
}

impl Default for InProcessExecutor {
    fn default() -> Self {
        Self::new()
    }
}

/// A script thread: takes jobs until the executor is dropped.
fn serve(receiver: &Mutex<Receiver<Job>>, counters: &Counters) {
    let mut runtime = ScriptRuntime::new();
    let mut cache = ScriptCache::new(DEFAULT_CACHE_CAPACITY);
    let mut served: u64 = 0;
    loop {
        // Hold the lock only while waiting for one job.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.busy.fetch_add(1, Ordering::Relaxed);
        if runtime.is_poisoned() {
            runtime = ScriptRuntime::new();
            cache = ScriptCache::new(DEFAULT_CACHE_CAPACITY);
        }
        match job {
            Job::Invoke {
                invocation,
                queued_at,
                reply,
            } => {
                served += 1;
                let queue_wait_us =
                    u64::try_from(queued_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut output = match cache.get_or_compile(&mut runtime, &invocation.script) {
                    Ok((compiled, hit)) => {
                        let mut output =
                            runtime.run(&compiled, &invocation.request, &invocation.script.limits);
                        output.stats.cache_hit = hit;
                        output
                    }
                    Err(err) => {
                        InvocationOutput::failed(Outcome::CompileError, compile_message(&err))
                    }
                };
                output.stats.queue_wait_us = queue_wait_us;
                output.stats.worker_invocations = served;
                // The caller may have given up; nothing to do then.
                let _ = reply.send(output);
            }
            Job::Compile {
                source,
                limits,
                reply,
            } => {
                let _ = reply.send(runtime.compile(&source, &limits).map(drop));
            }
        }
        counters.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

fn compile_message(err: &CompileError) -> String {
    match (err.line, err.column) {
        (Some(line), Some(column)) => format!("{} (line {line}, column {column})", err.message),
        _ => err.message.clone(),
    }
}

#[async_trait]
impl ExecutorClient for InProcessExecutor {
    async fn invoke(&self, invocation: Invocation) -> Result<InvocationOutput, ExecutorError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Invoke {
            invocation,
            queued_at: Instant::now(),
            reply,
        })?;
        answer
            .await
            .map_err(|_| ExecutorError::Internal("a script thread stopped mid-invocation".into()))
    }

    async fn compile_check(
        &self,
        source: &str,
        limits: &Limits,
    ) -> Result<Result<(), CompileError>, ExecutorError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Compile {
            source: source.to_owned(),
            limits: *limits,
            reply,
        })?;
        answer
            .await
            .map_err(|_| ExecutorError::Internal("a script thread stopped mid-compile".into()))
    }

    fn status(&self) -> ExecutorStatus {
        let busy = self.counters.busy.load(Ordering::Relaxed).min(self.threads);
        ExecutorStatus {
            ready: true,
            mode: "in-process".to_owned(),
            workers: self.threads,
            busy,
            idle: self.threads - busy,
            queued: self.counters.queued.load(Ordering::Relaxed),
            spawned_total: u64::from(self.threads),
            recycled_total: 0,
            recycled_by_reason: std::collections::BTreeMap::new(),
            detail: Some("in-process executor: cooperative limits only, no confinement".to_owned()),
        }
    }
}
