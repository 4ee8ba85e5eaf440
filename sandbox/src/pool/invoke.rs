//! One invocation (or compile check) on a leased worker.
//!
//! Invariants: the answer must name this invocation, arrive within the
//! deadline plus the grace, and be shaped right, or the worker is killed and
//! the caller gets a classified failure; the stats the pool owns (pid,
//! served count, queue wait) are the pool's own, never the worker's claim; a
//! worker that might carry anything bad into the next invocation (a limit
//! hit, too many runs, too much CPU or memory) is retired, not reused.

use std::time::{Duration, Instant};

use shared::{CompileError, Invocation, InvocationOutput, Limits, Outcome};

use super::Lease;
use super::handle::WorkerHandle;
use super::metrics::Retirement;
use super::supervisor::DEATH_REPORT_WAIT;
use crate::codec::{CodecError, MAX_FRAME_BYTES};
use crate::config::Isolation;
use crate::death::{KillReason, classify, describe, violation_syscall};
use crate::protocol::{FromWorker, ScriptKey, ToWorkerRef};

/// How often (in invocations) a worker's resident memory is read.
const RSS_CHECK_EVERY: u64 = 8;

/// How an exchange with a worker went wrong.
enum Failure {
    /// The socket closed or failed: the worker is dead or dying.
    Gone,
    /// It broke the protocol.
    Protocol(String),
    /// No answer in time.
    Timeout,
}

impl From<CodecError> for Failure {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Closed | CodecError::Truncated | CodecError::Io(_) => Failure::Gone,
            other => Failure::Protocol(other.to_string()),
        }
    }
}

/// The largest answer an invocation under `limits` can honestly produce:
/// the response body, the log (with per-line overhead), and room for
/// headers and stats. Anything larger is a protocol violation.
fn answer_cap(limits: &Limits) -> usize {
    let bytes = limits
        .response_bytes
        .saturating_add(limits.log_bytes.saturating_mul(2))
        .saturating_add(1024 * 1024);
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .min(MAX_FRAME_BYTES)
}

pub(super) async fn run(lease: &mut Lease, invocation: &Invocation) -> InvocationOutput {
    let shared = lease.shared.clone();
    let config = &shared.config;
    let script = &invocation.script.script;
    let limits = &invocation.script.limits;
    let key = ScriptKey {
        id: script.id,
        version: script.version,
    };
    let worker = lease
        .worker
        .as_mut()
        .expect("a lease holds its worker until it ends");

    if config.isolation == Isolation::PerScript {
        worker.bound = Some(key.id);
    }
    let send_source = !worker.compiled.contains(&key);
    let cpu_before = worker.cpu_total_us;
    worker.in_flight = true;
    worker.served += 1;
    worker.last_used = Instant::now();
    shared
        .counters
        .invocations
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let started = Instant::now();
    let deadline = started + Duration::from_millis(limits.wall_time_ms) + config.kill_grace;
    let exchange = exchange(worker, invocation, key, send_source);
    let result = match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    };
    let result = result.and_then(|answer| {
        checked(answer.output, limits).map(|output| Answer { output, ..answer })
    });

    match result {
        Ok(Answer {
            mut output,
            cpu_total_us,
            retire,
        }) => {
            worker.in_flight = false;
            worker.remember_compiled(key);
            worker.cpu_total_us = cpu_total_us;
            output.stats.worker_pid = Some(worker.pid);
            output.stats.worker_invocations = worker.served;
            let why = if retire {
                Some(Retirement::Crashed)
            } else {
                recycle_reason(worker, &output, config)
            };
            let worker = lease.worker.take().expect("still leased");
            match why {
                Some(why) => shared.retire(lease.key, worker, why),
                None => shared.release(lease.key, worker),
            }
            output
        }
        Err(failure) => {
            let kill = match &failure {
                Failure::Gone => None,
                Failure::Protocol(_) => Some(KillReason::Protocol),
                Failure::Timeout => Some(KillReason::Timeout),
            };
            let mut output =
                failed_output(worker, failure, kill, limits, started, cpu_before).await;
            output.stats.worker_pid = Some(worker.pid);
            output.stats.worker_invocations = worker.served;
            let worker = lease.worker.take().expect("still leased");
            let why = if kill == Some(KillReason::Timeout) {
                Retirement::Timeout
            } else {
                Retirement::Crashed
            };
            shared.retire(lease.key, worker, why);
            output
        }
    }
}

/// A worker's answer to `Run`.
struct Answer {
    output: InvocationOutput,
    cpu_total_us: u64,
    retire: bool,
}

/// Sends `Run` (with the source when the worker may lack it), serves one
/// `NeedSource`, and returns the answer for this invocation.
async fn exchange(
    worker: &mut WorkerHandle,
    invocation: &Invocation,
    key: ScriptKey,
    send_source: bool,
) -> Result<Answer, Failure> {
    let script = &invocation.script.script;
    let limits = &invocation.script.limits;
    worker
        .send(
            &ToWorkerRef::Run {
                invocation: invocation.id,
                script: key,
                limits,
                source: send_source.then_some(script.source.as_str()),
                request: &invocation.request,
            },
            MAX_FRAME_BYTES,
        )
        .await?;
    let cap = answer_cap(limits);
    let mut source_sent = send_source;
    loop {
        match worker.recv(cap).await? {
            FromWorker::NeedSource { invocation: id } if id == invocation.id && !source_sent => {
                source_sent = true;
                let msg = ToWorkerRef::Source {
                    invocation: id,
                    source: &script.source,
                };
                worker.send(&msg, MAX_FRAME_BYTES).await?;
            }
            FromWorker::Done {
                invocation: id,
                output,
                cpu_total_us,
                retire,
            } if id == invocation.id => {
                return Ok(Answer {
                    output,
                    cpu_total_us,
                    retire,
                });
            }
            other => {
                return Err(Failure::Protocol(format!(
                    "unexpected {}",
                    message_name(&other)
                )));
            }
        }
    }
}

/// Kills the worker when the pool has a reason to, waits for its death
/// report and turns it into the caller's output.
async fn failed_output(
    worker: &mut WorkerHandle,
    failure: Failure,
    kill: Option<KillReason>,
    limits: &Limits,
    started: Instant,
    cpu_before: u64,
) -> InvocationOutput {
    if kill.is_some() {
        worker.kill();
    }
    let (report, tail) = worker.death(DEATH_REPORT_WAIT).await;
    if report.death == crate::death::Death::Unknown {
        // No report in time (or not ours to reap): make sure it is gone.
        worker.kill();
    }
    worker.in_flight = false;
    let (outcome, message) = classify(report.death, kill, &tail);
    let detail = match &failure {
        Failure::Protocol(why) => why.clone(),
        Failure::Gone | Failure::Timeout => String::new(),
    };
    tracing::warn!(
        pid = worker.pid,
        outcome = %outcome,
        death = %describe(report.death),
        detail = %detail,
        stderr = %String::from_utf8_lossy(&tail).trim(),
        "executor pool: worker lost during an invocation"
    );
    let message = match outcome {
        Outcome::Timeout => format!(
            "the script exceeded its wall-clock limit of {} ms",
            limits.wall_time_ms
        ),
        Outcome::SandboxViolation => match violation_syscall(&tail, worker.pid) {
            Some(nr) => format!("{message} (system call {nr})"),
            None => message.to_owned(),
        },
        _ => message.to_owned(),
    };
    let mut output = InvocationOutput::failed(outcome, message);
    output.stats.wall_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    output.stats.cpu_us = report.cpu_us.saturating_sub(cpu_before);
    output
}

/// Checks the shape of a worker's answer; a response past its cap becomes
/// the output-limit outcome.
fn checked(mut output: InvocationOutput, limits: &Limits) -> Result<InvocationOutput, Failure> {
    if (output.outcome == Outcome::Ok) != output.response.is_some() {
        return Err(Failure::Protocol(
            "an answer whose outcome and response disagree".into(),
        ));
    }
    if let Some(response) = &output.response {
        if !(100..=599).contains(&response.status) {
            return Err(Failure::Protocol("an answer with an invalid status".into()));
        }
        if response.body.len() as u64 > limits.response_bytes {
            let stats = output.stats;
            output = InvocationOutput::failed(
                Outcome::OutputLimit,
                format!(
                    "the response exceeded its limit of {} bytes",
                    limits.response_bytes
                ),
            );
            output.stats = stats;
        }
    }
    Ok(output)
}

fn recycle_reason(
    worker: &mut WorkerHandle,
    output: &InvocationOutput,
    config: &crate::config::PoolConfig,
) -> Option<Retirement> {
    if config.isolation == Isolation::PerInvocation {
        return Some(Retirement::Isolation);
    }
    if matches!(
        output.outcome,
        Outcome::Timeout
            | Outcome::OperationLimit
            | Outcome::MemoryLimit
            | Outcome::CpuLimit
            | Outcome::OutputLimit
    ) {
        return Some(Retirement::AfterLimit);
    }
    if worker.served >= worker.recycle_after {
        return Some(Retirement::MaxInvocations);
    }
    if u128::from(worker.cpu_total_us) >= config.worker_cpu_recycle.as_micros() {
        return Some(Retirement::Cpu);
    }
    let heavy = output.stats.peak_heap_bytes > config.rss_high_water_bytes / 4;
    if (heavy || worker.served.is_multiple_of(RSS_CHECK_EVERY))
        && worker
            .rss_bytes()
            .is_some_and(|rss| rss > config.rss_high_water_bytes)
    {
        return Some(Retirement::Rss);
    }
    None
}

fn message_name(msg: &FromWorker) -> &'static str {
    match msg {
        FromWorker::Hello { .. } => "Hello",
        FromWorker::NeedSource { .. } => "NeedSource",
        FromWorker::Done { .. } => "Done (for another invocation)",
        FromWorker::Compiled { .. } => "Compiled",
    }
}

/// Compiles untrusted source in a worker under `compile_time_ms`.
pub(super) async fn compile(
    lease: &mut Lease,
    source: &str,
    limits: &Limits,
) -> Result<(), CompileError> {
    let shared = lease.shared.clone();
    let worker = lease
        .worker
        .as_mut()
        .expect("a lease holds its worker until it ends");
    let id = shared::InvocationId::new();
    worker.in_flight = true;
    worker.last_used = Instant::now();
    let budget = Duration::from_millis(limits.compile_time_ms);
    let exchange = async {
        worker
            .send(
                &ToWorkerRef::Compile {
                    invocation: id,
                    source,
                    limits,
                },
                MAX_FRAME_BYTES,
            )
            .await?;
        match worker.recv(64 * 1024).await? {
            FromWorker::Compiled { invocation, result } if invocation == id => Ok(result),
            other => Err(Failure::Protocol(format!(
                "unexpected {}",
                message_name(&other)
            ))),
        }
    };
    let result = match tokio::time::timeout(budget, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    };
    match result {
        Ok(result) => {
            worker.in_flight = false;
            let worker = lease.worker.take().expect("still leased");
            if shared.config.isolation == Isolation::Shared {
                shared.release(lease.key, worker);
            } else {
                // It has seen untrusted source that belongs to no script: never reuse it.
                shared.retire(lease.key, worker, Retirement::Isolation);
            }
            result.map_err(truncated)
        }
        Err(failure) => {
            let (kill, why) = match failure {
                Failure::Timeout => (KillReason::Timeout, Retirement::Timeout),
                Failure::Protocol(_) | Failure::Gone => (KillReason::Protocol, Retirement::Crashed),
            };
            worker.kill();
            let (report, tail) = worker.death(DEATH_REPORT_WAIT).await;
            worker.in_flight = false;
            let worker = lease.worker.take().expect("still leased");
            shared.retire(lease.key, worker, why);
            let message = if kill == KillReason::Timeout {
                format!(
                    "compile time limit of {} ms exceeded",
                    limits.compile_time_ms
                )
            } else {
                tracing::warn!(
                    death = %describe(report.death),
                    stderr = %String::from_utf8_lossy(&tail).trim(),
                    "executor pool: a worker died compiling a script"
                );
                "the script could not be compiled: the compiler stopped abnormally".to_owned()
            };
            Err(CompileError {
                message,
                line: None,
                column: None,
            })
        }
    }
}

/// Compile messages can quote the source; keep them short.
fn truncated(mut e: CompileError) -> CompileError {
    if e.message.len() > 1024 {
        let mut end = 1024;
        while !e.message.is_char_boundary(end) {
            end -= 1;
        }
        e.message.truncate(end);
    }
    e
}
