//! Layer 1: what the worker inherited from the zygote.
//!
//! Invariants after [`apply`]: the parent-death signal is `SIGKILL` and the
//! parent was still alive when it was armed; the only open descriptors are
//! 0 and 1 (`/dev/null`), 2 (kept only when it is a pipe, socket or
//! terminal: with `RLIMIT_FSIZE` 0 a write to a regular file would kill the
//! worker with `SIGXFSZ`) and the worker socket; the environment is empty;
//! the worker leads a new session, so no terminal signal reaches it.

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::stat::{SFlag, fstat};

use super::{Applied, ConfineError, ConfinementPlan, Layer};

const LAYER: Layer = Layer::Fds;

pub(super) fn apply(plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    arm_parent_death_signal(plan.parent_pid)?;
    let stderr_kept = plan.keep_stderr && stderr_is_safe();
    redirect_to_dev_null(stderr_kept)?;
    close_all_but(plan.socket_fd)?;
    // SAFETY: the worker is single-threaded (a precondition of `apply`), so
    // nothing reads the environment concurrently.
    unsafe { libc::clearenv() };
    new_session()?;
    Ok(Applied::done(format!(
        "kept fd {}{}",
        plan.socket_fd,
        if stderr_kept { " and stderr" } else { "" }
    )))
}

/// SIGKILL when the parent dies, then a check that it has not died already.
pub(super) fn arm_parent_death_signal(expected_parent: i32) -> Result<(), ConfineError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(ConfineError::last(LAYER, "prctl(PR_SET_PDEATHSIG)"));
    }
    // The parent may have died between fork and prctl; then the signal will
    // never come and the worker would be an orphan.
    if nix::unistd::getppid().as_raw() != expected_parent {
        return Err(ConfineError::ParentGone);
    }
    Ok(())
}

fn stderr_is_safe() -> bool {
    // SAFETY: fd 2 is only borrowed for the duration of the fstat call.
    let stderr = unsafe { std::os::fd::BorrowedFd::borrow_raw(2) };
    match fstat(stderr) {
        Ok(st) => SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG,
        Err(_) => false,
    }
}

fn redirect_to_dev_null(keep_stderr: bool) -> Result<(), ConfineError> {
    // SAFETY: a constant NUL-terminated path and plain flags.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        return Err(ConfineError::last(LAYER, "open(/dev/null)"));
    }
    let targets: &[RawFd] = if keep_stderr { &[0, 1] } else { &[0, 1, 2] };
    for &fd in targets {
        if fd != null {
            // SAFETY: dup2 onto a standard descriptor number.
            if unsafe { libc::dup2(null, fd) } < 0 {
                return Err(ConfineError::last(LAYER, "dup2(/dev/null)"));
            }
        }
    }
    if null > 2 {
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(null) };
    }
    Ok(())
}

/// Closes every descriptor above 2 except `keep`.
fn close_all_but(keep: RawFd) -> Result<(), ConfineError> {
    let keep =
        u32::try_from(keep).map_err(|_| ConfineError::sys(LAYER, "close_range", Errno::EBADF))?;
    close_range(3, keep - 1)?;
    close_range(keep + 1, u32::MAX)?;
    Ok(())
}

fn close_range(first: u32, last: u32) -> Result<(), ConfineError> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range takes plain integers; closing descriptors we do not
    // use is the point.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if rc == 0 {
        return Ok(());
    }
    if Errno::last() != Errno::ENOSYS {
        return Err(ConfineError::last(LAYER, "close_range"));
    }
    // Kernels before 5.9: close one by one up to the descriptor limit.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let end = u64::from(last).min(limit.saturating_sub(1));
    for fd in u64::from(first)..=end {
        if let Ok(fd) = RawFd::try_from(fd) {
            // SAFETY: see above.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

fn new_session() -> Result<(), ConfineError> {
    match nix::unistd::setsid() {
        Ok(_) => Ok(()),
        // Already a process-group leader: fine if it already leads its session.
        Err(Errno::EPERM) if nix::unistd::getsid(None).ok() == Some(nix::unistd::getpid()) => {
            Ok(())
        }
        Err(errno) => Err(ConfineError::sys(LAYER, "setsid", errno)),
    }
}
