//! The pool's side of one worker: its socket, its stderr pipe, a pidfd to
//! signal it, and the report of its death when the zygote reaps it.
//!
//! The socket is `interprocess`'s tokio Unix stream built from the
//! already-connected `socketpair` end (`TryFrom<OwnedFd>`): no named or
//! abstract address exists that another process could connect to.
//!
//! Invariants: every frame read is capped before it is buffered; a handle
//! that is dropped while its worker may still be running a script kills it
//! (so an abandoned invocation's late answer can never reach anyone); the
//! live-worker count drops exactly when a handle does.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use interprocess::os::unix::uds_local_socket::tokio::Stream;
use shared::ScriptId;
use tokio::sync::{Notify, oneshot};

use super::scheduler::Schedulable;
use crate::codec::{CodecError, FrameReader, decode_payload, encode_frame, write_frame_async};
use crate::death::Death;
use crate::protocol::{FromWorker, ScriptKey, ToWorkerRef};

/// What the zygote (or the pool, for orphans) learned when it reaped a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitReport {
    pub death: Death,
    pub cpu_us: u64,
}

/// Counts live handles and wakes the supervisor when one goes.
pub(crate) struct LiveToken {
    live: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl LiveToken {
    pub(crate) fn new(live: Arc<AtomicUsize>, wake: Arc<Notify>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self { live, wake }
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Bytes of a dead worker's stderr kept for classification and the log.
const STDERR_TAIL: usize = 4096;

pub(crate) struct WorkerHandle {
    pub pid: u32,
    stream: Stream,
    stderr: OwnedFd,
    pidfd: Option<OwnedFd>,
    statm: Option<std::fs::File>,
    exit: oneshot::Receiver<ExitReport>,
    exit_seen: Option<ExitReport>,
    reader: FrameReader,
    outbuf: Vec<u8>,
    /// Invocations served, this one included once it ends.
    pub served: u64,
    /// Recycle after this many (jittered per worker).
    pub recycle_after: u64,
    /// The script it runs (set at its first run in `per-script` mode).
    pub bound: Option<ScriptId>,
    /// Scripts it has compiled (bounded like its cache); the source is sent
    /// only for others. If the worker's cache dropped one, it asks.
    pub compiled: HashSet<ScriptKey>,
    pub last_used: Instant,
    pub cpu_total_us: u64,
    /// The worker may be running a script right now.
    pub in_flight: bool,
    _live: LiveToken,
}

impl Schedulable for WorkerHandle {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn bound(&self) -> Option<ScriptId> {
        self.bound
    }
    fn is_fresh(&self) -> bool {
        self.served == 0 && self.compiled.is_empty()
    }
    fn last_used(&self) -> Instant {
        self.last_used
    }
}

impl WorkerHandle {
    /// Notes that the worker compiled `key`; forgets everything past the
    /// worker's cache size (it will ask for what it lacks).
    pub(crate) fn remember_compiled(&mut self, key: ScriptKey) {
        if self.compiled.len() >= crate::worker::CACHE_ENTRIES {
            self.compiled.clear();
        }
        self.compiled.insert(key);
    }

    pub(crate) fn new(
        pid: u32,
        socket: OwnedFd,
        stderr: OwnedFd,
        pidfd: Option<OwnedFd>,
        exit: oneshot::Receiver<ExitReport>,
        recycle_after: u64,
        live: LiveToken,
    ) -> std::io::Result<Self> {
        set_nonblocking(&socket)?;
        set_nonblocking(&stderr)?;
        Ok(Self {
            pid,
            stream: Stream::try_from(socket)?,
            stderr,
            pidfd,
            statm: None,
            exit,
            exit_seen: None,
            reader: FrameReader::new(),
            outbuf: Vec::new(),
            served: 0,
            recycle_after,
            bound: None,
            compiled: HashSet::new(),
            last_used: Instant::now(),
            cpu_total_us: 0,
            in_flight: false,
            _live: live,
        })
    }

    pub(crate) async fn send(
        &mut self,
        msg: &ToWorkerRef<'_>,
        cap: usize,
    ) -> Result<(), CodecError> {
        encode_frame(msg, &mut self.outbuf, cap)?;
        write_frame_async(&mut &self.stream, &self.outbuf).await
    }

    pub(crate) async fn recv(&mut self, cap: usize) -> Result<FromWorker, CodecError> {
        let payload = self.reader.read_frame_async(&mut &self.stream, cap).await?;
        let msg = decode_payload(payload);
        // Keep a huge one-off frame's buffer from living as long as the worker.
        self.reader.consume_returned();
        msg
    }

    /// SIGKILL, through the pidfd when there is one (never a recycled pid).
    pub(crate) fn kill(&mut self) {
        if self.exit_seen.is_none()
            && let Ok(report) = self.exit.try_recv()
        {
            self.exit_seen = Some(report);
        }
        if self.exit_seen.is_some() {
            // Reaped already: its pid may belong to someone else by now.
            return;
        }
        if let Some(pidfd) = &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own; a null siginfo is allowed.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        } else if let Ok(pid) = i32::try_from(self.pid) {
            // No pidfd (a kernel before 5.3): the zygote has not reported this
            // pid reaped (checked above), so it still names our worker.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Waits (bounded) for the worker's death report, then reads the tail of its stderr.
    pub(crate) async fn death(&mut self, wait: Duration) -> (ExitReport, Vec<u8>) {
        let report = match self.exit_seen {
            Some(r) => r,
            None => match tokio::time::timeout(wait, &mut self.exit).await {
                Ok(Ok(r)) => r,
                _ => ExitReport {
                    death: Death::Unknown,
                    cpu_us: 0,
                },
            },
        };
        self.exit_seen = Some(report);
        (report, self.stderr_tail())
    }

    fn stderr_tail(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        // The pipe holds at most 64 KiB; read it all, keep the end.
        for _ in 0..32 {
            match nix::unistd::read(&self.stderr, &mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&chunk[..n]);
                    if out.len() > 2 * STDERR_TAIL {
                        out.drain(..out.len() - STDERR_TAIL);
                    }
                }
            }
        }
        if out.len() > STDERR_TAIL {
            out.drain(..out.len() - STDERR_TAIL);
        }
        out
    }

    /// Resident set size from `/proc/<pid>/statm`, if readable. The file is
    /// opened once and re-read in place: a check costs one `pread`, and an
    /// open file keeps naming this worker even if its pid is reused.
    pub(crate) fn rss_bytes(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        if self.statm.is_none() {
            self.statm = std::fs::File::open(format!("/proc/{}/statm", self.pid)).ok();
        }
        let mut buf = [0u8; 128];
        let n = self.statm.as_ref()?.read_at(&mut buf, 0).ok()?;
        let statm = std::str::from_utf8(buf.get(..n)?).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        Some(pages * page)
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // An idle worker exits on EOF when the socket closes; one that may be
        // running a script must not finish it for nobody.
        if self.in_flight {
            self.kill();
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
