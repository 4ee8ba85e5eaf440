//! The supervisor: one task that owns the zygote, keeps the pool at its size
//! and turns the zygote's reports into worker handles and death reports.
//!
//! Invariants: live workers + spawns requested ≤ the pool's size
//! ([`crate::PoolConfig::processes`]); every
//! worker the zygote forked gets exactly one death report (from the zygote,
//! or from our own `waitpid` when the zygote died and we inherited it as the
//! child subreaper); a zygote that dies is restarted with backoff, and its
//! idle workers (killed with it by their parent-death signal) leave the pool.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::PoolShared;
use super::handle::{ExitReport, LiveToken, WorkerHandle};
use crate::control::{self, Received};
use crate::death::{Death, describe};
use crate::error::SandboxError;
use crate::protocol::{
    FromWorker, MAX_CONTROL_BYTES, PROTOCOL_VERSION, ZygoteInit, ZygoteReply, ZygoteRequest,
};
use crate::zygote::launch::launch;

/// Longest wait for a new zygote's `Ready`.
const ZYGOTE_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `Hello` frame.
const HELLO_CAP: usize = 256;
/// Longest wait for a death report before classifying without it.
pub(crate) const DEATH_REPORT_WAIT: Duration = Duration::from_secs(2);
/// Longest pause between attempts when the zygote or workers keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct ZygoteConn {
    child: Child,
    control: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

/// Launches a zygote and waits for it to be ready.
pub(crate) async fn start_zygote(shared: &PoolShared) -> Result<ZygoteConn, SandboxError> {
    let launched = launch(&shared.config.executable)?;
    let mut child = launched.child;
    let config = &shared.config;
    let init = ZygoteInit {
        heap_hard_cap_bytes: config.heap_hard_cap_bytes,
        confine: config.confine,
        allow_weak_sandbox: config.allow_weak_sandbox,
        worker_user: config.worker_user.clone(),
        worker_cpu_limit_secs: config.worker_cpu_limit.as_secs().max(1),
        worker_address_space_bytes: config.worker_address_space_bytes,
        pin_workers: config.pin_workers,
    };
    match handshake(launched.control, init).await {
        Ok((control, buf)) => {
            shared.zygote_pid.store(child.id(), Ordering::SeqCst);
            Ok(ZygoteConn {
                child,
                control,
                buf,
            })
        }
        Err(e) => {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            Err(match e {
                SandboxError::ZygoteStart(_) => e,
                other => SandboxError::ZygoteStart(format!(
                    "{other} (does {} call sandbox::run_zygote_if_requested first in main?)",
                    shared.config.executable.display()
                )),
            })
        }
    }
}

async fn handshake(
    control: OwnedFd,
    init: ZygoteInit,
) -> Result<(AsyncFd<OwnedFd>, Vec<u8>), SandboxError> {
    set_nonblocking(&control)?;
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open as
    // long as it is registered.
    let control = unsafe {
        AsyncFd::register_with_interest(control, Interest::READABLE | Interest::WRITABLE)
    }
    .map_err(|e| SandboxError::Io(e.into_parts().1))?;
    let mut buf = vec![0; MAX_CONTROL_BYTES];
    send(&control, &ZygoteRequest::Init(init)).await?;
    let reply = tokio::time::timeout(ZYGOTE_READY_TIMEOUT, recv(&control, &mut buf))
        .await
        .map_err(|_| SandboxError::ZygoteStart("no Ready from the zygote in time".into()))??;
    match reply {
        Received::Message(ZygoteReply::Ready { protocol, .. }, _) if protocol == PROTOCOL_VERSION => Ok((control, buf)),
        Received::Message(other, _) => Err(SandboxError::ZygoteStart(format!("unexpected first reply {other:?}"))),
        Received::Closed => Err(SandboxError::ZygoteStart(
            "the zygote exited at start (does the executable call sandbox::run_zygote_if_requested first in main?)"
                .into(),
        )),
    }
}

async fn send(control: &AsyncFd<OwnedFd>, msg: &ZygoteRequest) -> Result<(), SandboxError> {
    loop {
        let mut guard = control.writable().await?;
        match guard.try_io(|fd| control::send(fd.get_ref().as_fd(), msg, &[]).map_err(would_block))
        {
            Ok(result) => return result.map_err(unwrap_would_block),
            Err(_would_block) => {}
        }
    }
}

async fn recv(
    control: &AsyncFd<OwnedFd>,
    buf: &mut [u8],
) -> Result<Received<ZygoteReply>, SandboxError> {
    loop {
        let mut guard = control.readable().await?;
        match guard.try_io(|fd| control::recv(fd.get_ref().as_fd(), buf).map_err(would_block)) {
            Ok(result) => return result.map_err(unwrap_would_block),
            Err(_would_block) => {}
        }
    }
}

/// `try_io` needs `io::Error`; carry ours inside it and unwrap it after.
fn would_block(e: SandboxError) -> std::io::Error {
    match e {
        SandboxError::Sys(nix::errno::Errno::EAGAIN) => std::io::ErrorKind::WouldBlock.into(),
        other => std::io::Error::other(other),
    }
}

fn unwrap_would_block(e: std::io::Error) -> SandboxError {
    match e.downcast::<SandboxError>() {
        Ok(inner) => inner,
        Err(e) => SandboxError::Io(e),
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The supervisor's own bookkeeping.
#[derive(Default)]
struct Books {
    /// Death-report senders of every forked, unreaped worker.
    exits: HashMap<u32, oneshot::Sender<ExitReport>>,
    /// Spawns asked of the zygote and not yet answered.
    requested: HashMap<u64, Instant>,
    next_seq: u64,
    /// Consecutive zygote start failures, for backoff.
    zygote_failures: u32,
}

/// Runs until the pool closes; then closes the zygote's socket (which makes
/// it kill its workers and exit) and reaps it.
pub(crate) async fn supervise(shared: Arc<PoolShared>, first: ZygoteConn) {
    let mut books = Books::default();
    let mut zygote = Some(first);
    while !shared.closed.load(Ordering::SeqCst) {
        let Some(z) = zygote.as_mut() else {
            match start_zygote(&shared).await {
                Ok(z) => {
                    tracing::warn!("executor pool: zygote restarted");
                    shared
                        .counters
                        .zygote_restarts
                        .fetch_add(1, Ordering::Relaxed);
                    shared.zygote_up.store(true, Ordering::SeqCst);
                    shared.set_problem(None);
                    books.zygote_failures = 0;
                    zygote = Some(z);
                }
                Err(e) => {
                    books.zygote_failures += 1;
                    tracing::error!(error = %e, "executor pool: cannot start the zygote");
                    shared.set_problem(Some(format!("the worker zygote cannot start: {e}")));
                    tokio::select! {
                        () = tokio::time::sleep(backoff(books.zygote_failures)) => {}
                        () = shared.wake.notified() => {}
                    }
                }
            }
            continue;
        };
        // A spawn the zygote never answered is given up, so it is asked again.
        let before = books.requested.len();
        let patience = shared.config.worker_start_timeout;
        books
            .requested
            .retain(|_, asked| asked.elapsed() < patience);
        if books.requested.len() < before {
            shared.start_failed("the zygote did not answer a spawn request in time");
        }
        if let Err(e) = top_up(&shared, z, &mut books).await {
            tracing::error!(error = %e, "executor pool: zygote control channel failed");
            zygote_died(&shared, zygote.take(), &mut books).await;
            continue;
        }
        let pause = match shared.start_failures.load(Ordering::Relaxed) {
            0 => Duration::from_secs(1),
            n => backoff(n),
        };
        tokio::select! {
            reply = recv(&z.control, &mut z.buf) => match reply {
                Ok(Received::Message(reply, fds)) => on_reply(&shared, &mut books, &reply, fds),
                Ok(Received::Closed) => {
                    tracing::warn!("executor pool: the zygote died; restarting it");
                    zygote_died(&shared, zygote.take(), &mut books).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "executor pool: bad message from the zygote; restarting it");
                    zygote_died(&shared, zygote.take(), &mut books).await;
                }
            },
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
    shared.zygote_up.store(false, Ordering::SeqCst);
    if let Some(z) = zygote {
        let ZygoteConn {
            mut child, control, ..
        } = z;
        drop(control);
        let _ = tokio::task::spawn_blocking(move || {
            // It exits on its own once the socket closes; do not wait forever.
            for _ in 0..50 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = failures.min(10);
    Duration::from_millis(50u64 << exp).min(MAX_BACKOFF)
}

/// Asks the zygote for as many workers as the pool lacks.
async fn top_up(
    shared: &PoolShared,
    z: &ZygoteConn,
    books: &mut Books,
) -> Result<(), SandboxError> {
    // Workers that keep failing to start are retried with backoff, not in a tight loop.
    let failing = shared.start_failures.load(Ordering::Relaxed);
    if failing > 0 && shared.last_start_failure_age() < backoff(failing) {
        return Ok(());
    }
    let size = shared.config.processes();
    while shared.live.load(Ordering::SeqCst) + books.requested.len() < size {
        let seq = books.next_seq;
        books.next_seq += 1;
        send(&z.control, &ZygoteRequest::Spawn { seq }).await?;
        books.requested.insert(seq, Instant::now());
        if failing > 0 {
            // One probe at a time while failing.
            break;
        }
    }
    Ok(())
}

fn on_reply(shared: &Arc<PoolShared>, books: &mut Books, reply: &ZygoteReply, fds: Vec<OwnedFd>) {
    match *reply {
        ZygoteReply::Spawned { seq, pid, pidfd } => {
            let asked = books.requested.remove(&seq).unwrap_or_else(Instant::now);
            let mut fds = fds.into_iter();
            let (Some(socket), Some(stderr)) = (fds.next(), fds.next()) else {
                tracing::error!(pid, "executor pool: spawn reply without descriptors");
                shared.start_failed("the zygote sent a worker without its descriptors");
                return;
            };
            let pidfd = if pidfd { fds.next() } else { None };
            let (tx, rx) = oneshot::channel();
            books.exits.insert(pid, tx);
            let live = LiveToken::new(shared.live.clone(), shared.wake.clone());
            match WorkerHandle::new(pid, socket, stderr, pidfd, rx, recycle_budget(shared), live) {
                Ok(handle) => {
                    tokio::spawn(await_hello(shared.clone(), handle, asked));
                }
                Err(e) => {
                    tracing::error!(pid, error = %e, "executor pool: cannot adopt a worker socket");
                    shared.start_failed("cannot adopt a worker socket");
                }
            }
        }
        ZygoteReply::SpawnFailed { seq, errno } => {
            books.requested.remove(&seq);
            let err = nix::errno::Errno::from_raw(errno);
            tracing::error!(error = %err, "executor pool: the zygote cannot fork a worker");
            shared.start_failed(&format!("the zygote cannot fork a worker: {err}"));
        }
        ZygoteReply::Exited {
            pid,
            status,
            cpu_us,
        } => {
            let report = ExitReport {
                death: Death::from_wait_status(status),
                cpu_us,
            };
            if let Some(tx) = books.exits.remove(&pid) {
                let _ = tx.send(report);
            }
            let dead_idle = shared.lock().remove_idle(pid);
            if let Some(worker) = dead_idle {
                tracing::warn!(pid, death = %describe(report.death), "executor pool: an idle worker died");
                shared.counters.died_idle.fetch_add(1, Ordering::Relaxed);
                drop(worker);
            }
        }
        ZygoteReply::Ready { .. } => {
            tracing::warn!("executor pool: unexpected second Ready from the zygote");
        }
    }
}

/// Each worker's recycle point, drawn from `[M × (1 − jitter), M]`.
pub(super) fn recycle_budget(shared: &PoolShared) -> u64 {
    let max = shared.config.max_invocations_per_worker;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let spread = (max as f64 * shared.config.recycle_jitter) as u64;
    if spread == 0 {
        return max;
    }
    max - rand::rng().random_range(0..=spread.min(max - 1))
}

async fn await_hello(shared: Arc<PoolShared>, mut handle: WorkerHandle, asked: Instant) {
    let hello =
        tokio::time::timeout(shared.config.worker_start_timeout, handle.recv(HELLO_CAP)).await;
    match hello {
        Ok(Ok(FromWorker::Hello { pid, protocol }))
            if pid == handle.pid && protocol == PROTOCOL_VERSION =>
        {
            shared.counters.spawned.fetch_add(1, Ordering::Relaxed);
            shared.counters.ready_after(asked.elapsed());
            shared.start_succeeded();
            shared.add_fresh(handle);
        }
        other if shared.closed.load(Ordering::SeqCst) => {
            // Shutting down: the zygote ends its workers, starting ones too.
            handle.kill();
            tracing::debug!(
                pid = handle.pid,
                ?other,
                "executor pool: a starting worker ended at shutdown"
            );
        }
        other => {
            handle.kill();
            let (report, tail) = handle.death(DEATH_REPORT_WAIT).await;
            let tail = String::from_utf8_lossy(&tail);
            let why = match other {
                Err(_) => "no Hello in time".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(msg)) => format!("unexpected first message {msg:?}"),
            };
            tracing::error!(
                pid = handle.pid,
                death = %describe(report.death),
                stderr = %tail.trim(),
                "executor pool: a worker failed to start: {why}"
            );
            let first_line = tail
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            shared.start_failed(&format!("workers fail to start: {why}; {first_line}"));
        }
    }
}

/// The zygote is gone: its workers died with it (parent-death signal). Reap
/// the zygote and, as the child subreaper, the workers; report their deaths.
async fn zygote_died(shared: &PoolShared, zygote: Option<ZygoteConn>, books: &mut Books) {
    shared.zygote_up.store(false, Ordering::SeqCst);
    shared.set_problem(Some("the worker zygote died and is restarting".into()));
    books.requested.clear();
    // Closing idle workers' sockets ends any that outlived the zygote.
    let idle = shared.lock().drain_idle();
    shared
        .counters
        .died_idle
        .fetch_add(idle.len() as u64, Ordering::Relaxed);
    drop(idle);
    if let Some(ZygoteConn {
        mut child, control, ..
    }) = zygote
    {
        drop(control);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = child.kill();
            child.wait()
        })
        .await;
    }
    let orphans: Vec<(u32, oneshot::Sender<ExitReport>)> = books.exits.drain().collect();
    let _ = tokio::task::spawn_blocking(move || {
        for (pid, tx) in orphans {
            let _ = tx.send(ExitReport {
                death: reap_orphan(pid),
                cpu_us: 0,
            });
        }
    })
    .await;
}

/// Reaps an orphaned worker we inherited as subreaper, killing it first if
/// it outlived the zygote (its parent-death signal is lost if its
/// credentials changed after it was armed). Only a pid that `waitpid` shows
/// to be our own unreaped child is signalled, so no recycled pid is hit.
fn reap_orphan(pid: u32) -> Death {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let Ok(raw) = i32::try_from(pid) else {
        return Death::Unknown;
    };
    let pid = nix::unistd::Pid::from_raw(raw);
    for attempt in 0..100 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Death::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Death::Signaled(sig as i32),
            Ok(_) => {
                if attempt == 0 {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Not our child (no subreaper, or the zygote reaped it): nothing to learn.
            Err(_) => return Death::Unknown,
        }
    }
    Death::Unknown
}
