//! Descriptor and process hygiene of a fresh worker (before confinement).
//!
//! After [`apply`]: fd 0 and 1 are `/dev/null`, fd 2 is the pool's stderr
//! pipe (never a file: with `RLIMIT_FSIZE` 0 a write to a file would be
//! `SIGXFSZ`), fd 3 is the socket, nothing else is open; no signal is blocked;
//! the worker dies with the zygote (and never outlives it through the
//! fork/prctl race); it leads its own session and reads `picloud-worker` in `ps`.

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::unistd::Pid;

use crate::error::SandboxError;
use crate::protocol::WORKER_SOCKET_FD;
use crate::zygote::process::close_fds_from;

pub(super) fn apply(
    socket: OwnedFd,
    stderr: OwnedFd,
    devnull: BorrowedFd<'_>,
    zygote_pid: Pid,
) -> Result<(), SandboxError> {
    // Give up ownership: after the dup2s these numbers are closed by close_range.
    let socket = socket.into_raw_fd();
    let stderr = stderr.into_raw_fd();
    let devnull = devnull.as_raw_fd();
    // Every source sits above the targets (the zygote holds 0..=3 open), so
    // no dup2 below can clobber a source not yet copied.
    for fd in [socket, stderr, devnull] {
        if fd <= WORKER_SOCKET_FD {
            return Err(SandboxError::Control(format!(
                "unexpected low descriptor {fd}"
            )));
        }
    }
    dup_onto(devnull, 0)?;
    dup_onto(devnull, 1)?;
    dup_onto(stderr, 2)?;
    dup_onto(socket, WORKER_SOCKET_FD)?;
    close_fds_from(WORKER_SOCKET_FD + 1);

    // The zygote blocks SIGCHLD for its signalfd; a worker starts clean.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    // SAFETY: restoring the default disposition installs no handler.
    unsafe {
        sigaction(
            Signal::SIGCHLD,
            &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
        )?
    };

    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The zygote may have died between fork and prctl: then nobody will send
    // the death signal, so leave now.
    if nix::unistd::getppid() != zygote_pid {
        return Err(SandboxError::Control("the zygote died during start".into()));
    }
    nix::unistd::setsid()?;
    nix::sys::prctl::set_name(c"picloud-worker")?;
    Ok(())
}

fn dup_onto(from: RawFd, to: RawFd) -> Result<(), SandboxError> {
    // SAFETY: dup2 on descriptors this process holds; `to` is replaced atomically.
    if unsafe { libc::dup2(from, to) } == -1 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
