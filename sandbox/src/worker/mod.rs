//! A worker: the forked child of the zygote that runs invocations, one at a
//! time, for as long as the pool keeps it.
//!
//! Start-up order (each step assumes the previous one):
//! 1. [`hygiene`]: socket on fd 3, `/dev/null` on 0 and 1, the stderr pipe on
//!    2, every other descriptor closed, signals unblocked, parent-death
//!    signal (and the `getppid` race check), new session, process name;
//! 2. the counting allocator switched on with the pool's hard cap;
//! 3. [`confine_worker`]: the confinement layers, the ONE place they apply;
//! 4. `Hello`, then [`serve`] until the pool closes the socket.
//!
//! The worker trusts nothing it did not build itself, but the pool is its
//! only peer: a bad frame from the pool ends the worker (exit status 70), a
//! closed socket ends it cleanly (0).

mod cache;
mod hygiene;
mod serve;

pub(crate) use serve::CACHE_ENTRIES;

use std::io::Write;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use executor_core::ScriptRuntime;
use nix::unistd::Pid;

use crate::confine::{ConfinementPlan, LayerMode, LayerModes, PlanOptions, RlimitValues};
use crate::error::SandboxError;
use crate::protocol::{WORKER_SOCKET_FD, ZygoteInit};

/// What the zygote builds once and every worker inherits by `fork`.
pub(crate) struct Prepared {
    runtime: ScriptRuntime,
    /// `None` when confinement is off.
    confinement: Option<ConfinementPlan>,
}

impl Prepared {
    /// Builds the expensive, fork-shared state: the script engine and the
    /// confinement plan (worker identity resolved, seccomp program compiled).
    pub(crate) fn new(init: &ZygoteInit) -> Result<Self, SandboxError> {
        let mut runtime = ScriptRuntime::new();
        // Test builds only: `probe(name)` lets an end-to-end test attempt
        // escapes from a script inside a real confined worker.
        #[cfg(feature = "probes")]
        runtime.extend_engine(crate::confine::register_probes);
        // Lazy one-time initialisations happen here, once, not in a confined worker.
        runtime.warm_up();
        let confinement = if init.confine {
            let options = PlanOptions {
                modes: LayerModes::all(if init.allow_weak_sandbox {
                    LayerMode::AllowWeak
                } else {
                    LayerMode::Required
                }),
                worker_user: init.worker_user.clone(),
                rlimits: RlimitValues {
                    address_space_bytes: init.worker_address_space_bytes,
                    cpu_seconds: init.worker_cpu_limit_secs,
                    ..RlimitValues::default()
                },
                ..PlanOptions::default()
            };
            let plan = ConfinementPlan::new(WORKER_SOCKET_FD, &options)
                .map_err(|e| SandboxError::Confine(e.to_string()))?;
            plan.prepare_parent()
                .map_err(|e| SandboxError::Confine(e.to_string()))?;
            Some(plan)
        } else {
            None
        };
        Ok(Self {
            runtime,
            confinement,
        })
    }
}

/// What a freshly forked worker starts from.
pub(crate) struct WorkerStart<'a> {
    pub socket: OwnedFd,
    pub stderr: OwnedFd,
    pub devnull: BorrowedFd<'a>,
    pub zygote_pid: Pid,
    pub init: &'a ZygoteInit,
    pub prepared: &'a mut Prepared,
}

/// Exit status of a worker that failed to start or broke protocol.
const EXIT_FAILURE: i32 = 70;

/// The child side of the zygote's `fork`; never returns.
pub(crate) fn run_after_fork(start: WorkerStart<'_>) -> ! {
    let code = match worker_main(start) {
        Ok(()) => 0,
        Err(e) => {
            // fd 2 is the pool's stderr pipe by now (or still the zygote's
            // when hygiene itself failed); the pool logs what it reads.
            let _ = writeln!(std::io::stderr(), "picloud worker: {e}");
            EXIT_FAILURE
        }
    };
    // SAFETY: _exit ends the process without running the zygote's atexit
    // handlers or flushing buffers copied from it.
    unsafe { libc::_exit(code) }
}

fn worker_main(start: WorkerStart<'_>) -> Result<(), SandboxError> {
    let WorkerStart {
        socket,
        stderr,
        devnull,
        zygote_pid,
        init,
        prepared,
    } = start;
    hygiene::apply(socket, stderr, devnull, zygote_pid)?;
    // Siblings forked from one zygote must not share a `uuid()` stream.
    prepared
        .runtime
        .reseed()
        .map_err(|e| SandboxError::Control(format!("cannot reseed the runtime: {e}")))?;
    executor_core::heap::enable_counting(init.heap_hard_cap_bytes);
    confine_worker(prepared.confinement.as_ref())?;
    // SAFETY: hygiene placed the worker's socket on this descriptor and
    // closed every other copy; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(WORKER_SOCKET_FD) };
    serve::serve(
        interprocess::os::unix::uds_local_socket::Stream::from(socket),
        &mut prepared.runtime,
    )
}

/// The one place confinement is applied: after fd hygiene, before `Hello`.
fn confine_worker(plan: Option<&ConfinementPlan>) -> Result<(), SandboxError> {
    if let Some(plan) = plan {
        crate::confine::apply(plan).map_err(|e| SandboxError::Confine(e.to_string()))?;
    }
    Ok(())
}
