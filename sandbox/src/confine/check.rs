//! `picloud sandbox check`: every probe, each in a fresh confined child.
//!
//! For each column (a set of layers) and each [`Probe`], the calling process
//! forks a child that confines itself with that column's plan, runs the
//! probe and reports on a pipe; the parent records how the child ended.
//! The first column has every layer on: under it every probe must be
//! blocked. The others ([`CheckConfig::standard`]) have one layer alone
//! each, to show what that layer stops by itself on this machine, and
//! every layer but seccomp, to show what still stands beneath it.
//!
//! Invariants: every child is waited for (killed after a deadline), the
//! victim process is killed and reaped, the scratch file is removed, and
//! everything read from a child is size-capped and parsed without panics.
//! Call this from a process that has not started threads where possible:
//! the children are forks of it.

use std::ffi::CString;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use super::kernel::{KernelSupport, probe_kernel};
use super::probes::{self, EXEC_RAN_EXIT_CODE, Probe, ProbeResult, ProbeTargets};
use super::seccomp::ViolationReport;
use super::{ConfineError, ConfinementPlan, ExpectedParent, Layer, LayerModes, PlanOptions, apply};

/// The fd the child reports on; also its "worker socket".
const RESULT_FD: RawFd = 3;
/// Exit code of a child whose confinement failed.
const CONFINE_FAILED_EXIT: i32 = 70;
const OUTPUT_CAP: usize = 16 * 1024;
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

/// One column of the table: which layers are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub name: String,
    pub modes: LayerModes,
}

impl CheckConfig {
    /// Every layer on.
    pub fn all() -> Self {
        Self {
            name: "all".to_owned(),
            modes: LayerModes::default(),
        }
    }

    /// `layer` alone: what it stops by itself.
    pub fn only(layer: Layer) -> Self {
        Self {
            name: format!("only {layer}"),
            modes: LayerModes::only(layer),
        }
    }

    /// Every layer but `layer`: what still stops each attempt without it.
    pub fn all_but(layer: Layer) -> Self {
        Self {
            name: format!("no {layer}"),
            modes: LayerModes::all_but(layer),
        }
    }

    /// The columns of `picloud sandbox check`: all layers, each layer
    /// alone, and everything but seccomp (the defence beneath it).
    pub fn standard() -> Vec<Self> {
        let mut columns = vec![Self::all()];
        columns.extend(Layer::ALL.iter().map(|&l| Self::only(l)));
        columns.push(Self::all_but(Layer::Seccomp));
        columns
    }

    /// All layers, each alone, and each switched off in turn.
    pub fn matrix() -> Vec<Self> {
        let mut columns = vec![Self::all()];
        columns.extend(Layer::ALL.iter().map(|&l| Self::only(l)));
        columns.extend(Layer::ALL.iter().map(|&l| Self::all_but(l)));
        columns
    }
}

/// How one confined child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CheckCell {
    /// The probe returned.
    Returned { result: ProbeResult },
    /// A signal ended the child (`SIGSYS`: seccomp; `syscall` from the
    /// violation report when there was one).
    Killed { signal: i32, syscall: Option<i64> },
    /// The child exited without a result: the probe replaced or ended the
    /// process (an allowed `exec` exits with 97).
    Exited { code: i32 },
    /// Confinement or the harness failed; the message says why.
    Error { message: String },
}

impl CheckCell {
    /// The attempt did not get through.
    pub fn blocked(&self) -> bool {
        matches!(
            self,
            CheckCell::Returned {
                result: ProbeResult::Denied { .. }
            } | CheckCell::Killed { .. }
        )
    }

    /// A short text for the table: `ok`, `EACCES@open`, `SIGSYS(socket)`,
    /// `exit 97`, `error`.
    pub fn short(&self) -> String {
        match self {
            CheckCell::Returned { result } => result.short(),
            CheckCell::Killed { signal, syscall } => {
                let name = Signal::try_from(*signal)
                    .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
                match syscall {
                    Some(nr) => match super::seccomp::syscall_name(*nr) {
                        Some(call) => format!("{name}({call})"),
                        None => format!("{name}(#{nr})"),
                    },
                    None => name,
                }
            }
            CheckCell::Exited { code } if *code == EXEC_RAN_EXIT_CODE => "ok (exec ran)".to_owned(),
            CheckCell::Exited { code } => format!("exit {code}"),
            CheckCell::Error { .. } => "error".to_owned(),
        }
    }
}

/// One probe across all columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    pub probe: Probe,
    pub cells: Vec<CheckCell>,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckTable {
    pub kernel: KernelSupport,
    pub uid: u32,
    pub columns: Vec<String>,
    pub rows: Vec<CheckRow>,
    /// The harness could not be set up (no rows then).
    pub setup_error: Option<String>,
}

impl CheckTable {
    /// Every probe is blocked in the first column (every layer on).
    pub fn fully_blocked(&self) -> bool {
        self.setup_error.is_none()
            && !self.rows.is_empty()
            && self
                .rows
                .iter()
                .all(|row| row.cells.first().is_some_and(CheckCell::blocked))
    }

    /// The cell for `probe` in column `column`.
    pub fn cell(&self, probe: Probe, column: usize) -> Option<&CheckCell> {
        self.rows
            .iter()
            .find(|r| r.probe == probe)?
            .cells
            .get(column)
    }
}

impl std::fmt::Display for CheckTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let landlock = match self.kernel.landlock {
            super::LandlockSupport::Available { abi } => format!("ABI {abi}"),
            super::LandlockSupport::NotEnabled => "not enabled".to_owned(),
            super::LandlockSupport::NotImplemented => "absent".to_owned(),
        };
        writeln!(
            f,
            "arch {}, uid {}, landlock {landlock}, seccomp {}",
            self.kernel.arch,
            self.uid,
            if self.kernel.seccomp_filter {
                "yes"
            } else {
                "NO"
            }
        )?;
        if let Some(err) = &self.setup_error {
            return writeln!(f, "setup failed: {err}");
        }
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.cells.iter().map(CheckCell::short).collect())
            .collect();
        let first = self
            .rows
            .iter()
            .map(|r| r.probe.name().len())
            .max()
            .unwrap_or(5)
            .max(5);
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
                    .max(c.len())
            })
            .collect();
        write!(f, "{:first$}", "probe")?;
        for (c, w) in self.columns.iter().zip(&widths) {
            write!(f, "  {c:w$}")?;
        }
        writeln!(f)?;
        for (row, texts) in self.rows.iter().zip(&cells) {
            write!(f, "{:first$}", row.probe.name())?;
            for (t, w) in texts.iter().zip(&widths) {
                write!(f, "  {t:w$}")?;
            }
            writeln!(f)?;
        }
        let errors: Vec<_> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.cells
                    .iter()
                    .zip(&self.columns)
                    .map(move |(c, col)| (r.probe, col, c))
            })
            .filter_map(|(p, col, c)| match c {
                CheckCell::Error { message } => Some(format!("{} / {col}: {message}", p.name())),
                _ => None,
            })
            .collect();
        for e in errors {
            writeln!(f, "error: {e}")?;
        }
        writeln!(
            f,
            "{}",
            if self.fully_blocked() {
                "verdict: every probe is blocked with all layers on"
            } else {
                "verdict: SOME PROBE GOT THROUGH with all layers on"
            }
        )
    }
}

/// Runs every probe under every standard column with the worker plan from
/// the environment (`PICLOUD_WORKER_USER`; weak layers are never allowed
/// here, so a missing layer shows up as errors).
pub fn check() -> CheckTable {
    // Each column sets its own layer modes, all required.
    let options = PlanOptions::from_lookup(|k| std::env::var(k).ok());
    check_with(&options, &CheckConfig::standard())
}

/// Runs every probe under each column; `base` gives everything but the layer modes.
pub fn check_with(base: &PlanOptions, columns: &[CheckConfig]) -> CheckTable {
    let mut table = CheckTable {
        kernel: probe_kernel(),
        uid: nix::unistd::getuid().as_raw(),
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        rows: Vec::new(),
        setup_error: None,
    };
    let harness = match Harness::new() {
        Ok(h) => h,
        Err(e) => {
            table.setup_error = Some(e.to_string());
            return table;
        }
    };
    let plans: Vec<Result<ConfinementPlan, String>> = columns
        .iter()
        .map(|c| {
            let options = PlanOptions {
                modes: c.modes,
                parent: ExpectedParent::PlanBuilder,
                ..base.clone()
            };
            ConfinementPlan::new(RESULT_FD, &options).map_err(|e| e.to_string())
        })
        .collect();
    for &probe in Probe::ALL {
        let cells = plans
            .iter()
            .map(|plan| match plan {
                Ok(plan) => harness.run(plan, probe),
                Err(message) => CheckCell::Error {
                    message: message.clone(),
                },
            })
            .collect();
        table.rows.push(CheckRow { probe, cells });
    }
    table
}

/// Confines a fresh fork of the calling process with `options` and runs
/// one probe in it against `targets`; the caller owns the targets.
pub fn run_probe(
    options: &PlanOptions,
    probe: Probe,
    targets: &ProbeTargets,
) -> Result<CheckCell, ConfineError> {
    let plan = ConfinementPlan::new(
        RESULT_FD,
        &PlanOptions {
            parent: ExpectedParent::PlanBuilder,
            ..options.clone()
        },
    )?;
    Ok(run_in_child(&plan, probe, targets))
}

/// The things probes aim at, owned by the checking process.
struct Harness {
    listener: TcpListener,
    victim: Pid,
    /// `/dev/zero`, inherited by every child (never blocks, never runs dry).
    _inherited: OwnedFd,
    targets: ProbeTargets,
}

impl Harness {
    fn new() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let inherited = lift_above(&std::fs::File::open("/dev/zero")?.into(), 10)?;
        // SAFETY: the victim child only waits for its signal; it touches no
        // lock the parent could hold.
        let victim = match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
            nix::unistd::ForkResult::Child => loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let scratch = format!("/tmp/picloud-sandbox-check-{}", std::process::id());
        let targets = ProbeTargets {
            scratch_path: CString::new(scratch).map_err(std::io::Error::other)?,
            loopback_port: listener.local_addr()?.port(),
            parent_pid: nix::unistd::getpid().as_raw(),
            victim_pid: victim.as_raw(),
            inherited_fd: inherited.as_raw_fd(),
        };
        Ok(Self {
            listener,
            victim,
            _inherited: inherited,
            targets,
        })
    }

    fn run(&self, plan: &ConfinementPlan, probe: Probe) -> CheckCell {
        let cell = run_in_child(plan, probe, &self.targets);
        // The listener must never see a connection the result did not admit.
        let connected = self.listener.accept().is_ok();
        let _ = std::fs::remove_file(self.targets.scratch_path.to_str().unwrap_or_default());
        match (&cell, connected) {
            (c, true) if c.blocked() => CheckCell::Error {
                message: "the loopback listener saw a connection from a blocked probe".into(),
            },
            _ => cell,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.victim, Signal::SIGKILL);
        let _ = waitpid(self.victim, None);
    }
}

/// A pipe whose ends are numbered at least `min`, so the child's `dup2`
/// onto 2 and 3 cannot clobber them.
fn pipe_above(min: RawFd) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    Ok((lift_above(&r, min)?, lift_above(&w, min)?))
}

/// Moves `fd` to a number at least `min`.
fn lift_above(fd: &OwnedFd, min: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn run_in_child(plan: &ConfinementPlan, probe: Probe, targets: &ProbeTargets) -> CheckCell {
    let fail = |message: String| CheckCell::Error { message };
    let (Ok((result_r, result_w)), Ok((stderr_r, stderr_w))) = (pipe_above(10), pipe_above(10))
    else {
        return fail("could not create pipes".into());
    };
    // SAFETY: the child only duplicates descriptors, confines itself, runs
    // the probe and exits with `_exit`; it never returns into the caller.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(format!("fork: {e}")),
        Ok(nix::unistd::ForkResult::Child) => child_main(
            plan,
            probe,
            targets,
            result_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(result_w);
            drop(stderr_w);
            let status = wait_with_deadline(child);
            let result = read_capped(result_r);
            let stderr = read_capped(stderr_r);
            classify(status, &result, &stderr, child)
        }
    }
}

fn child_main(
    plan: &ConfinementPlan,
    probe: Probe,
    targets: &ProbeTargets,
    result_w: RawFd,
    err_w: RawFd,
) -> ! {
    // SAFETY: plain descriptor calls in the freshly forked child.
    unsafe {
        libc::dup2(err_w, 2);
        libc::dup2(result_w, RESULT_FD);
    }
    let line = match apply(plan) {
        Ok(_) => probes::run(probe, targets).to_line(),
        Err(e) => {
            let text = format!("confine-error {e}\n");
            // SAFETY: writing a local buffer to our result descriptor.
            unsafe { libc::write(RESULT_FD, text.as_ptr().cast(), text.len()) };
            // SAFETY: _exit never returns and runs no destructors.
            unsafe { libc::_exit(CONFINE_FAILED_EXIT) };
        }
    };
    // SAFETY: as above.
    unsafe {
        libc::write(RESULT_FD, line.as_ptr().cast(), line.len());
        libc::_exit(0)
    }
}

fn wait_with_deadline(child: Pid) -> Option<WaitStatus> {
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if start.elapsed() > CHILD_DEADLINE {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    return waitpid(child, None).ok();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(status) => return Some(status),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Reads what a dead child left in a pipe: at most [`OUTPUT_CAP`] bytes, and
/// never blocks on a grandchild that still holds the write end.
fn read_capped(fd: OwnedFd) -> Vec<u8> {
    // SAFETY: setting O_NONBLOCK on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let _ = std::fs::File::from(fd)
        .take(OUTPUT_CAP as u64)
        .read_to_end(&mut out);
    out
}

fn classify(status: Option<WaitStatus>, result: &[u8], stderr: &[u8], child: Pid) -> CheckCell {
    let text = String::from_utf8_lossy(result);
    let line = text.lines().next().unwrap_or("");
    if let Some(result) = ProbeResult::parse_line(line) {
        return CheckCell::Returned { result };
    }
    if let Some(message) = line.strip_prefix("confine-error ") {
        return CheckCell::Error {
            message: format!(
                "confinement failed: {}",
                message.chars().take(300).collect::<String>()
            ),
        };
    }
    match status {
        Some(WaitStatus::Signaled(_, signal, _)) => CheckCell::Killed {
            signal: signal as i32,
            syscall: ViolationReport::find_in(stderr)
                .filter(|r| r.pid == child.as_raw())
                .map(|r| r.syscall),
        },
        Some(WaitStatus::Exited(_, code)) => CheckCell::Exited { code },
        other => CheckCell::Error {
            message: format!("unexpected wait status {other:?}"),
        },
    }
}
