//! Escape attempts, for `picloud sandbox check` and the confinement tests.
//!
//! Each probe makes one specific attempt with raw system calls, so the
//! result names the call that failed and its errno: a test can then assert
//! the *mechanism* (landlock's `EACCES`, the rlimit's `EMFILE`, seccomp's
//! `SIGSYS`), not only that something failed. A probe that the kernel stops
//! by a signal does not return; the process that runs it sees the signal.
//!
//! These functions are harmless outside a sandbox (signal 0, a seized but
//! never stopped victim, a scratch file that is removed) and are never
//! reachable from a script in production: only the test-only `probes`
//! feature registers them on a Rhai engine.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::str::FromStr;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

macro_rules! probes {
    ($( $variant:ident => $name:literal, $doc:literal; )*) => {
        /// One escape attempt.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Probe { $( #[doc = $doc] $variant, )* }

        impl Probe {
            pub const ALL: &'static [Probe] = &[ $( Probe::$variant, )* ];

            pub const fn name(self) -> &'static str {
                match self { $( Probe::$variant => $name, )* }
            }

            pub const fn describe(self) -> &'static str {
                match self { $( Probe::$variant => $doc, )* }
            }
        }

        impl FromStr for Probe {
            type Err = UnknownProbe;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(Probe::$variant), )*
                    _ => Err(UnknownProbe(s.chars().take(64).collect())),
                }
            }
        }
    };
}

probes! {
    ReadPasswd      => "read_passwd",      "open and read /etc/passwd";
    WriteTmp        => "write_tmp",        "create and write a file in /tmp";
    ListRoot        => "list_root",        "list the directory /";
    OpenTcpSocket   => "tcp_socket",       "create a TCP socket";
    ConnectLoopback => "connect_loopback", "connect to a TCP listener on 127.0.0.1";
    Fork            => "fork",             "fork a child process";
    Exec            => "exec",             "execve /bin/sh";
    KillParent      => "kill_parent",      "signal the parent (signal 0: the same permission check as SIGKILL)";
    Ptrace          => "ptrace",           "ptrace-seize another process";
    RaiseRlimit     => "raise_rlimit",     "raise the hard CPU-time limit";
    UserNamespace   => "user_namespace",   "unshare a new user namespace";
    ExecMemory      => "exec_memory",      "map executable memory";
    InheritedFd     => "inherited_fd",     "read a descriptor inherited from the parent";
}

/// The name matched no probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown probe `{0}`")]
pub struct UnknownProbe(pub String);

/// The system call at which a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Open,
    Read,
    Write,
    Getdents,
    Socket,
    Connect,
    Fork,
    Exec,
    Kill,
    Ptrace,
    Setrlimit,
    Unshare,
    Mmap,
}

impl Step {
    const ALL: [Step; 13] = [
        Step::Open,
        Step::Read,
        Step::Write,
        Step::Getdents,
        Step::Socket,
        Step::Connect,
        Step::Fork,
        Step::Exec,
        Step::Kill,
        Step::Ptrace,
        Step::Setrlimit,
        Step::Unshare,
        Step::Mmap,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Step::Open => "open",
            Step::Read => "read",
            Step::Write => "write",
            Step::Getdents => "getdents",
            Step::Socket => "socket",
            Step::Connect => "connect",
            Step::Fork => "fork",
            Step::Exec => "exec",
            Step::Kill => "kill",
            Step::Ptrace => "ptrace",
            Step::Setrlimit => "setrlimit",
            Step::Unshare => "unshare",
            Step::Mmap => "mmap",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.name() == s)
    }
}

/// What a probe that returned found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeResult {
    /// The attempt succeeded: nothing stopped it.
    Allowed,
    /// A call failed with this errno.
    Denied { errno: i32, step: Step },
}

impl ProbeResult {
    fn denied(step: Step) -> Self {
        Self::Denied {
            errno: Errno::last_raw(),
            step,
        }
    }

    /// One line, `probe-result allowed` or `probe-result denied errno=N step=S`.
    pub fn to_line(self) -> String {
        match self {
            ProbeResult::Allowed => "probe-result allowed\n".to_owned(),
            ProbeResult::Denied { errno, step } => {
                format!("probe-result denied errno={errno} step={}\n", step.name())
            }
        }
    }

    /// Parses [`ProbeResult::to_line`] output (untrusted: from a confined child).
    pub fn parse_line(line: &str) -> Option<Self> {
        let rest = line.trim_end().strip_prefix("probe-result ")?;
        if rest == "allowed" {
            return Some(Self::Allowed);
        }
        let rest = rest.strip_prefix("denied errno=")?;
        let (errno, step) = rest.split_once(" step=")?;
        Some(Self::Denied {
            errno: errno.parse().ok()?,
            step: Step::parse(step)?,
        })
    }

    /// `ok`, or the errno's name and the failing call (`EACCES@open`).
    pub fn short(self) -> String {
        match self {
            ProbeResult::Allowed => "ok".to_owned(),
            ProbeResult::Denied { errno, step } => {
                format!("{errno:?}@{}", step.name(), errno = Errno::from_raw(errno))
            }
        }
    }
}

/// What the probes aim at; the caller owns all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTargets {
    /// A file [`Probe::WriteTmp`] may create under `/tmp` (the caller removes it).
    pub scratch_path: CString,
    /// A TCP listener on 127.0.0.1 ([`Probe::ConnectLoopback`]).
    pub loopback_port: u16,
    /// The prober's parent ([`Probe::KillParent`]).
    pub parent_pid: i32,
    /// A process to ptrace ([`Probe::Ptrace`]).
    pub victim_pid: i32,
    /// A readable descriptor the prober inherited ([`Probe::InheritedFd`]).
    pub inherited_fd: RawFd,
}

/// Runs one probe in the calling process. May not return: seccomp kills
/// with `SIGSYS`, and an allowed [`Probe::Exec`] replaces the process with
/// `/bin/sh -c 'exit 97'`.
pub fn run(probe: Probe, targets: &ProbeTargets) -> ProbeResult {
    // SAFETY (all blocks below): raw system calls with valid pointers to
    // local buffers and NUL-terminated strings; descriptors they create are
    // closed before returning.
    match probe {
        Probe::ReadPasswd => read_file(c"/etc/passwd"),
        Probe::WriteTmp => write_tmp(&targets.scratch_path),
        Probe::ListRoot => list_root(),
        Probe::OpenTcpSocket => match tcp_socket() {
            Ok(fd) => {
                unsafe { libc::close(fd) };
                ProbeResult::Allowed
            }
            Err(denied) => denied,
        },
        Probe::ConnectLoopback => connect_loopback(targets.loopback_port),
        Probe::Fork => fork(),
        Probe::Exec => exec(),
        Probe::KillParent => check(unsafe { libc::kill(targets.parent_pid, 0) }, Step::Kill),
        Probe::Ptrace => ptrace(targets.victim_pid),
        Probe::RaiseRlimit => raise_rlimit(),
        Probe::UserNamespace => check(unsafe { libc::unshare(libc::CLONE_NEWUSER) }, Step::Unshare),
        Probe::ExecMemory => exec_memory(),
        Probe::InheritedFd => {
            let mut buf = [0u8; 1];
            let n = unsafe { libc::read(targets.inherited_fd, buf.as_mut_ptr().cast(), 1) };
            check_len(n, Step::Read)
        }
    }
}

fn check(rc: libc::c_int, step: Step) -> ProbeResult {
    if rc < 0 {
        ProbeResult::denied(step)
    } else {
        ProbeResult::Allowed
    }
}

fn check_len(rc: isize, step: Step) -> ProbeResult {
    if rc < 0 {
        ProbeResult::denied(step)
    } else {
        ProbeResult::Allowed
    }
}

fn read_file(path: &std::ffi::CStr) -> ProbeResult {
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return ProbeResult::denied(Step::Open);
    }
    let mut buf = [0u8; 64];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let result = check_len(n, Step::Read);
    unsafe { libc::close(fd) };
    result
}

fn write_tmp(path: &CString) -> ProbeResult {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return ProbeResult::denied(Step::Open);
    }
    // With RLIMIT_FSIZE 0 this write ends the process with SIGXFSZ.
    let n = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    let result = check_len(n, Step::Write);
    unsafe {
        libc::close(fd);
        libc::unlink(path.as_ptr());
    }
    result
}

fn list_root() -> ProbeResult {
    let fd = unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return ProbeResult::denied(Step::Open);
    }
    let mut buf = [0u8; 1024];
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    let result = if n < 0 {
        ProbeResult::denied(Step::Getdents)
    } else {
        ProbeResult::Allowed
    };
    unsafe { libc::close(fd) };
    result
}

fn tcp_socket() -> Result<RawFd, ProbeResult> {
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(ProbeResult::denied(Step::Socket))
    } else {
        Ok(fd)
    }
}

fn connect_loopback(port: u16) -> ProbeResult {
    let fd = match tcp_socket() {
        Ok(fd) => fd,
        Err(denied) => return denied,
    };
    let addr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap_or(16);
    let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
    let result = check(rc, Step::Connect);
    unsafe { libc::close(fd) };
    result
}

fn fork() -> ProbeResult {
    match unsafe { libc::fork() } {
        -1 => ProbeResult::denied(Step::Fork),
        0 => unsafe { libc::_exit(0) },
        child => {
            let mut status = 0;
            unsafe { libc::waitpid(child, &raw mut status, 0) };
            ProbeResult::Allowed
        }
    }
}

/// The exit code `/bin/sh` returns when [`Probe::Exec`] got through.
pub const EXEC_RAN_EXIT_CODE: i32 = 97;

fn exec() -> ProbeResult {
    let argv = [
        c"sh".as_ptr(),
        c"-c".as_ptr(),
        c"exit 97".as_ptr(),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null()];
    unsafe { libc::execve(c"/bin/sh".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    ProbeResult::denied(Step::Exec)
}

fn ptrace(victim: i32) -> ProbeResult {
    // SEIZE does not stop the victim; the attachment ends when the prober exits.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            victim,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if rc < 0 {
        ProbeResult::denied(Step::Ptrace)
    } else {
        ProbeResult::Allowed
    }
}

fn raise_rlimit() -> ProbeResult {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_CPU, &raw mut limit) } < 0 {
        return ProbeResult::denied(Step::Setrlimit);
    }
    if limit.rlim_max != libc::RLIM_INFINITY {
        limit.rlim_max = limit.rlim_max.saturating_add(3600);
    }
    check(
        unsafe { libc::setrlimit(libc::RLIMIT_CPU, &raw const limit) },
        Step::Setrlimit,
    )
}

fn exec_memory() -> ProbeResult {
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return ProbeResult::denied(Step::Mmap);
    }
    unsafe { libc::munmap(ptr, 4096) };
    ProbeResult::Allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for probe in Probe::ALL {
            assert_eq!(probe.name().parse::<Probe>(), Ok(*probe));
        }
        assert!("rm_rf".parse::<Probe>().is_err());
    }

    #[test]
    fn result_lines_round_trip() {
        for result in [
            ProbeResult::Allowed,
            ProbeResult::Denied {
                errno: libc::EACCES,
                step: Step::Open,
            },
            ProbeResult::Denied {
                errno: libc::EMFILE,
                step: Step::Socket,
            },
        ] {
            assert_eq!(ProbeResult::parse_line(&result.to_line()), Some(result));
        }
        assert_eq!(
            ProbeResult::parse_line("probe-result denied errno=13 step=format_disk"),
            None
        );
        assert_eq!(
            ProbeResult::Denied {
                errno: libc::EACCES,
                step: Step::Open
            }
            .short(),
            "EACCES@open"
        );
    }

    #[test]
    fn unconfined_probes_succeed_where_harmless() {
        // Without a sandbox these attempts work; a probe that failed here
        // would prove nothing when it fails inside one.
        let targets = ProbeTargets {
            scratch_path: CString::new(format!("/tmp/picloud-probe-unit-{}", std::process::id()))
                .unwrap(),
            loopback_port: 0,
            parent_pid: std::process::id().cast_signed(),
            victim_pid: 0,
            inherited_fd: 0,
        };
        for probe in [
            Probe::ReadPasswd,
            Probe::WriteTmp,
            Probe::ListRoot,
            Probe::OpenTcpSocket,
            Probe::KillParent,
            Probe::ExecMemory,
        ] {
            assert_eq!(
                run(probe, &targets),
                ProbeResult::Allowed,
                "{}",
                probe.name()
            );
        }
        assert!(!std::path::Path::new(targets.scratch_path.to_str().unwrap()).exists());
    }
}
