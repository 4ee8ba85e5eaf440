//! PiCloud's executor processes: the zygote, confined workers, the IPC codec
//! and the supervised pool.
//!
//! # Codemap
//!
//! ```text
//! server (tokio, many threads)      zygote (1 thread)            worker (1 thread, confined)
//!   pool::Pool  ── SEQPACKET ──▶      Init → Ready
//!   scheduler     + SCM_RIGHTS        Spawn → fork ──────────▶    hygiene → confine → Hello
//!   supervisor  ◀── Spawned(fds) ──   SIGCHLD → Exited(status)    serve: Run → Done (one at a time)
//!   handle, invoke ◀════════ socketpair, length-prefixed postcard frames ════════▶
//! ```
//!
//! | module | owns | invariant at its boundary |
//! |---|---|---|
//! | [`codec`] | length-prefixed `postcard` frames | a frame's length is checked against a cap before any buffer grows; decoding never panics |
//! | [`protocol`] | every message of both channels | each pool↔worker message after `Hello` names its invocation |
//! | `control` | the zygote control datagrams and `SCM_RIGHTS` | received descriptors are owned and close-on-exec |
//! | [`zygote`] | the helper process and its launch | it never runs a script; it reaps every worker and reports each death; it exits when the server's end closes; with pinning on, each new worker goes to the CPU with the fewest live ones |
//! | `worker` | a forked worker's life | fd hygiene, then confinement in one place, then `Hello`; one invocation at a time |
//! | [`death`] | wait status → [`shared::Outcome`] | the one mapping of death signals to outcomes |
//! | [`pool`] | [`Pool`], the [`shared::ExecutorClient`] | no lock across `.await`; a worker serves one lease at a time; abandoned invocations kill their worker |
//! | [`config`] | [`PoolConfig`], [`Isolation`] | invalid settings are refused, not clamped |
//! | [`confine`] | the confinement layers | applied by `worker` after fd hygiene, before the first frame |
//! | [`cpus`] | usable CPUs, pinning | pinning is a hint: a failure leaves the thread or process floating |
//!
//! # Isolation modes
//!
//! `per-script` (default): a worker only ever runs one script; idle workers
//! of other scripts are recycled least-recently-used first. `shared`: any
//! worker runs any script, so a script may run in a process where another
//! script ran before (its cached AST, freed heap pages): fastest, for a single
//! owner who trusts all their scripts alike. `per-invocation`: every
//! invocation gets a never-used worker, forked ahead of demand: the pool
//! keeps twice `PICLOUD_WORKERS` processes (half of them spares, ready or
//! starting) and still runs at most `PICLOUD_WORKERS` invocations at once.
//!
//! # Configuration
//!
//! [`PoolConfig::from_env`] reads `PICLOUD_WORKERS` (default: the number of
//! cores), `PICLOUD_ISOLATION`, `PICLOUD_QUEUE_CAPACITY` (256),
//! `PICLOUD_QUEUE_TIMEOUT_MS` (2000), `PICLOUD_WORKER_MAX_INVOCATIONS` (1000,
//! minus up to 10 % jitter per worker), `PICLOUD_WORKER_RSS_HIGH_WATER_BYTES`
//! (256 MiB), `PICLOUD_SCRIPT_CONCURRENCY` (half the workers, at least one),
//! `PICLOUD_KILL_GRACE_MS` (500), `PICLOUD_WORKER_HEAP_CAP_BYTES` (sized from
//! `PICLOUD_LIMIT_MEMORY_BYTES_MAX`), `PICLOUD_WORKER_CPU_LIMIT_SECS` (600;
//! workers are recycled at half of it), `PICLOUD_CONFINE`,
//! `PICLOUD_WORKER_USER` and `PICLOUD_ALLOW_WEAK_SANDBOX`.
//!
//! # Failure handling in one place
//!
//! | event | what the caller gets | what the pool does |
//! |---|---|---|
//! | no worker within the queue bound, queue full, script's queue share full | `overloaded` (503) | nothing: counted |
//! | no answer by deadline + grace | `timeout` (504) | SIGKILL through the pidfd, replace |
//! | EOF, oversized/garbage/misaddressed frame | `worker_crashed` (502) | kill, replace |
//! | death by `SIGSYS` / `SIGXCPU` / allocation-failure abort | `sandbox_violation` / `cpu_limit` / `memory_limit` | replace |
//! | caller dropped mid-invocation | nothing (it left) | SIGKILL, replace: a late answer reaches nobody |
//! | zygote died | in-flight: `worker_crashed`; queued: wait, then run | restart it with backoff, reap (and kill) its orphans as the child subreaper |
//! | a script hit a limit, M invocations, RSS or CPU past its mark | its own outcome | recycle after the answer |
//!
//! # Hosting the zygote
//!
//! Every binary that can host a pool calls [`run_zygote_if_requested`] first
//! thing in `main`, before any thread or async runtime starts; the pool
//! re-executes [`PoolConfig::executable`] (by default the current binary; in
//! tests, `picloud` via `CARGO_BIN_EXE_picloud`) with a hidden argument.
//! Workers enable the counting allocator, so the host binary should declare
//! `executor_core::heap::CountingAllocator` as its `#[global_allocator]`;
//! without it heap stats read 0 and only Rhai's per-value limits bound memory.

pub mod codec;
pub mod config;
pub mod confine;
mod control;
pub mod cpus;
pub mod death;
pub mod error;
pub mod pool;
pub mod protocol;
mod worker;
pub mod zygote;

pub use config::{Isolation, PoolConfig, UnknownIsolation};
pub use error::SandboxError;
pub use pool::{Pool, PoolMetrics};
pub use zygote::{ZYGOTE_ARG, run_zygote_if_requested};
