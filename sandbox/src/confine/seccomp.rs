//! Layer 6: the seccomp allow-list.
//!
//! Invariants after [`apply`]: the worker can make only the system calls in
//! [`ALLOW_LIST`], with the argument conditions given there (I/O only on its
//! socket and on stdout/stderr, memory never executable, signals only
//! `SIGABRT` to itself); any other call ends the process with `SIGSYS`. The
//! filter also rejects every other syscall ABI (32-bit, x32) of the
//! architecture.
//!
//! Why the worker dies rather than getting `EPERM`: the Rhai engine and the
//! libraries under it do not expect those calls to fail; a script that
//! reached one is doing something the platform never offers, most likely
//! through an interpreter bug, so the process is no longer trustworthy. A
//! kill is also unambiguous for the supervisor ("sandbox violation"), while
//! an `EPERM` would let an attacker probe the filter at leisure.
//!
//! How the supervisor learns the syscall number ([`ViolationAction::Report`],
//! the default): the filter returns `SECCOMP_RET_TRAP`, so the kernel skips
//! the call and raises `SIGSYS` with the syscall number in `siginfo`. A
//! one-shot handler (`SA_RESETHAND`) writes a single line
//! (`picloud-sandbox: seccomp violation pid=P syscall=N`, see
//! [`ViolationReport`]) to fd 2 and makes a forbidden call again; the
//! handler is then back to the default, so the kernel kills the process
//! with `SIGSYS` as it would have with `SECCOMP_RET_KILL_PROCESS`. The call
//! never runs either way, and a forced `SIGSYS` cannot be blocked or
//! ignored. [`ViolationAction::Kill`] uses `SECCOMP_RET_KILL_PROCESS`
//! directly (no line; the kernel's audit log still has the number).
//!
//! The BPF program is compiled once, before fork ([`SeccompProgram`]); the
//! only per-worker part is the worker's pid (so `tgkill` reaches only the
//! worker itself), patched into a copy of the program at apply time.
//!
//! Why the program loads an argument it never uses ([`skip_action_cache`]):
//! when a filter is installed, the kernel (5.11 and later) works out which
//! system calls it allows whatever their arguments, by running the program
//! on every syscall number, with interrupts off. For this linear allow-list
//! that was about 6 % of all CPU time in `per-invocation` mode, where every
//! invocation installs the filter in a new process. A load of an argument
//! right after the architecture check makes the kernel give up on every
//! number at once. The price is that the filter runs on every system call
//! a worker makes, tens of nanoseconds each, on the few calls per invocation
//! a worker makes.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

use super::{Applied, ConfineError, ConfinementPlan};

#[cfg(target_arch = "x86_64")]
const TARGET: Option<TargetArch> = Some(TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const TARGET: Option<TargetArch> = Some(TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TARGET: Option<TargetArch> = None;

/// The architecture the allow-list is built for, if this one has one.
pub const ARCH_NAME: Option<&str> = match TARGET {
    Some(_) => Some(std::env::consts::ARCH),
    None => None,
};

/// What the filter does with a call outside the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationAction {
    /// Trap, write a [`ViolationReport`] line to fd 2, die by `SIGSYS`.
    Report,
    /// `SECCOMP_RET_KILL_PROCESS`: die by `SIGSYS` at once.
    Kill,
}

/// A descriptor the worker may do I/O on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdRole {
    /// The worker's socket to the pool.
    Socket,
    /// fd 1 (`/dev/null` after the fds layer; stray prints are harmless).
    Stdout,
    /// fd 2 (abort and panic messages, violation reports).
    Stderr,
}

/// The condition on an allowed call's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRule {
    /// Any arguments.
    Any,
    /// Argument 0 is one of these descriptors.
    Fd(&'static [FdRole]),
    /// Argument 2 (the protection) has no `PROT_EXEC`.
    NoExec,
    /// Argument 2 (the advice) is one of these.
    Advice(&'static [libc::c_int]),
    /// Argument 1 (the command) is one of these.
    Command(&'static [libc::c_int]),
    /// `tgkill(own pid, _, signal)`.
    OwnProcessSignal(libc::c_int),
}

/// One allowed system call.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub name: &'static str,
    pub nr: libc::c_long,
    pub rule: ArgRule,
    /// Who needs it.
    pub why: &'static str,
}

const SOCKET: &[FdRole] = &[FdRole::Socket];

const fn allow(name: &'static str, nr: libc::c_long, rule: ArgRule, why: &'static str) -> Allowed {
    Allowed {
        name,
        nr,
        rule,
        why,
    }
}

/// Every system call a confined worker may make. The numbers come from
/// `libc::SYS_*` for the target architecture (`x86_64` and `aarch64` share the
/// names used here; aarch64 simply has no legacy calls such as `open` or
/// `fork`, which are not allowed anyway).
pub const ALLOW_LIST: &[Allowed] = &[
    allow(
        "read",
        libc::SYS_read,
        ArgRule::Fd(SOCKET),
        "request frames",
    ),
    allow(
        "readv",
        libc::SYS_readv,
        ArgRule::Fd(SOCKET),
        "request frames (vectored)",
    ),
    allow(
        "ppoll",
        libc::SYS_ppoll,
        ArgRule::Any,
        "wait for a request without being woken when the pool reads an answer",
    ),
    allow(
        "recvfrom",
        libc::SYS_recvfrom,
        ArgRule::Fd(SOCKET),
        "request frames (std UnixStream)",
    ),
    allow(
        "recvmsg",
        libc::SYS_recvmsg,
        ArgRule::Fd(SOCKET),
        "request frames (ancillary data)",
    ),
    allow(
        "write",
        libc::SYS_write,
        ArgRule::Fd(&[FdRole::Socket, FdRole::Stdout, FdRole::Stderr]),
        "response frames; abort and panic messages",
    ),
    allow(
        "writev",
        libc::SYS_writev,
        ArgRule::Fd(&[FdRole::Socket, FdRole::Stderr]),
        "response frames (vectored)",
    ),
    allow(
        "sendto",
        libc::SYS_sendto,
        ArgRule::Fd(SOCKET),
        "response frames (std UnixStream)",
    ),
    allow(
        "sendmsg",
        libc::SYS_sendmsg,
        ArgRule::Fd(SOCKET),
        "response frames (ancillary data)",
    ),
    allow(
        "close",
        libc::SYS_close,
        ArgRule::Any,
        "dropping its own descriptors at exit",
    ),
    allow(
        "sigaltstack",
        libc::SYS_sigaltstack,
        ArgRule::Any,
        "std removes its stack-overflow handler's stack at exit",
    ),
    allow(
        "fcntl",
        libc::SYS_fcntl,
        ArgRule::Command(&[libc::F_GETFD]),
        "std's check that a descriptor is open when it is dropped",
    ),
    allow(
        "mmap",
        libc::SYS_mmap,
        ArgRule::NoExec,
        "heap (never executable)",
    ),
    allow(
        "mprotect",
        libc::SYS_mprotect,
        ArgRule::NoExec,
        "heap arenas (never executable)",
    ),
    allow("munmap", libc::SYS_munmap, ArgRule::Any, "heap"),
    allow(
        "mremap",
        libc::SYS_mremap,
        ArgRule::Any,
        "heap (large realloc)",
    ),
    allow("brk", libc::SYS_brk, ArgRule::Any, "heap"),
    allow(
        "madvise",
        libc::SYS_madvise,
        ArgRule::Advice(&[libc::MADV_DONTNEED, libc::MADV_FREE]),
        "heap trimming",
    ),
    allow(
        "clock_gettime",
        libc::SYS_clock_gettime,
        ArgRule::Any,
        "deadlines, CPU time, now()",
    ),
    allow(
        "getrandom",
        libc::SYS_getrandom,
        ArgRule::Any,
        "uuid(), hash seeds",
    ),
    allow(
        "futex",
        libc::SYS_futex,
        ArgRule::Any,
        "locks in std and the allocator",
    ),
    allow(
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        ArgRule::Any,
        "abort path",
    ),
    allow(
        "rt_sigreturn",
        libc::SYS_rt_sigreturn,
        ArgRule::Any,
        "return from the stack-overflow and trap handlers",
    ),
    allow(
        "getpid",
        libc::SYS_getpid,
        ArgRule::Any,
        "abort path, violation report",
    ),
    allow("gettid", libc::SYS_gettid, ArgRule::Any, "abort path"),
    allow(
        "tgkill",
        libc::SYS_tgkill,
        ArgRule::OwnProcessSignal(libc::SIGABRT),
        "abort path: SIGABRT to itself only",
    ),
    allow("exit", libc::SYS_exit, ArgRule::Any, "exit"),
    allow("exit_group", libc::SYS_exit_group, ArgRule::Any, "exit"),
];

/// A forbidden call the trap handler makes to turn the trap into a kill.
const REARM_SYSCALL: libc::c_long = libc::SYS_kill;

/// Stands for the worker's pid in the compiled program; above any possible
/// pid (`pid_max` is at most 2^22), so an unpatched program allows nothing.
const PID_PLACEHOLDER: u32 = 0x7fff_fe11;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_LD | BPF_W | BPF_ABS`.
const BPF_LD_W_ABS: u16 = 0x20;
/// Offsets in `struct seccomp_data`: the syscall number and the low word
/// of the first argument (both targets are little-endian).
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARG0_LOW: u32 = 16;
/// seccompiler's architecture check: load, compare, kill.
const ARCH_CHECK_LEN: usize = 3;

/// The compiled filter, ready to install in any worker of one plan.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    program: BpfProgram,
    pid_slots: Vec<usize>,
    action: ViolationAction,
}

impl SeccompProgram {
    /// Compiles [`ALLOW_LIST`] for a worker whose socket is `socket_fd`.
    pub fn compile(socket_fd: RawFd, action: ViolationAction) -> Result<Self, ConfineError> {
        let target = TARGET.ok_or(ConfineError::UnsupportedArch(std::env::consts::ARCH))?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for allowed in ALLOW_LIST {
            rules.insert(allowed.nr, rules_for(allowed.rule, socket_fd)?);
        }
        let mismatch = match action {
            ViolationAction::Report => SeccompAction::Trap,
            ViolationAction::Kill => SeccompAction::KillProcess,
        };
        let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, target)?;
        let mut program = BpfProgram::try_from(filter)?;
        skip_action_cache(&mut program);
        let pid_slots: Vec<usize> = program
            .iter()
            .enumerate()
            .filter(|(_, ins)| ins.code == BPF_JMP_JEQ_K && ins.k == PID_PLACEHOLDER)
            .map(|(i, _)| i)
            .collect();
        debug_assert!(
            !pid_slots.is_empty(),
            "tgkill's pid condition must be in the program"
        );
        Ok(Self {
            program,
            pid_slots,
            action,
        })
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    pub fn action(&self) -> ViolationAction {
        self.action
    }

    /// The program with `pid` in place of the placeholder.
    fn for_pid(&self, pid: u32) -> BpfProgram {
        let mut program = self.program.clone();
        for &slot in &self.pid_slots {
            program[slot].k = pid;
        }
        program
    }
}

/// Puts a load of the first argument between seccompiler's architecture
/// check and its load of the syscall number, which overwrites it: a no-op
/// for the filter, and the point where the kernel's search for calls that
/// are always allowed stops (see the module docs). Nothing jumps across
/// that point (the check's jump lands exactly on it; the rest jump forward
/// within the syscall chain), so no offset changes. Left as it is if
/// seccompiler ever lays the program out differently (a test notices).
fn skip_action_cache(program: &mut BpfProgram) {
    let nr_load = program.get(ARCH_CHECK_LEN);
    if nr_load.is_some_and(|ins| ins.code == BPF_LD_W_ABS && ins.k == SECCOMP_DATA_NR) {
        let mut arg_load = program[ARCH_CHECK_LEN].clone();
        arg_load.k = SECCOMP_DATA_ARG0_LOW;
        program.insert(ARCH_CHECK_LEN, arg_load);
    }
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        op,
        value,
    )?)
}

fn rules_for(rule: ArgRule, socket_fd: RawFd) -> Result<Vec<SeccompRule>, ConfineError> {
    let one = |conditions: Vec<SeccompCondition>| -> Result<SeccompRule, ConfineError> {
        Ok(SeccompRule::new(conditions)?)
    };
    Ok(match rule {
        // An empty rule list matches the call whatever its arguments.
        ArgRule::Any => Vec::new(),
        ArgRule::Fd(roles) => roles
            .iter()
            .map(|role| {
                let fd = match role {
                    FdRole::Socket => socket_fd,
                    FdRole::Stdout => 1,
                    FdRole::Stderr => 2,
                };
                let fd = u64::try_from(fd).map_err(|_| ConfineError::SeccompNotCompiled)?;
                one(vec![condition(0, SeccompCmpOp::Eq, fd)?])
            })
            .collect::<Result<_, _>>()?,
        ArgRule::NoExec => {
            let exec = u64::try_from(libc::PROT_EXEC).unwrap_or(4);
            vec![one(vec![condition(2, SeccompCmpOp::MaskedEq(exec), 0)?])?]
        }
        ArgRule::Advice(advice) => advice
            .iter()
            .map(|&a| {
                one(vec![condition(
                    2,
                    SeccompCmpOp::Eq,
                    u64::try_from(a).unwrap_or(u64::MAX),
                )?])
            })
            .collect::<Result<_, _>>()?,
        ArgRule::Command(commands) => commands
            .iter()
            .map(|&c| {
                one(vec![condition(
                    1,
                    SeccompCmpOp::Eq,
                    u64::try_from(c).unwrap_or(u64::MAX),
                )?])
            })
            .collect::<Result<_, _>>()?,
        ArgRule::OwnProcessSignal(signal) => vec![one(vec![
            condition(0, SeccompCmpOp::Eq, u64::from(PID_PLACEHOLDER))?,
            condition(
                2,
                SeccompCmpOp::Eq,
                u64::try_from(signal).unwrap_or(u64::MAX),
            )?,
        ])?],
    })
}

pub(super) fn apply(plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    let compiled = plan
        .seccomp
        .as_ref()
        .ok_or(ConfineError::SeccompNotCompiled)?;
    let pid = u32::try_from(nix::unistd::getpid().as_raw()).unwrap_or(PID_PLACEHOLDER);
    let program = compiled.for_pid(pid);
    if compiled.action == ViolationAction::Report {
        install_violation_handler()?;
    }
    seccompiler::apply_filter(&program)?;
    Ok(Applied::done(format!(
        "{} allow-list: {} calls, {} BPF instructions, violations {}",
        ARCH_NAME.unwrap_or("?"),
        ALLOW_LIST.len(),
        program.len(),
        match compiled.action {
            ViolationAction::Report => "reported then killed",
            ViolationAction::Kill => "killed",
        }
    )))
}

fn install_violation_handler() -> Result<(), ConfineError> {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe
    // (no allocation, no locks: a stack buffer and raw system calls).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&raw mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(ConfineError::last(
                super::Layer::Seccomp,
                "sigaction(SIGSYS)",
            ));
        }
    }
    Ok(())
}

/// The `_sigsys` member of `siginfo_t` on 64-bit Linux.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers, and
    // for a seccomp trap its union holds `_sigsys`.
    let syscall = if info.is_null() {
        -1
    } else {
        unsafe { (*info.cast::<SigsysInfo>()).syscall }
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut line = LineBuf::new();
    ViolationReport {
        pid,
        syscall: i64::from(syscall),
    }
    .write_to(&mut line);
    // SAFETY: writing our own stack buffer to fd 2, then two raw calls; the
    // first is forbidden, so with the handler reset the kernel kills us by
    // SIGSYS; `_exit` is only a fallback.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::syscall(REARM_SYSCALL, 0, 0);
        libc::_exit(128 + libc::SIGSYS);
    }
}

/// A fixed buffer for formatting inside the signal handler.
struct LineBuf {
    buf: [u8; 96],
    len: usize,
}

impl LineBuf {
    fn new() -> Self {
        Self {
            buf: [0; 96],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_int(&mut self, value: i64) {
        if value < 0 {
            self.push(b"-");
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

const REPORT_PREFIX: &str = "picloud-sandbox: seccomp violation pid=";

/// What the trap handler reports about a forbidden call: one line on the
/// worker's stderr, `picloud-sandbox: seccomp violation pid=P syscall=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationReport {
    pub pid: i32,
    /// The syscall number for the worker's architecture.
    pub syscall: i64,
}

impl ViolationReport {
    fn write_to(&self, line: &mut LineBuf) {
        line.push(REPORT_PREFIX.as_bytes());
        line.push_int(i64::from(self.pid));
        line.push(b" syscall=");
        line.push_int(self.syscall);
        line.push(b"\n");
    }

    /// Finds the last report in a worker's stderr output (untrusted: a
    /// script can write to stderr too, so match the pid against the worker
    /// that died). Lines that do not parse are ignored.
    pub fn find_in(output: &[u8]) -> Option<Self> {
        output
            .split(|&b| b == b'\n')
            .rev()
            .find_map(Self::parse_line)
    }

    /// Parses one line.
    pub fn parse_line(line: &[u8]) -> Option<Self> {
        let line = std::str::from_utf8(line).ok()?.trim_end();
        let rest = line.strip_prefix(REPORT_PREFIX)?;
        let (pid, syscall) = rest.split_once(" syscall=")?;
        Some(Self {
            pid: pid.parse().ok()?,
            syscall: syscall.parse().ok()?,
        })
    }

    /// The call's name when it is one an escape attempt typically makes.
    pub fn syscall_name(&self) -> Option<&'static str> {
        syscall_name(self.syscall)
    }
}

/// Names for calls that show up in violations (not a full table).
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    const NAMED: &[(libc::c_long, &str)] = &[
        (libc::SYS_openat, "openat"),
        (libc::SYS_socket, "socket"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_bind, "bind"),
        (libc::SYS_clone, "clone"),
        (libc::SYS_clone3, "clone3"),
        (libc::SYS_execve, "execve"),
        (libc::SYS_execveat, "execveat"),
        (libc::SYS_kill, "kill"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_unshare, "unshare"),
        (libc::SYS_prlimit64, "prlimit64"),
        (libc::SYS_getdents64, "getdents64"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_getppid, "getppid"),
        (libc::SYS_mkdirat, "mkdirat"),
        (libc::SYS_unlinkat, "unlinkat"),
        (libc::SYS_ioctl, "ioctl"),
    ];
    NAMED
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| *name)
        .or_else(|| ALLOW_LIST.iter().find(|a| a.nr == nr).map(|a| a.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(nr: libc::c_long) -> bool {
        ALLOW_LIST.iter().any(|a| a.nr == nr)
    }

    #[test]
    fn compiles_with_the_pid_slot_found() {
        for action in [ViolationAction::Report, ViolationAction::Kill] {
            let program = SeccompProgram::compile(3, action).unwrap();
            assert!(!program.pid_slots.is_empty());
            assert!(program.len() < 200, "{} instructions", program.len());
            let patched = program.for_pid(4242);
            assert!(patched.iter().all(|ins| ins.k != PID_PLACEHOLDER));
            assert_eq!(
                program
                    .pid_slots
                    .iter()
                    .filter(|&&i| patched[i].k == 4242)
                    .count(),
                program.pid_slots.len()
            );
        }
    }

    #[test]
    fn the_program_loads_an_argument_before_the_syscall_number() {
        let program = SeccompProgram::compile(3, ViolationAction::Kill).unwrap();
        let codes: Vec<(u16, u32)> = program.program[..5]
            .iter()
            .map(|ins| (ins.code, ins.k))
            .collect();
        assert_eq!(codes[0], (BPF_LD_W_ABS, 4), "architecture load");
        assert_eq!(codes[1].0, BPF_JMP_JEQ_K, "architecture check");
        assert_eq!(
            program.program[1].jt, 1,
            "a match jumps to the argument load"
        );
        assert_eq!(codes[3], (BPF_LD_W_ABS, SECCOMP_DATA_ARG0_LOW));
        assert_eq!(codes[4], (BPF_LD_W_ABS, SECCOMP_DATA_NR));
    }

    #[test]
    fn escape_calls_are_not_allowed() {
        for nr in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_kill,
            libc::SYS_ptrace,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_prlimit64,
            libc::SYS_rt_sigaction,
            libc::SYS_ioctl,
            libc::SYS_prctl,
            libc::SYS_seccomp,
            libc::SYS_bpf,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_perf_event_open,
            libc::SYS_pkey_mprotect,
            libc::SYS_process_vm_writev,
            libc::SYS_clock_nanosleep,
        ] {
            assert!(!allowed(nr), "{nr} must not be allowed");
        }
        // aarch64 has only prlimit64.
        #[cfg(target_arch = "x86_64")]
        assert!(!allowed(libc::SYS_setrlimit));
        assert!(!allowed(REARM_SYSCALL), "the re-arm call must trap");
    }

    #[test]
    fn numbers_are_unique() {
        let mut nrs: Vec<_> = ALLOW_LIST.iter().map(|a| a.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), ALLOW_LIST.len());
    }

    #[test]
    fn report_line_round_trips() {
        let report = ViolationReport {
            pid: 31337,
            syscall: 41,
        };
        let mut line = LineBuf::new();
        report.write_to(&mut line);
        let text = &line.buf[..line.len];
        assert_eq!(
            text,
            b"picloud-sandbox: seccomp violation pid=31337 syscall=41\n"
        );
        let mut output = b"noise\nthread panicked\n".to_vec();
        output.extend_from_slice(text);
        assert_eq!(ViolationReport::find_in(&output), Some(report));
        assert_eq!(
            ViolationReport::find_in(b"picloud-sandbox: seccomp violation pid=x syscall=1\n"),
            None
        );
        let mut negative = LineBuf::new();
        ViolationReport {
            pid: 1,
            syscall: -1,
        }
        .write_to(&mut negative);
        assert_eq!(
            ViolationReport::parse_line(&negative.buf[..negative.len]),
            Some(ViolationReport {
                pid: 1,
                syscall: -1
            })
        );
    }

    #[test]
    fn names_known_calls() {
        assert_eq!(syscall_name(libc::SYS_socket), Some("socket"));
        assert_eq!(syscall_name(libc::SYS_brk), Some("brk"));
        assert_eq!(syscall_name(-5), None);
    }
}
