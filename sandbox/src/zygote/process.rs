//! The zygote's own life (runs in the zygote process only).

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, getsockopt, socketpair, sockopt};
use nix::unistd::{ForkResult, Pid, fork};

use super::placement::Placement;
use crate::control::{self, Received};
use crate::error::SandboxError;
use crate::protocol::{
    MAX_CONTROL_BYTES, PROTOCOL_VERSION, ZYGOTE_CONTROL_FD, ZygoteInit, ZygoteReply, ZygoteRequest,
};
use crate::worker::{self, WorkerStart};

/// Runs the zygote until its control socket closes.
pub(crate) fn run() -> Result<(), SandboxError> {
    ensure_single_threaded()?;
    // SAFETY: the process has exactly one thread (checked above), so nothing
    // can read the environment concurrently. Workers inherit an empty one.
    for (key, _) in std::env::vars_os() {
        unsafe { std::env::remove_var(key) };
    }
    let _ = nix::sys::prctl::set_name(c"picloud-zygote");

    let control = take_control_socket()?;
    close_fds_from(ZYGOTE_CONTROL_FD + 1);

    let mut buf = vec![0u8; MAX_CONTROL_BYTES];
    let init = match control::recv::<ZygoteRequest>(control.as_fd(), &mut buf)? {
        Received::Message(ZygoteRequest::Init(init), _) => init,
        Received::Closed => return Ok(()),
        Received::Message(other, _) => {
            return Err(SandboxError::Control(format!(
                "expected Init, got {other:?}"
            )));
        }
    };

    let mut prepared = worker::Prepared::new(&init)?;

    // SIGCHLD becomes readable on a signalfd instead of interrupting us.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let devnull: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into();

    let zygote_pid = nix::unistd::getpid();
    control::send(
        control.as_fd(),
        &ZygoteReply::Ready {
            pid: pid_u32(zygote_pid),
            protocol: PROTOCOL_VERSION,
        },
        &[],
    )?;

    let mut zygote = Zygote {
        control,
        devnull,
        own_pid: zygote_pid,
        placement: Placement::new(init.pin_workers),
        init,
        workers: HashSet::new(),
    };
    let result = zygote.serve(&sigfd, &mut buf, &mut prepared);
    zygote.shutdown();
    match result {
        // The server went away while we were reporting: that is our cue to end.
        Err(SandboxError::Sys(Errno::EPIPE | Errno::ECONNRESET)) => Ok(()),
        other => other,
    }
}

struct Zygote {
    control: OwnedFd,
    devnull: OwnedFd,
    own_pid: Pid,
    init: ZygoteInit,
    workers: HashSet<Pid>,
    placement: Placement,
}

impl Zygote {
    fn serve(
        &mut self,
        sigfd: &SignalFd,
        buf: &mut [u8],
        prepared: &mut worker::Prepared,
    ) -> Result<(), SandboxError> {
        loop {
            let (control_ready, child_ready) = {
                let mut fds = [
                    PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if child_ready {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                self.reap()?;
            }
            if control_ready {
                match control::recv::<ZygoteRequest>(self.control.as_fd(), buf)? {
                    Received::Closed => return Ok(()),
                    Received::Message(ZygoteRequest::Spawn { seq }, _) => {
                        self.spawn(seq, prepared)?;
                    }
                    Received::Message(ZygoteRequest::Init(_), _) => {
                        return Err(SandboxError::Control("Init sent twice".into()));
                    }
                }
            }
        }
    }

    /// Forks one worker and hands the pool its socket, its stderr pipe and a pidfd.
    fn spawn(&mut self, seq: u64, prepared: &mut worker::Prepared) -> Result<(), SandboxError> {
        match self.fork_worker(prepared) {
            Ok((pid, pool_end, stderr_read, pidfd)) => {
                self.workers.insert(pid);
                self.placement.place(pid);
                let mut fds: Vec<RawFd> = vec![pool_end.as_raw_fd(), stderr_read.as_raw_fd()];
                if let Some(p) = &pidfd {
                    fds.push(p.as_raw_fd());
                }
                let reply = ZygoteReply::Spawned {
                    seq,
                    pid: pid_u32(pid),
                    pidfd: pidfd.is_some(),
                };
                control::send(self.control.as_fd(), &reply, &fds)
            }
            Err(errno) => control::send(
                self.control.as_fd(),
                &ZygoteReply::SpawnFailed {
                    seq,
                    errno: errno as i32,
                },
                &[],
            ),
        }
    }

    fn fork_worker(
        &self,
        prepared: &mut worker::Prepared,
    ) -> Result<(Pid, OwnedFd, OwnedFd, Option<OwnedFd>), Errno> {
        let (pool_end, worker_end) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let (stderr_read, stderr_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // A worker that floods stderr gets EAGAIN, never blocks on a full pipe.
        fcntl(&stderr_write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        // SAFETY: the zygote is single-threaded, so the child is a faithful
        // copy with no lock held by another thread.
        match unsafe { fork() }? {
            ForkResult::Child => worker::run_after_fork(WorkerStart {
                socket: worker_end,
                stderr: stderr_write,
                devnull: self.devnull.as_fd(),
                zygote_pid: self.own_pid,
                init: &self.init,
                prepared,
            }),
            ForkResult::Parent { child } => {
                drop(worker_end);
                drop(stderr_write);
                Ok((child, pool_end, stderr_read, pidfd_open(child)))
            }
        }
    }

    /// Reaps every child that has ended and reports it.
    fn reap(&mut self) -> Result<(), SandboxError> {
        loop {
            let mut status = 0;
            // SAFETY: `rusage` is plain data the kernel fills in.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers to locals; WNOHANG never blocks.
            let pid = unsafe { libc::wait4(-1, &raw mut status, libc::WNOHANG, &raw mut usage) };
            if pid <= 0 {
                return Ok(());
            }
            self.workers.remove(&Pid::from_raw(pid));
            self.placement.gone(Pid::from_raw(pid));
            let reply = ZygoteReply::Exited {
                pid: pid.unsigned_abs(),
                status,
                cpu_us: timeval_us(usage.ru_utime).saturating_add(timeval_us(usage.ru_stime)),
            };
            control::send(self.control.as_fd(), &reply, &[])?;
        }
    }

    /// Kills and reaps every worker; called when the server is gone.
    fn shutdown(&mut self) {
        for pid in &self.workers {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for pid in self.workers.drain() {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

fn timeval_us(t: libc::timeval) -> u64 {
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(t.tv_usec).unwrap_or(0))
}

fn pid_u32(pid: Pid) -> u32 {
    pid.as_raw().unsigned_abs()
}

/// A pidfd lets the pool signal exactly this process, never a recycled pid.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this new descriptor; we own it. pidfds are close-on-exec.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes every descriptor from `first` up.
pub(crate) fn close_fds_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; none above `first` is owned by Rust code here.
    unsafe {
        libc::syscall(libc::SYS_close_range, first.unsigned_abs(), u32::MAX, 0);
    }
}

/// `fork` is only sound with one thread: make sure the host binary called
/// `run_zygote_if_requested` before starting any.
fn ensure_single_threaded() -> Result<(), SandboxError> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count);
    if threads == 1 {
        Ok(())
    } else {
        Err(SandboxError::ZygoteStart(format!(
            "the zygote has {threads} threads; call sandbox::run_zygote_if_requested() first in main, before any runtime starts"
        )))
    }
}

/// Fd 3 must be the SEQPACKET socket the server made; anything else means we
/// were started by hand.
fn take_control_socket() -> Result<OwnedFd, SandboxError> {
    // SAFETY: fd 3 was placed by the launcher's pre_exec and nothing else owns it.
    // If it is not open the sockopt check below fails and we drop nothing valid.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ZYGOTE_CONTROL_FD) };
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::SeqPacket) => {}
        _ => {
            return Err(SandboxError::ZygoteStart(
                "fd 3 is not the pool's control socket (the zygote is started by the pool, not by hand)".into(),
            ));
        }
    }
    // SAFETY: fd 3 is an open socket (checked) that no other owner holds.
    Ok(unsafe { OwnedFd::from_raw_fd(ZYGOTE_CONTROL_FD) })
}
