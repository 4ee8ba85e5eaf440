//! The zygote: a single-threaded helper process of the host binary that
//! builds the script runtime once and forks workers from it on request.
//!
//! - `launch` (server side) starts it: the configured executable re-run
//!   with the hidden [`ZYGOTE_ARG`], an empty environment, a large
//!   `RLIMIT_STACK` (the workers' scripts run on the main thread) and its
//!   control socket on fd [`crate::protocol::ZYGOTE_CONTROL_FD`].
//! - `process` (zygote side) is its whole life: take `Init`, build the
//!   runtime, then fork a worker per `Spawn` and report every reaped child.
//! - `placement` pins each new worker to the least-loaded CPU when the
//!   pool asks for it (`PICLOUD_CPU_PINNING`).
//!
//! Invariants: the zygote never runs a script, holds no descriptor but its
//! control socket, a signalfd and `/dev/null` between requests, and exits
//! (killing and reaping its workers) as soon as the control socket closes, so
//! a dead server leaves nothing behind.

pub(crate) mod launch;
mod placement;
pub(crate) mod process;

/// The hidden first argument that makes a host binary a zygote.
pub const ZYGOTE_ARG: &str = "__picloud-zygote";

/// Call first thing in `main` of every binary that can host a pool (before
/// any thread or async runtime starts): when the process was started as a
/// zygote it runs as one and exits; otherwise it returns at once.
pub fn run_zygote_if_requested() {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(ZYGOTE_ARG)) {
        return;
    }
    let code = match process::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("picloud zygote: {e}");
            1
        }
    };
    std::process::exit(code);
}
