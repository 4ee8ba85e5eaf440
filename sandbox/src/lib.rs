//! PiCloud's executor processes: the zygote, confined workers, the IPC codec
//! and the supervised pool.
//!
//! # Codemap
//!
//! ```text
//! server process (tokio)                 zygote process (1 thread)        worker process (1 thread)
//! ┌──────────────────────────┐ SEQPACKET ┌──────────────────────┐  fork  ┌───────────────────────┐
//! │ pool::Pool (ExecutorClient)│◀────────▶│ zygote::process      │──────▶│ worker: hygiene,      │
//! │  scheduler · supervisor  │ +SCM_RIGHTS│  Init → Ready         │       │ confine, serve loop   │
//! │  handle · invoke         │           │  Spawn → fork → fds   │       │ (ScriptRuntime + LRU) │
//! └──────────┬───────────────┘           │  SIGCHLD → Exited     │       └──────────┬────────────┘
//!            └──────────── socketpair (stream, codec frames) ─────────────────────────┘
//! ```
//!
//! | module | owns | invariant at its boundary |
//! |---|---|---|
//! | [`codec`] | length-prefixed `postcard` frames | a frame's length is checked against a cap before any buffer grows; decoding never panics |
//! | [`protocol`] | every message of both channels | each pool↔worker message after `Hello` names its invocation |
//! | `control` | the zygote control datagrams and `SCM_RIGHTS` | received descriptors are owned and close-on-exec |
//! | [`zygote`] | the helper process and its launch | it never runs a script; it reaps every worker and reports each death; it exits when the server's end closes |
//! | `worker` | a forked worker's life | fd hygiene, then confinement in one place, then `Hello`; one invocation at a time |
//! | [`death`] | wait status → [`shared::Outcome`] | the one mapping of death signals to outcomes |
//! | [`pool`] | [`Pool`], the [`shared::ExecutorClient`] | no lock across `.await`; a worker serves one lease at a time; abandoned invocations kill their worker |
//! | [`config`] | [`PoolConfig`], [`Isolation`] | invalid settings are refused, not clamped |
//! | [`confine`] | the confinement layers | applied by `worker` after fd hygiene, before the first frame |
//!
//! # Isolation modes
//!
//! `per-script` (default): a worker only ever runs one script; idle workers
//! of other scripts are recycled least-recently-used first. `shared`: any
//! worker runs any script, so a script may run in a process where another
//! script ran before (its cached AST, freed heap pages): fastest, for a single
//! owner who trusts all their scripts alike. `per-invocation`: every
//! invocation gets a never-used worker, forked ahead of demand.
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
