//! The pool's side of the wire against a hostile worker: a real socket the
//! test writes raw bytes into, and a real process (`sleep`) standing in for
//! the worker's pid, so the pool's kill is real and its death is reaped.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use shared::{
    Invocation, InvocationId, InvocationOutput, Outcome, Script, ScriptRef, ScriptRequest,
    ScriptResponse,
};
use tokio::sync::oneshot;

use super::handle::{ExitReport, LiveToken, WorkerHandle};
use super::{Lease, PoolShared};
use crate::codec::{MAX_FRAME_BYTES, decode_payload, encode_frame, read_frame, write_frame};
use crate::death::Death;
use crate::protocol::{FromWorker, ToWorker};
use crate::{Isolation, PoolConfig};

fn shared() -> Arc<PoolShared> {
    let mut config = PoolConfig::new("/nonexistent".into());
    config.workers = 1;
    config.isolation = Isolation::Shared;
    PoolShared::new(config)
}

/// A lease on a "worker" whose socket's other end is returned to the test.
fn rig(shared: &Arc<PoolShared>) -> (Lease, UnixStream, u32) {
    let (pool_end, worker_end) = UnixStream::pair().unwrap();
    let (stderr_read, _stderr_write) = nix::unistd::pipe().unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    // SAFETY: pidfd_open returns a new descriptor we own, or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd =
        (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(i32::try_from(pidfd).unwrap()) });
    let (tx, rx) = oneshot::channel();
    // The zygote's part: reap the child and report how it died.
    std::thread::spawn(move || {
        let status = child.wait().unwrap();
        let death = match (status.code(), status.signal()) {
            (Some(code), _) => Death::Exited(code),
            (None, Some(sig)) => Death::Signaled(sig),
            _ => Death::Unknown,
        };
        let _ = tx.send(ExitReport { death, cpu_us: 0 });
    });
    let live = LiveToken::new(shared.live.clone(), shared.wake.clone());
    let handle =
        WorkerHandle::new(pid, pool_end.into(), stderr_read, pidfd, rx, 100, live).unwrap();
    let lease = Lease {
        shared: shared.clone(),
        key: shared::ScriptId::new(),
        worker: Some(handle),
    };
    (lease, worker_end, pid)
}

fn invocation() -> Invocation {
    Invocation {
        id: InvocationId::new(),
        script: Arc::new(ScriptRef {
            script: Script {
                id: shared::ScriptId::new(),
                name: "t".into(),
                version: 1,
                source: "1".into(),
                ..Script::default()
            },
            limits: shared::Limits::DEFAULTS,
        }),
        request: ScriptRequest::default(),
    }
}

/// Plays the worker: reads the `Run` frame, then answers with `reply(id)`.
fn hostile_worker(
    mut socket: UnixStream,
    reply: impl FnOnce(InvocationId) -> Vec<u8> + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        read_frame(&mut socket, &mut buf, MAX_FRAME_BYTES).unwrap();
        let ToWorker::Run {
            invocation, source, ..
        } = decode_payload(&buf).unwrap()
        else {
            panic!("expected Run");
        };
        assert_eq!(
            source.as_deref(),
            Some("1"),
            "a fresh worker gets the source"
        );
        let _ = write_frame(&mut socket, &reply(invocation));
        // Keep the socket open: a kill, not an EOF, must end this exchange.
        std::thread::sleep(std::time::Duration::from_secs(5));
    });
}

fn frame(msg: &FromWorker) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out, MAX_FRAME_BYTES).unwrap();
    out
}

fn done(id: InvocationId) -> FromWorker {
    FromWorker::Done {
        invocation: id,
        output: InvocationOutput {
            response: Some(ScriptResponse {
                status: 200,
                headers: vec![],
                body: b"hi".to_vec(),
            }),
            ..InvocationOutput::default()
        },
        cpu_total_us: 5,
        retire: false,
    }
}

async fn run_against(
    reply: impl FnOnce(InvocationId) -> Vec<u8> + Send + 'static,
) -> (InvocationOutput, Arc<PoolShared>, u32) {
    let shared = shared();
    let (mut lease, peer, pid) = rig(&shared);
    hostile_worker(peer, reply);
    let output = super::invoke::run(&mut lease, &invocation()).await;
    drop(lease);
    (output, shared, pid)
}

fn assert_killed(output: &InvocationOutput, shared: &PoolShared, pid: u32) {
    assert_eq!(output.outcome, Outcome::WorkerCrashed, "{output:?}");
    assert_eq!(output.stats.worker_pid, Some(pid));
    assert!(output.response.is_none());
    assert_eq!(shared.counters.crashed.load(Ordering::Relaxed), 1);
    assert_eq!(
        shared.lock().idle_count(),
        0,
        "a misbehaving worker never serves again"
    );
    assert_eq!(shared.live.load(Ordering::SeqCst), 0);
    // The stand-in process was really killed (and reaped by the rig).
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || proc_state(pid) == Some('Z')
    );
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test]
async fn an_honest_answer_is_returned_and_the_worker_kept() {
    let (output, shared, pid) = run_against(|id| frame(&done(id))).await;
    assert_eq!(output.outcome, Outcome::Ok, "{output:?}");
    assert_eq!(output.response.unwrap().body, b"hi");
    assert_eq!(output.stats.worker_pid, Some(pid));
    assert_eq!(output.stats.worker_invocations, 1);
    assert_eq!(shared.lock().idle_count(), 1);
    // Clean up the stand-in process.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn an_oversized_frame_kills_the_worker_and_fails_only_its_invocation() {
    let (output, shared, pid) = run_against(|_| u32::MAX.to_le_bytes().to_vec()).await;
    assert_killed(&output, &shared, pid);
}

#[tokio::test]
async fn an_answer_for_another_invocation_is_refused() {
    let (output, shared, pid) = run_against(|_| frame(&done(InvocationId::new()))).await;
    assert_killed(&output, &shared, pid);
}

#[tokio::test]
async fn garbage_and_trailing_bytes_are_refused() {
    let (output, shared, pid) = run_against(|_| {
        let mut f = 5u32.to_le_bytes().to_vec();
        f.extend_from_slice(&[0xff; 5]);
        f
    })
    .await;
    assert_killed(&output, &shared, pid);

    let (output, shared, pid) = run_against(|id| {
        let mut f = frame(&done(id));
        let len = u32::from_le_bytes(f[..4].try_into().unwrap()) + 1;
        f[..4].copy_from_slice(&len.to_le_bytes());
        f.push(0);
        f
    })
    .await;
    assert_killed(&output, &shared, pid);
}

#[tokio::test]
async fn an_answer_whose_outcome_and_response_disagree_is_refused() {
    let (output, shared, pid) = run_against(|id| {
        frame(&FromWorker::Done {
            invocation: id,
            output: InvocationOutput::default(), // Ok without a response
            cpu_total_us: 0,
            retire: false,
        })
    })
    .await;
    assert_killed(&output, &shared, pid);
}

#[tokio::test]
async fn a_hello_in_the_middle_of_an_invocation_is_refused() {
    let (output, shared, pid) = run_against(|_| {
        frame(&FromWorker::Hello {
            pid: 1,
            protocol: 1,
        })
    })
    .await;
    assert_killed(&output, &shared, pid);
}

#[test]
fn recycle_budgets_are_jittered_below_the_maximum() {
    let mut config = PoolConfig::new("/nonexistent".into());
    config.max_invocations_per_worker = 100;
    config.recycle_jitter = 0.1;
    let shared = PoolShared::new(config);
    let budgets: std::collections::HashSet<u64> = (0..500)
        .map(|_| super::supervisor::recycle_budget(&shared))
        .collect();
    assert!(
        budgets.iter().all(|b| (90..=100).contains(b)),
        "{budgets:?}"
    );
    assert!(budgets.len() > 5, "budgets vary: {budgets:?}");

    let mut exact = PoolConfig::new("/nonexistent".into());
    exact.max_invocations_per_worker = 100;
    exact.recycle_jitter = 0.0;
    assert_eq!(
        super::supervisor::recycle_budget(&PoolShared::new(exact)),
        100
    );

    let mut one = PoolConfig::new("/nonexistent".into());
    one.max_invocations_per_worker = 1;
    one.recycle_jitter = 0.5;
    assert_eq!(
        super::supervisor::recycle_budget(&PoolShared::new(one)),
        1,
        "never zero"
    );
}

/// Plays a worker that lacks the script: asks for the source `asks` times.
async fn run_asking(asks: usize) -> (InvocationOutput, Arc<PoolShared>, u32) {
    let shared = shared();
    let (mut lease, mut peer, pid) = rig(&shared);
    let inv = invocation();
    let key = crate::protocol::ScriptKey {
        id: inv.script.script.id,
        version: inv.script.script.version,
    };
    // The pool believes the worker has it compiled, so it sends no source.
    lease.worker.as_mut().unwrap().compiled.insert(key);
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        read_frame(&mut peer, &mut buf, MAX_FRAME_BYTES).unwrap();
        let ToWorker::Run {
            invocation: id,
            source,
            ..
        } = decode_payload(&buf).unwrap()
        else {
            panic!("expected Run");
        };
        assert_eq!(source, None);
        for _ in 0..asks {
            write_frame(
                &mut peer,
                &frame(&FromWorker::NeedSource { invocation: id }),
            )
            .unwrap();
            if read_frame(&mut peer, &mut buf, MAX_FRAME_BYTES).is_err() {
                return;
            }
            let msg: ToWorker = decode_payload(&buf).unwrap();
            assert_eq!(
                msg,
                ToWorker::Source {
                    invocation: id,
                    source: "1".into()
                }
            );
        }
        let _ = write_frame(&mut peer, &frame(&done(id)));
        std::thread::sleep(std::time::Duration::from_secs(5));
    });
    let output = super::invoke::run(&mut lease, &inv).await;
    drop(lease);
    (output, shared, pid)
}

#[tokio::test]
async fn a_worker_that_lacks_the_script_gets_its_source_once() {
    let (output, shared, pid) = run_asking(1).await;
    assert_eq!(output.outcome, Outcome::Ok, "{output:?}");
    assert_eq!(shared.lock().idle_count(), 1);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );

    let (output, shared, pid) = run_asking(2).await;
    assert_killed(&output, &shared, pid);
}
