//! [`ScriptRuntime`]: compile and run untrusted scripts under [`Limits`].
//!
//! Invariants:
//! - One engine per runtime, built once; a runtime is `!Send` (Rhai without
//!   `sync`), so there is one per thread or process.
//! - Nothing survives from one invocation to the next except the engine's
//!   registrations: each run gets a fresh scope, a reset budget and an
//!   empty log. Compiled scripts are immutable and may be reused.
//! - [`ScriptRuntime::run`] never panics and never returns early: whatever
//!   the script does, the output carries an outcome, a capped message and
//!   every statistic that could be measured. A panic inside Rhai or the SDK
//!   is caught and reported as [`Outcome::WorkerCrashed`], and marks the
//!   runtime poisoned ([`ScriptRuntime::is_poisoned`]) so its owner can
//!   replace it.
//! - Heap left behind is tracked: Rhai closures capture variables by
//!   sharing them, so `let m = #{}; let f = || m; m.f = f;` makes a
//!   reference cycle that is never freed, inside a function as well as at
//!   the top level, and no invocation can reach it afterwards. With the
//!   counting allocator on, every run adds the live-heap change it caused
//!   (minus its own output) to [`ScriptRuntime::retained_bytes`]; past
//!   [`MAX_RETAINED_BYTES`] the runtime counts as poisoned too, so a worker
//!   is replaced before one script's leaks can push another script's
//!   invocation into the hard cap.
//!
//! # Stack
//!
//! Rhai recurses on the native stack once per script call level (and once
//! per expression level within it), so `call_depth` and the thread's stack
//! size must be chosen together or deep recursion aborts the process instead
//! of ending in a clean "call depth limit" error. Measured on `x86_64` at the
//! maximum `call_depth` (128) and maximum `fn_expr_depth` (64):
//!
//! | frame shape | debug build | release build |
//! |---|---|---|
//! | `fn f(n) { f(n + 1) + 1 }` | 4.7 MiB | 0.9 MiB |
//! | the hostile fixture's `heavy` (maps, interpolation, `switch`) | 7.2 MiB | 1.1 MiB |
//! | every level nested 25 parentheses deep | 22.6 MiB | 5.9 MiB |
//! | every level nested 14 `if` blocks deep | 27.7 MiB | 3.1 MiB |
//!
//! So a thread running scripts needs at least [`MIN_SCRIPT_STACK_BYTES`]
//! (64 MiB: twice the worst debug case, ten times the worst release case).
//! The sandbox's workers run on the main thread with `RLIMIT_STACK` =
//! 256 MiB; the in-process executor's threads have 64 MiB. Values nested
//! very deeply (E3: `a = [a]` in a loop) also recurse when cloned, checked,
//! compared or dropped, but each level costs O(depth) operations, so the wall
//! deadline bounds the depth (about 10 k levels in 20 s in a debug build),
//! far below what 64 MiB holds.
//!
//! # Compile time
//!
//! Compiling is work on untrusted input and Rhai's parser is superlinear on
//! some inputs (measured in release, 1 MiB sources: a long chain of `let`s
//! referring to the first variable 38 s, a function with 100 k parameters
//! 29 s). Three things bound it: the source-size cap (`source_bytes`,
//! checked before parsing); the expression-depth limits, which bound the
//! parser's recursion; and `compile_time_ms`, enforced by a clock the token
//! hook reads every few dozen tokens (see `compile_clock`): past it the
//! parser is fed an error token and stops, and the compile fails with a
//! time-limit error. Rhai's optimizer, quadratic in the statements of a
//! block and run after the last token, only runs on scripts up to
//! [`MAX_OPTIMIZED_SOURCE_BYTES`]. What remains unbounded is the work
//! between two tokens, at most one scope or parameter-list scan
//! (milliseconds at the source cap); the sandbox's kill deadline is the
//! backstop.
//!
//! # System calls at run time
//!
//! For the sandbox's seccomp allow-list: compiling and running a script
//! needs memory (`mmap` without `PROT_EXEC`, `munmap`, `mremap`, `brk`) and
//! `clock_gettime` (`CLOCK_MONOTONIC` and `CLOCK_REALTIME` through the vDSO,
//! `CLOCK_THREAD_CPUTIME_ID` as a real syscall for `cpu_us`). Nothing else:
//! no file, socket or `getrandom` calls, provided that
//! [`ScriptRuntime::new`] (seeds the `uuid()` generator from `getrandom`),
//! [`ScriptRuntime::warm_up`] (runs every lazy one-time initialisation,
//! e.g. hash seeds) and, in each forked worker, [`ScriptRuntime::reseed`]
//! are called before confinement. A panic is caught, but Rust's default panic
//! hook first writes a message to fd 2 (`write`) and, with `RUST_BACKTRACE`
//! set, reads `/proc/self/maps`: a worker should install a quiet panic hook or
//! allow `write` to fd 2 and clear `RUST_BACKTRACE`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, OptimizationLevel, Scope};
use shared::{
    CompileError, InvocationOutput, InvocationStats, Limits, Outcome, ScriptRequest, ScriptResponse,
};

use crate::budget::Trip;
use crate::engine::{self, EngineParts};
use crate::errors;
use crate::heap;
use crate::request;
use crate::response;
use crate::sdk::RngSeedError;

/// Scripts up to this size are optimized after parsing (constant folding,
/// dead code; about 10 % faster string and map work). Rhai's optimizer is
/// quadratic in the statements of one block and cannot be interrupted, so
/// larger scripts run unoptimized: at this size its worst measured case
/// takes about 20 ms in a release build (400 ms in a debug build), against
/// 2.4 s for a 256 KiB block.
pub const MAX_OPTIMIZED_SOURCE_BYTES: usize = 16 * 1024;

/// Heap a runtime may accumulate across runs (reference cycles scripts
/// leaked) before it asks to be replaced.
pub const MAX_RETAINED_BYTES: u64 = 8 * 1024 * 1024;

/// The smallest stack a thread running scripts at the maximum `call_depth`
/// should have (debug builds need the most; see the module docs).
pub const MIN_SCRIPT_STACK_BYTES: usize = 64 * 1024 * 1024;

/// A compiled script and the limits it was compiled under.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    ast: AST,
    limits: Limits,
}

impl CompiledScript {
    /// The limits the script was compiled under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether compiling under `limits` would have applied the same
    /// parse-time limits, so this compiled form can be reused for them.
    pub fn compiled_for(&self, limits: &Limits) -> bool {
        let key = |l: &Limits| {
            (
                l.expr_depth,
                l.fn_expr_depth,
                l.string_bytes,
                l.functions,
                l.source_bytes,
            )
        };
        key(&self.limits) == key(limits)
    }
}

/// The Rhai engine with PiCloud's packages, SDK and budget hooks. Build one
/// per process or thread: building costs a few hundred microseconds.
pub struct ScriptRuntime {
    parts: EngineParts,
    poisoned: bool,
    /// Net heap growth left behind by runs (signed: later runs may free).
    retained: i64,
}

impl Default for ScriptRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ScriptRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptRuntime")
            .field("poisoned", &self.poisoned)
            .field("retained", &self.retained)
            .finish_non_exhaustive()
    }
}

/// A failed invocation's outcome and message.
type Failure = (Outcome, String);

impl ScriptRuntime {
    /// Builds the engine once: `Engine::new_raw()`, an explicit package list,
    /// the SDK and the hooks; seeds the `uuid()` generator from the OS.
    pub fn new() -> Self {
        Self {
            parts: engine::build(),
            poisoned: false,
            retained: 0,
        }
    }

    /// Registers extra native functions on the engine. For embedders' test
    /// instrumentation (the sandbox's `probes` feature); nothing in a
    /// production build calls it, and scripts cannot.
    pub fn extend_engine(&mut self, register: impl FnOnce(&mut rhai::Engine)) {
        register(&mut self.parts.engine);
    }

    /// Re-seeds the `uuid()` generator from the OS. A forked worker must call
    /// this before confinement, or it would repeat its siblings' UUIDs.
    pub fn reseed(&mut self) -> Result<(), RngSeedError> {
        self.parts.rng.reseed()
    }

    /// Compiles and runs a script that touches every SDK function once, so
    /// lazy one-time initialisations (and their system calls) happen now,
    /// before confinement, rather than in a confined worker's first request.
    pub fn warm_up(&mut self) {
        const WARM_UP: &str = r#"
            let j = json_parse(`{"a":[1,2.5,"x"]}`);
            let s = json_stringify(j) + j.to_json() + url_encode("a b") + url_decode("a%20b");
            s += base64_encode(s) + hex_encode(s) + sha256(s) + hmac_sha256("k", s);
            s += base64_decode(base64_encode("x")) + hex_decode(hex_encode("x"));
            s += `${form_decode("a=1")} ${now()} ${uuid()}`;
            s.replace("a", "b");
            log("info", s.split(",").len());
            response(200, #{ s: s }, #{ "x-warm": "up" })
        "#;
        let limits = Limits::DEFAULTS;
        if let Ok(script) = self.compile(WARM_UP, &limits) {
            let _ = self.run(&script, &ScriptRequest::default(), &limits);
        }
    }

    /// The runtime should be replaced: a panic was caught in it, or runs
    /// left more than [`MAX_RETAINED_BYTES`] on the heap (see
    /// [`ScriptRuntime::retained_bytes`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned || self.retained_bytes() > MAX_RETAINED_BYTES
    }

    /// Heap bytes that runs allocated and never freed (their outputs
    /// excluded), as the counting allocator measures it; 0 when counting is
    /// off. Only a process exit gives such memory back.
    pub fn retained_bytes(&self) -> u64 {
        u64::try_from(self.retained).unwrap_or(0)
    }

    /// Compiles untrusted source under `limits`.
    ///
    /// The source-size cap is checked first, then the parser runs with the
    /// expression-depth, string and function limits set and a
    /// `compile_time_ms` deadline (see the module docs on what bounds a
    /// compile). The error carries the parser's line and column.
    pub fn compile(
        &mut self,
        source: &str,
        limits: &Limits,
    ) -> Result<CompiledScript, CompileError> {
        if source.len() as u64 > limits.source_bytes {
            return Err(CompileError {
                message: format!(
                    "the script is {} bytes, above the limit of {} bytes",
                    source.len(),
                    limits.source_bytes
                ),
                line: None,
                column: None,
            });
        }
        let parts = &mut self.parts;
        engine::apply_limits(&mut parts.engine, limits);
        let budget = Duration::from_millis(limits.compile_time_ms);
        let started = Instant::now();
        parts.compile_clock.start(budget);
        let compiled = catch_unwind(AssertUnwindSafe(|| parts.engine.compile(source)));
        parts.compile_clock.stop();
        if parts.compile_clock.expired() || started.elapsed() > budget {
            return Err(time_limit_error(limits));
        }
        let ast = match compiled {
            Ok(Ok(ast)) if source.len() <= MAX_OPTIMIZED_SOURCE_BYTES => {
                let engine = &parts.engine;
                match catch_unwind(AssertUnwindSafe(|| {
                    engine.optimize_ast(&Scope::new(), ast, OptimizationLevel::Simple)
                })) {
                    Ok(ast) => ast,
                    Err(_) => return Err(self.internal_compile_error()),
                }
            }
            Ok(Ok(ast)) => ast,
            Ok(Err(err)) => return Err(errors::compile_error(&err)),
            Err(_) => return Err(self.internal_compile_error()),
        };
        // Optimizing is outside the compile clock's reach; the size bound
        // keeps it short, and the limit still holds for the whole compile.
        if started.elapsed() > budget {
            return Err(time_limit_error(limits));
        }
        Ok(CompiledScript {
            ast,
            limits: *limits,
        })
    }

    fn internal_compile_error(&mut self) -> CompileError {
        self.poisoned = true;
        CompileError {
            message: "internal error while compiling".to_owned(),
            line: None,
            column: None,
        }
    }

    /// Runs one invocation of `script` on `request` under `limits`.
    ///
    /// Never panics. Limits show up as outcomes: the operation budget
    /// (counted by the hook, callbacks included) as `operation_limit`, the
    /// wall deadline as `timeout` (cooperative: checked every few hundred
    /// operations), the heap cap as `memory_limit` when the counting
    /// allocator is enabled, per-value size limits as `memory_limit`, an
    /// oversized response as `output_limit`, call depth as `script_error`.
    pub fn run(
        &mut self,
        script: &CompiledScript,
        request: &ScriptRequest,
        limits: &Limits,
    ) -> InvocationOutput {
        let wall_start = Instant::now();
        let cpu_start = thread_cpu_time();
        let heap_start = heap::live_raw();
        let parts = &mut self.parts;
        parts.budget.start(
            limits.operations,
            Duration::from_millis(limits.wall_time_ms),
            limits.memory_bytes,
        );
        parts.log.borrow_mut().reset(limits.log_bytes);
        engine::apply_limits(&mut parts.engine, limits);

        let result = catch_unwind(AssertUnwindSafe(|| {
            execute(&parts.engine, &parts.budget, script, request, limits)
        }))
        .unwrap_or_else(|_| {
            Err((
                Outcome::WorkerCrashed,
                "the executor failed internally while running the script".to_owned(),
            ))
        });
        if matches!(result, Err((Outcome::WorkerCrashed, _))) {
            self.poisoned = true;
        }
        let parts = &mut self.parts;
        parts.budget.stop();
        // The log's RefCell is free again: the engine has returned (or unwound).
        let log = parts.log.borrow_mut().finish();

        let stats = InvocationStats {
            wall_us: duration_us(wall_start.elapsed()),
            cpu_us: thread_cpu_time().saturating_sub(cpu_start),
            operations: parts.budget.operations(),
            peak_heap_bytes: parts.budget.peak_heap_bytes(),
            response_bytes: result.as_ref().map_or(0, |r| r.body.len() as u64),
            log_bytes: log.bytes,
            ..InvocationStats::default()
        };
        let (outcome, response, error) = match result {
            Ok(response) => (Outcome::Ok, Some(response), None),
            Err((outcome, message)) => (outcome, None, Some(message)),
        };
        let output = InvocationOutput {
            outcome,
            response,
            error,
            logs: log.lines,
            logs_truncated: log.truncated,
            stats,
        };
        if heap::counting_enabled() {
            let left = heap::live_raw()
                .saturating_sub(heap_start)
                .saturating_sub(output_heap_bytes(&output));
            self.retained = self.retained.saturating_add(left);
        }
        output
    }
}

/// Builds `request`, evaluates the script, converts its result. The budget
/// is consulted first at every step: a tripped limit wins over whatever the
/// script returned (it may have caught the termination).
fn execute(
    engine: &Engine,
    budget: &crate::budget::Budget,
    script: &CompiledScript,
    request: &ScriptRequest,
    limits: &Limits,
) -> Result<ScriptResponse, Failure> {
    let tripped = |trip: Trip| (trip.outcome(), trip_message(trip, limits));
    let request = request::to_dynamic(request, limits)
        .map_err(|err| (Outcome::MemoryLimit, err.to_string()))?;
    let mut scope = Scope::new();
    scope.push("request", request);
    if let Some(trip) = budget.check_now() {
        return Err(tripped(trip));
    }
    let result = engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast)
        .or_else(exit_value);
    if let Some(trip) = budget.tripped() {
        return Err(tripped(trip));
    }
    let value = result.map_err(|err| errors::classify(&err, limits))?;
    let response = response::from_result(&value, limits).map_err(|e| (e.outcome, e.message))?;
    if let Some(trip) = budget.check_now() {
        return Err(tripped(trip));
    }
    Ok(response)
}

/// `exit(value)` ends the script with `value`. Rhai unwraps an exit only at
/// the top level: one raised inside a closure that a native function (`map`,
/// `reduce`, …) called back arrives wrapped in "error in call to function".
fn exit_value(err: Box<EvalAltResult>) -> Result<Dynamic, Box<EvalAltResult>> {
    match err.unwrap_inner() {
        EvalAltResult::Exit(value, _) => Ok(value.clone()),
        _ => Err(err),
    }
}

fn time_limit_error(limits: &Limits) -> CompileError {
    CompileError {
        message: format!(
            "compiling took longer than the limit of {} ms",
            limits.compile_time_ms
        ),
        line: None,
        column: None,
    }
}

fn trip_message(trip: Trip, limits: &Limits) -> String {
    match trip {
        Trip::Operations => format!("operation limit ({}) exceeded", limits.operations),
        Trip::WallTime => format!("wall-clock limit ({} ms) exceeded", limits.wall_time_ms),
        Trip::Memory => format!("memory limit ({} bytes) exceeded", limits.memory_bytes),
    }
}

/// The heap an output owns, as the allocator counted it (capacities).
fn output_heap_bytes(output: &InvocationOutput) -> i64 {
    fn string(s: &String) -> usize {
        s.capacity()
    }
    fn strings<T>(v: &Vec<T>, each: impl Fn(&T) -> usize) -> usize {
        v.capacity() * std::mem::size_of::<T>() + v.iter().map(each).sum::<usize>()
    }
    let mut bytes = strings(&output.logs, string);
    bytes += output.error.as_ref().map_or(0, string);
    if let Some(response) = &output.response {
        bytes += response.body.capacity();
        bytes += strings(&response.headers, |(n, v)| n.capacity() + v.capacity());
    }
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// CPU time of the calling thread in microseconds (0 if the clock fails).
fn thread_cpu_time() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}
