//! Runs untrusted Rhai scripts under PiCloud's limits.
//!
//! This crate is compute only: no I/O of its own, no database. It is used
//! inside the sandbox's confined worker processes, by the in-process
//! `InProcessExecutor` (feature `in-process`, tests and benchmarks only)
//! and by fuzz targets.
//!
//! - [`ScriptRuntime`] builds the Rhai engine once and compiles and runs
//!   scripts: [`ScriptRuntime::compile`], [`ScriptRuntime::run`].
//! - [`heap`] is the counting global allocator a worker installs to meter
//!   and cap its heap.
//! - [`ScriptCache`] is a bounded cache of compiled scripts keyed by
//!   (script id, version).
//! - The script contract (the `request` variable, response shapes, the SDK)
//!   is documented in `docs/script-api.md`; [`response`] and [`request`]
//!   hold its conversions, [`json`] the bounded JSON codec.

mod budget;
mod cache;
mod compile_clock;
mod engine;
mod errors;
pub mod heap;
#[cfg(feature = "in-process")]
mod in_process;
pub mod json;
mod logs;
pub mod request;
pub mod response;
mod runtime;
mod sdk;

pub use budget::CLOCK_CHECK_INTERVAL;
pub use cache::ScriptCache;
pub use errors::MAX_MESSAGE_BYTES;
#[cfg(feature = "in-process")]
pub use in_process::InProcessExecutor;
pub use logs::MAX_LOG_LINES;
pub use runtime::{
    CompiledScript, MAX_OPTIMIZED_SOURCE_BYTES, MAX_RETAINED_BYTES, MIN_SCRIPT_STACK_BYTES,
    ScriptRuntime,
};
pub use sdk::RngSeedError;
