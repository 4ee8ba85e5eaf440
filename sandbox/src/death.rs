//! How a worker died, and what that means for the invocation it was running.
//!
//! The one mapping from a death (wait status, the pool's own reason for
//! killing, the tail of the worker's stderr) to an [`Outcome`] lives in
//! [`classify`]. What can and cannot be told apart:
//! - the pool's own kills are known exactly (it records why before it signals);
//! - `SIGSYS` is the seccomp filter's kill: a sandbox violation;
//! - `SIGXCPU` is the lifetime `RLIMIT_CPU` backstop;
//! - an abort whose stderr says "memory allocation of N bytes failed" is an
//!   allocation failure: the counting allocator's hard cap and `RLIMIT_AS`
//!   print the same line, so both count as the memory limit;
//! - the seccomp trap handler writes the forbidden call's number to stderr
//!   before the `SIGSYS`; [`violation_syscall`] finds it;
//! - every other end (other signals, including a `SIGKILL` from the kernel's
//!   OOM killer or an operator, and any exit) is a crashed worker.

use shared::Outcome;

/// The wait status the zygote (or the pool, for orphans) reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Nobody could reap it (it was not our child) or the status never came.
    Unknown,
}

impl Death {
    /// Decodes a raw `wait4` status.
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            Death::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Death::Signaled(libc::WTERMSIG(status))
        } else {
            Death::Unknown
        }
    }
}

/// Why the pool itself killed a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// No answer by the deadline plus the grace.
    Timeout,
    /// A frame that was oversized, undecodable, out of order or for another invocation.
    Protocol,
    /// The caller went away mid-invocation.
    Abandoned,
}

/// The outcome and the caller-facing message for an invocation whose worker
/// died. Messages name no host detail.
pub fn classify(
    death: Death,
    pool_kill: Option<KillReason>,
    stderr_tail: &[u8],
) -> (Outcome, &'static str) {
    match pool_kill {
        Some(KillReason::Timeout) => {
            return (Outcome::Timeout, "the script exceeded its wall-clock limit");
        }
        Some(KillReason::Protocol) => {
            return (
                Outcome::WorkerCrashed,
                "the worker broke the wire protocol and was stopped",
            );
        }
        Some(KillReason::Abandoned) => {
            return (Outcome::WorkerCrashed, "the invocation was abandoned");
        }
        None => {}
    }
    match death {
        Death::Signaled(libc::SIGSYS) => (
            Outcome::SandboxViolation,
            "the script attempted a forbidden system call and its worker was stopped",
        ),
        Death::Signaled(libc::SIGXCPU) => {
            (Outcome::CpuLimit, "the worker reached its CPU time limit")
        }
        Death::Signaled(libc::SIGABRT | libc::SIGSEGV | libc::SIGBUS)
            if reports_allocation_failure(stderr_tail) =>
        {
            (Outcome::MemoryLimit, "the script ran out of memory")
        }
        Death::Signaled(_) => (
            Outcome::WorkerCrashed,
            "the worker running the script was killed",
        ),
        Death::Exited(_) | Death::Unknown => (
            Outcome::WorkerCrashed,
            "the worker running the script exited unexpectedly",
        ),
    }
}

/// Rust's allocation-failure handler prints this before it aborts.
fn reports_allocation_failure(stderr_tail: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"memory allocation of ";
    stderr_tail.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// The system call a sandbox violation report on stderr names, if the
/// report is from this worker (a script cannot forge another pid's line,
/// but it could write text to stderr through an abort message).
pub fn violation_syscall(stderr_tail: &[u8], pid: u32) -> Option<i64> {
    let report = crate::confine::ViolationReport::find_in(stderr_tail)?;
    (i64::from(report.pid) == i64::from(pid)).then_some(report.syscall)
}

/// A short, log-safe rendering of a death for the operator's log.
pub fn describe(death: Death) -> String {
    match death {
        Death::Exited(code) => format!("exited with status {code}"),
        Death::Signaled(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        Death::Unknown => "ended with an unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signaled(sig: i32) -> Death {
        Death::Signaled(sig)
    }

    #[test]
    fn pool_kills_win_over_the_signal_they_caused() {
        let k = signaled(libc::SIGKILL);
        assert_eq!(
            classify(k, Some(KillReason::Timeout), b"").0,
            Outcome::Timeout
        );
        assert_eq!(
            classify(k, Some(KillReason::Protocol), b"").0,
            Outcome::WorkerCrashed
        );
        assert_eq!(
            classify(k, Some(KillReason::Abandoned), b"").0,
            Outcome::WorkerCrashed
        );
    }

    #[test]
    fn signals_map_to_the_outcome_table() {
        assert_eq!(
            classify(signaled(libc::SIGSYS), None, b"").0,
            Outcome::SandboxViolation
        );
        assert_eq!(
            classify(signaled(libc::SIGXCPU), None, b"").0,
            Outcome::CpuLimit
        );
        assert_eq!(
            classify(signaled(libc::SIGKILL), None, b"").0,
            Outcome::WorkerCrashed
        );
        assert_eq!(
            classify(signaled(libc::SIGABRT), None, b"").0,
            Outcome::WorkerCrashed
        );
        assert_eq!(
            classify(
                signaled(libc::SIGABRT),
                None,
                b"thread 'main' has overflowed its stack\n"
            )
            .0,
            Outcome::WorkerCrashed
        );
        assert_eq!(
            classify(
                signaled(libc::SIGABRT),
                None,
                b"memory allocation of 1073741824 bytes failed\n"
            )
            .0,
            Outcome::MemoryLimit
        );
        assert_eq!(
            classify(Death::Exited(0), None, b"").0,
            Outcome::WorkerCrashed
        );
        assert_eq!(
            classify(Death::Unknown, None, b"").0,
            Outcome::WorkerCrashed
        );
    }

    #[test]
    fn wait_statuses_decode() {
        // Built the way the kernel encodes them: exit code in bits 8..16, signal in 0..7.
        assert_eq!(Death::from_wait_status(3 << 8), Death::Exited(3));
        assert_eq!(
            Death::from_wait_status(libc::SIGSYS),
            Death::Signaled(libc::SIGSYS)
        );
        assert_eq!(
            Death::from_wait_status(libc::SIGKILL),
            Death::Signaled(libc::SIGKILL)
        );
        assert_eq!(
            describe(Death::Signaled(libc::SIGXCPU)),
            "killed by SIGXCPU"
        );
    }

    #[test]
    fn messages_hold_no_host_details() {
        for death in [
            signaled(libc::SIGSYS),
            signaled(libc::SIGXCPU),
            signaled(libc::SIGABRT),
            Death::Exited(1),
        ] {
            let (_, msg) = classify(death, None, b"memory allocation of 5 bytes failed /home/x");
            assert!(!msg.contains('/'), "{msg}");
        }
    }
}
