//! Target `script`: arbitrary Rhai source compiled and run in process by
//! the runtime every worker uses ([`ScriptRuntime`]: the same engine, SDK,
//! hooks and warm-up), under [`FUZZ_LIMITS`], with the counting allocator's
//! hard cap at the size a pool gives workers for that memory limit.
//!
//! Scripts run on one long-lived thread with the stack a worker's main
//! thread has (`RLIMIT_STACK` 256 MiB), so a native stack overflow shows up
//! as the crash it would be in a worker, not as an artefact of a small
//! test-thread stack. Checked: no panic while compiling or running (the
//! runtime catches them and reports `worker_crashed`, which counts as a
//! crash here), no allocation past the hard cap (an abort), no `ok` outcome
//! past the operation budget, responses, logs and messages within their
//! caps. A
//! run that ignores its wall deadline shows up as a libFuzzer timeout.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

use executor_core::{MAX_LOG_LINES, MAX_MESSAGE_BYTES, ScriptRuntime, heap};
use shared::{Limits, Outcome, ScriptRequest};

use crate::input::{FUZZ_LIMITS, script_source};

/// The stack of a worker's main thread.
pub const SCRIPT_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Longest error message: the cap plus the ellipsis that marks a cut.
const MESSAGE_CAP: usize = MAX_MESSAGE_BYTES + '…'.len_utf8();

struct Job {
    source: String,
    reply: Sender<Result<(), String>>,
}

/// The counting allocator's hard cap for scripts under `limits`, as a pool
/// sizes it from the memory limit.
pub fn hard_cap(limits: &Limits) -> u64 {
    heap::recommended_hard_cap(limits.memory_bytes)
}

fn executor() -> &'static Mutex<Sender<Job>> {
    static EXECUTOR: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("fuzz-script".into())
            .stack_size(SCRIPT_STACK_BYTES)
            .spawn(move || {
                let mut runtime = fresh_runtime();
                for job in rx {
                    let verdict = check(&mut runtime, &job.source, &FUZZ_LIMITS);
                    // A worker retires a poisoned runtime; so does this thread.
                    if runtime.is_poisoned() {
                        runtime = fresh_runtime();
                    }
                    let _ = job.reply.send(verdict);
                }
            })
            .expect("the script thread starts");
        Mutex::new(tx)
    })
}

/// A runtime prepared the way the zygote prepares one, then the heap
/// counter switched on the way a worker does.
fn fresh_runtime() -> ScriptRuntime {
    let mut runtime = ScriptRuntime::new();
    runtime.warm_up();
    heap::enable_counting(hard_cap(&FUZZ_LIMITS));
    runtime
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let source = script_source(data);
    let (reply, verdict) = channel();
    executor()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(Job { source, reply })
        .expect("the script thread is alive");
    match verdict.recv() {
        Ok(Ok(())) => {}
        Ok(Err(broken)) => panic!("{broken}"),
        Err(std::sync::mpsc::RecvError) => panic!("the script thread died"),
    }
}

/// The request every fuzzed script sees.
pub fn request() -> ScriptRequest {
    ScriptRequest {
        method: "POST".into(),
        path: "/exec/fuzz/1".into(),
        params: vec![("id".into(), "1".into())],
        query: vec![("q".into(), "1".into()), ("q".into(), "é".into())],
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"n": 1, "s": "x", "a": [1, 2.5, null, true], "m": {"k": "v"}}"#.into(),
        body_is_json: true,
    }
}

/// Compiles and runs `source`; `Err` names the broken invariant.
pub fn check(runtime: &mut ScriptRuntime, source: &str, limits: &Limits) -> Result<(), String> {
    let script = match runtime.compile(source, limits) {
        Ok(script) => script,
        Err(e) => {
            if e.message == "internal error while compiling" {
                return Err("compiling panicked inside the engine".into());
            }
            if e.message.len() > MESSAGE_CAP {
                return Err(format!(
                    "a compile error of {} bytes is above the message cap",
                    e.message.len()
                ));
            }
            return Ok(());
        }
    };
    let out = runtime.run(&script, &request(), limits);
    if out.outcome == Outcome::WorkerCrashed {
        return Err(format!(
            "running panicked inside the runtime: {}",
            out.error.as_deref().unwrap_or("")
        ));
    }
    if let Some(message) = &out.error
        && message.len() > MESSAGE_CAP
    {
        return Err(format!(
            "an error message of {} bytes is above the cap",
            message.len()
        ));
    }
    // The log is bounded in bytes and in lines, whatever the outcome: each
    // line is a `String` in the frame the pool decodes.
    let kept = if out.logs_truncated {
        &out.logs[..out.logs.len().saturating_sub(1)]
    } else {
        &out.logs[..]
    };
    if kept.len() > MAX_LOG_LINES {
        return Err(format!(
            "{} log lines kept, above the cap of {MAX_LOG_LINES}",
            kept.len()
        ));
    }
    let kept_bytes: usize = kept.iter().map(String::len).sum();
    if kept_bytes as u64 > limits.log_bytes {
        return Err(format!(
            "{kept_bytes} log bytes kept, above the limit of {}",
            limits.log_bytes
        ));
    }
    if out.outcome == Outcome::Ok {
        if out.stats.operations > limits.operations {
            return Err(format!(
                "an ok run used {} operations, above the budget of {}",
                out.stats.operations, limits.operations
            ));
        }
        let Some(response) = &out.response else {
            return Err("an ok run has no response".into());
        };
        if response.body.len() as u64 > limits.response_bytes {
            return Err(format!(
                "a response of {} bytes is above the limit of {}",
                response.body.len(),
                limits.response_bytes
            ));
        }
        if !(200..=599).contains(&response.status) {
            return Err(format!("an ok run answered status {}", response.status));
        }
    }
    Ok(())
}
