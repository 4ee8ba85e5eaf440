//! What each probe must run into under each set of layers: the oracle of
//! the confinement tests (after the measured table in the sandbox
//! feasibility notes), shared by `confine_check` and `confine_host`.

#![allow(dead_code)]

use sandbox::confine::probes::{EXEC_RAN_EXIT_CODE, Probe, ProbeResult};
use sandbox::confine::seccomp::syscall_name;
use sandbox::confine::{CheckCell, Layer, LayerModes};

/// The facts about this machine the expectations depend on.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The probing process starts as root (workers then drop to nobody).
    pub root: bool,
    /// Root here may raise hard limits (not so in the project's VMs).
    pub cap_sys_resource: bool,
    pub landlock_abi: i32,
}

impl Context {
    pub fn current(landlock_abi: i32) -> Self {
        Self {
            root: nix::unistd::geteuid().is_root(),
            cap_sys_resource: has_effective_capability(CAP_SYS_RESOURCE),
            landlock_abi,
        }
    }
}

const CAP_SYS_RESOURCE: u32 = 24;

fn has_effective_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << cap) != 0)
}

/// What a cell must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The attempt got through.
    Ok,
    /// `exec` replaced the process and `/bin/sh` ran.
    ExecRan,
    /// The call `step` failed with `errno`.
    Errno(i32, &'static str),
    /// Killed by SIGSYS, the report naming one of these calls.
    Seccomp(&'static [&'static str]),
    /// Not claimed by any layer in this column: anything goes.
    Unclaimed,
}

impl Expect {
    pub fn matches(&self, cell: &CheckCell) -> bool {
        match (self, cell) {
            (Expect::Unclaimed, _)
            | (
                Expect::Ok,
                CheckCell::Returned {
                    result: ProbeResult::Allowed,
                },
            ) => true,
            (Expect::ExecRan, CheckCell::Exited { code }) => *code == EXEC_RAN_EXIT_CODE,
            (
                Expect::Errno(errno, step),
                CheckCell::Returned {
                    result: ProbeResult::Denied { errno: e, step: s },
                },
            ) => e == errno && s.name() == *step,
            (Expect::Seccomp(calls), CheckCell::Killed { signal, syscall }) => {
                *signal == libc::SIGSYS
                    && syscall
                        .and_then(syscall_name)
                        .is_some_and(|name| calls.contains(&name))
            }
            _ => false,
        }
    }
}

/// The call seccomp must name when `probe` runs into it.
pub fn seccomp_call(probe: Probe) -> &'static [&'static str] {
    match probe {
        Probe::ReadPasswd | Probe::WriteTmp | Probe::ListRoot => &["openat"],
        Probe::OpenTcpSocket | Probe::ConnectLoopback => &["socket"],
        Probe::Fork => &["clone", "clone3"],
        Probe::Exec => &["execve"],
        Probe::KillParent => &["kill"],
        Probe::Ptrace => &["ptrace"],
        // glibc's getrlimit and setrlimit are both prlimit64.
        Probe::RaiseRlimit => &["prlimit64"],
        Probe::UserNamespace => &["unshare"],
        Probe::ExecMemory => &["mmap"],
        Probe::InheritedFd => &["read"],
    }
}

/// What `probe` must run into with `modes`, in layer order of precedence:
/// seccomp first (it sees the call before anything else), then the layer
/// the kernel checks first for that call.
pub fn expected(probe: Probe, modes: LayerModes, ctx: Context) -> Expect {
    use Expect::{Errno, ExecRan, Ok, Seccomp, Unclaimed};
    let on = |l: Layer| modes.is_on(l);
    if on(Layer::Seccomp) {
        return Seccomp(seccomp_call(probe));
    }
    let landlock = on(Layer::Landlock);
    let rlimits = on(Layer::Rlimits);
    // With the privilege drop (root) or from the start (non-root) the
    // worker is not root.
    let unprivileged = !ctx.root || on(Layer::Privileges);
    match probe {
        Probe::ReadPasswd | Probe::WriteTmp | Probe::ListRoot => {
            // The descriptor table is checked before the path.
            if rlimits {
                Errno(libc::EMFILE, "open")
            } else if landlock {
                Errno(libc::EACCES, "open")
            } else {
                Ok
            }
        }
        Probe::OpenTcpSocket => {
            if rlimits {
                Errno(libc::EMFILE, "socket")
            } else {
                Ok
            }
        }
        Probe::ConnectLoopback => {
            if rlimits {
                Errno(libc::EMFILE, "socket")
            } else if landlock && ctx.landlock_abi >= 4 {
                Errno(libc::EACCES, "connect")
            } else {
                Ok
            }
        }
        Probe::Fork => {
            // RLIMIT_NPROC binds only a process without root's capabilities.
            if rlimits && unprivileged {
                Errno(libc::EAGAIN, "fork")
            } else {
                Ok
            }
        }
        Probe::Exec => {
            if landlock {
                Errno(libc::EACCES, "exec")
            } else if rlimits {
                // execve works; the loader then fails to open libc (EMFILE).
                Unclaimed
            } else {
                ExecRan
            }
        }
        Probe::KillParent => {
            // Landlock's signal scope (ABI 6+), or a root parent after the drop.
            if (landlock && ctx.landlock_abi >= 6) || (on(Layer::Privileges) && ctx.root) {
                Errno(libc::EPERM, "kill")
            } else {
                Ok
            }
        }
        Probe::Ptrace => {
            if landlock || (on(Layer::Privileges) && ctx.root) {
                Errno(libc::EPERM, "ptrace")
            } else {
                // Root may trace anything; a non-root prober traces its own uid.
                Ok
            }
        }
        Probe::RaiseRlimit => {
            // Without an rlimit in force there is nothing to raise.
            if !rlimits {
                Ok
            } else if unprivileged || !ctx.cap_sys_resource {
                Errno(libc::EPERM, "setrlimit")
            } else {
                Ok
            }
        }
        // Only seccomp stops these two: the point of the seccomp layer.
        Probe::UserNamespace => {
            if unprivileged {
                // Distributions may forbid unprivileged user namespaces.
                Unclaimed
            } else {
                Ok
            }
        }
        Probe::ExecMemory => Ok,
        Probe::InheritedFd => {
            if on(Layer::Fds) {
                Errno(libc::EBADF, "read")
            } else {
                Ok
            }
        }
    }
}
