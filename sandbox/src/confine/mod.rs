//! Worker confinement: the layers applied after fork, before the first request.
//!
//! A worker is confined as if the script inside it already ran native code.
//! [`apply`] runs six named layers, each in its own module, in this order of
//! trust (issue #4, `docs/sandbox.md`):
//!
//! 1. [`fds`](Layer::Fds): parent-death signal, every inherited descriptor
//!    closed but the worker's socket (stdin/stdout on `/dev/null`, stderr
//!    kept only when it is not a regular file), environment cleared, new
//!    session.
//! 2. [`privileges`](Layer::Privileges): when started as root, drop to the
//!    worker uid/gid with no supplementary groups; every capability dropped.
//! 3. [`prctl`](Layer::Prctl): `no_new_privs`, not dumpable.
//! 4. [`rlimits`](Layer::Rlimits): address space, lifetime CPU, processes 0,
//!    file size 0, core 0; the open-files limit is set after landlock, which
//!    needs one descriptor for its ruleset.
//! 5. [`landlock`](Layer::Landlock): no filesystem access, no TCP bind or
//!    connect, abstract Unix sockets and signals scoped (as far as the
//!    kernel's ABI goes).
//! 6. [`seccomp`](Layer::Seccomp): an allow-list of the few system calls a
//!    worker needs; anything else ends the worker with `SIGSYS`.
//!
//! Invariants:
//! * [`apply`] runs in a single-threaded process (a fresh fork of the
//!   zygote): seccomp and landlock bind the calling thread only.
//! * A layer that cannot be applied fails [`apply`] unless the plan marks it
//!   [`LayerMode::AllowWeak`]; then the report says
//!   [`LayerStatus::Unavailable`] and the remaining layers still run.
//! * Everything that reads files or compiles (user lookup, the BPF program)
//!   happens once in [`ConfinementPlan::new`], before any fork.

mod check;
mod error;
mod fds;
mod kernel;
mod landlock;
mod prctl;
mod privileges;
pub mod probes;
mod report;
#[cfg(feature = "probes")]
mod rhai_probes;
mod rlimits;
pub mod seccomp;

use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

pub use check::{CheckCell, CheckConfig, CheckRow, CheckTable, check, check_with, run_probe};
pub use error::ConfineError;
pub use kernel::{KernelSupport, LandlockSupport, SandboxReport, probe_kernel, sandbox_report};
pub use privileges::WorkerIdentity;
pub use report::{ConfinementReport, LayerReport, LayerStatus};
#[cfg(feature = "probes")]
pub use rhai_probes::register_probes;
pub use rlimits::RlimitValues;
pub use seccomp::{SeccompProgram, ViolationAction, ViolationReport};

/// Environment variable naming the unprivileged account workers run as when
/// the server starts as root: `user`, `user:group`, or numeric `uid[:gid]`.
pub const WORKER_USER_ENV: &str = "PICLOUD_WORKER_USER";
/// Environment variable that lets the server run with layers the kernel
/// cannot give (`1` to allow).
pub const ALLOW_WEAK_ENV: &str = "PICLOUD_ALLOW_WEAK_SANDBOX";

/// One confinement layer, in the order [`apply`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Fds,
    Privileges,
    Prctl,
    Rlimits,
    Landlock,
    Seccomp,
}

impl Layer {
    /// Every layer, in application order.
    pub const ALL: [Layer; 6] = [
        Layer::Fds,
        Layer::Privileges,
        Layer::Prctl,
        Layer::Rlimits,
        Layer::Landlock,
        Layer::Seccomp,
    ];

    /// The short name used in reports, logs and `sandbox check`.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Fds => "fds",
            Layer::Privileges => "privileges",
            Layer::Prctl => "prctl",
            Layer::Rlimits => "rlimits",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
        }
    }

    /// What the layer stops, in one line.
    pub const fn describe(self) -> &'static str {
        match self {
            Layer::Fds => {
                "closes inherited descriptors, clears the environment, parent-death signal, new session"
            }
            Layer::Privileges => "drops root to the worker uid/gid, no groups, no capabilities",
            Layer::Prctl => "no_new_privs, not dumpable",
            Layer::Rlimits => {
                "address space, lifetime CPU, no new descriptors, no processes, no file writes, no core"
            }
            Layer::Landlock => {
                "no filesystem, no TCP bind/connect, scoped abstract sockets and signals"
            }
            Layer::Seccomp => "system-call allow-list; anything else kills the worker with SIGSYS",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a plan treats one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerMode {
    /// Apply it; if it cannot be applied the worker refuses to serve.
    Required,
    /// Apply it if possible; if not, report it as unavailable and go on.
    AllowWeak,
    /// Do not apply it (tests, diagnostics).
    Off,
}

/// A [`LayerMode`] per [`Layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerModes([LayerMode; 6]);

impl LayerModes {
    /// Every layer in `mode`.
    pub const fn all(mode: LayerMode) -> Self {
        Self([mode; 6])
    }

    /// Only `layer`, required; everything else off.
    pub fn only(layer: Layer) -> Self {
        Self::all(LayerMode::Off).with(layer, LayerMode::Required)
    }

    /// Every layer required except `layer`, which is off.
    pub fn all_but(layer: Layer) -> Self {
        Self::all(LayerMode::Required).with(layer, LayerMode::Off)
    }

    pub const fn get(&self, layer: Layer) -> LayerMode {
        self.0[layer.index()]
    }

    pub fn set(&mut self, layer: Layer, mode: LayerMode) {
        self.0[layer.index()] = mode;
    }

    #[must_use]
    pub fn with(mut self, layer: Layer, mode: LayerMode) -> Self {
        self.set(layer, mode);
        self
    }

    /// Whether `layer` is to be applied at all.
    pub fn is_on(&self, layer: Layer) -> bool {
        self.get(layer) != LayerMode::Off
    }
}

impl Default for LayerModes {
    fn default() -> Self {
        Self::all(LayerMode::Required)
    }
}

/// Which process the worker expects as its parent once the parent-death
/// signal is armed (if the parent already died, the worker must not serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedParent {
    /// The process that built the plan (the zygote, which then forks).
    PlanBuilder,
    /// A given pid (a process that confines itself).
    Pid(i32),
}

/// What to build a [`ConfinementPlan`] from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub modes: LayerModes,
    /// `PICLOUD_WORKER_USER`; `None` means `nobody`/`nogroup`. Used only
    /// when running as root.
    pub worker_user: Option<String>,
    pub rlimits: RlimitValues,
    pub on_violation: ViolationAction,
    pub parent: ExpectedParent,
    /// Keep fd 2 (when it is not a regular file) so abort messages and
    /// violation reports reach the supervisor; else it goes to `/dev/null`.
    pub keep_stderr: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            modes: LayerModes::default(),
            worker_user: None,
            rlimits: RlimitValues::default(),
            on_violation: ViolationAction::Report,
            parent: ExpectedParent::PlanBuilder,
            keep_stderr: true,
        }
    }
}

impl PlanOptions {
    /// Reads [`WORKER_USER_ENV`] and [`ALLOW_WEAK_ENV`] through `lookup`
    /// (pass `|k| std::env::var(k).ok()`); with the latter set to `1` every
    /// layer becomes [`LayerMode::AllowWeak`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut options = Self {
            worker_user: lookup(WORKER_USER_ENV).filter(|s| !s.trim().is_empty()),
            ..Self::default()
        };
        if lookup(ALLOW_WEAK_ENV).is_some_and(|v| v.trim() == "1") {
            options.modes = LayerModes::all(LayerMode::AllowWeak);
        }
        options
    }
}

/// Everything [`apply`] needs, resolved and compiled once before any fork.
#[derive(Debug, Clone)]
pub struct ConfinementPlan {
    modes: LayerModes,
    socket_fd: RawFd,
    keep_stderr: bool,
    parent_pid: i32,
    identity: Option<WorkerIdentity>,
    rlimits: RlimitValues,
    seccomp: Option<SeccompProgram>,
}

impl ConfinementPlan {
    /// Resolves the worker identity (when running as root) and compiles the
    /// seccomp program for a worker whose socket will be `socket_fd` (3 or
    /// higher). Call it once in the zygote and pass the plan to [`apply`] in
    /// every forked worker.
    pub fn new(socket_fd: RawFd, options: &PlanOptions) -> Result<Self, ConfineError> {
        if socket_fd < 3 {
            return Err(ConfineError::NotInEffect {
                layer: Layer::Fds,
                what: "the worker socket must not be stdin, stdout or stderr",
            });
        }
        let identity = if options.modes.is_on(Layer::Privileges) && nix::unistd::geteuid().is_root()
        {
            Some(WorkerIdentity::resolve(options.worker_user.as_deref())?)
        } else {
            None
        };
        let seccomp = if options.modes.is_on(Layer::Seccomp) {
            Some(SeccompProgram::compile(socket_fd, options.on_violation)?)
        } else {
            None
        };
        let parent_pid = match options.parent {
            ExpectedParent::PlanBuilder => nix::unistd::getpid().as_raw(),
            ExpectedParent::Pid(pid) => pid,
        };
        Ok(Self {
            modes: options.modes,
            socket_fd,
            keep_stderr: options.keep_stderr,
            parent_pid,
            identity,
            rlimits: options.rlimits,
            seccomp,
        })
    }

    pub fn modes(&self) -> LayerModes {
        self.modes
    }

    pub fn socket_fd(&self) -> RawFd {
        self.socket_fd
    }

    /// The account workers drop to; `None` when not running as root.
    /// Prepares the process that will fork confined children under this
    /// plan: when they will switch identity, it empties the capability
    /// bounding set once, here, so each child's privileges layer finds it
    /// empty (and checks rather than drops).
    pub fn prepare_parent(&self) -> Result<(), ConfineError> {
        if self.identity.is_some() && self.modes.is_on(Layer::Privileges) {
            privileges::drop_bounding_set_for_children()?;
        }
        Ok(())
    }

    pub fn identity(&self) -> Option<WorkerIdentity> {
        self.identity
    }

    pub fn rlimits(&self) -> &RlimitValues {
        &self.rlimits
    }

    pub fn seccomp(&self) -> Option<&SeccompProgram> {
        self.seccomp.as_ref()
    }
}

/// Confines the calling process. Call it in the worker after fork and before
/// it reads its first request; the process must be single-threaded.
///
/// Returns what each layer did; fails on the first required layer that
/// cannot be applied, in which case the worker must exit without serving.
pub fn apply(plan: &ConfinementPlan) -> Result<ConfinementReport, ConfineError> {
    let mut report = ConfinementReport::new();
    run_layer(plan, &mut report, Layer::Fds, fds::apply)?;
    run_layer(plan, &mut report, Layer::Privileges, privileges::apply)?;
    // Changing credentials clears the parent-death signal (the kernel resets
    // it in commit_creds), so arm it again once the uid/gid drop is done.
    if report.status(Layer::Fds) == LayerStatus::Applied
        && report.status(Layer::Privileges) == LayerStatus::Applied
    {
        fds::arm_parent_death_signal(plan.parent_pid)?;
    }
    run_layer(plan, &mut report, Layer::Prctl, prctl::apply)?;
    run_layer(
        plan,
        &mut report,
        Layer::Rlimits,
        rlimits::apply_all_but_open_files,
    )?;
    run_layer(plan, &mut report, Layer::Landlock, landlock::apply)?;
    // Landlock needs a descriptor for its ruleset, so the open-files limit
    // waits until it is done.
    if report.status(Layer::Rlimits) == LayerStatus::Applied {
        run_layer(plan, &mut report, Layer::Rlimits, rlimits::apply_open_files)?;
    }
    run_layer(plan, &mut report, Layer::Seccomp, seccomp::apply)?;
    Ok(report)
}

/// What one layer reports when it succeeds.
struct Applied {
    status: LayerStatus,
    detail: Option<String>,
}

impl Applied {
    fn done(detail: impl Into<Option<String>>) -> Self {
        Self {
            status: LayerStatus::Applied,
            detail: detail.into(),
        }
    }
}

fn run_layer(
    plan: &ConfinementPlan,
    report: &mut ConfinementReport,
    layer: Layer,
    step: fn(&ConfinementPlan) -> Result<Applied, ConfineError>,
) -> Result<(), ConfineError> {
    match plan.modes.get(layer) {
        LayerMode::Off => report.record(layer, LayerStatus::Off, None),
        mode => match step(plan) {
            Ok(done) => report.record(layer, done.status, done.detail),
            Err(err) if mode == LayerMode::AllowWeak => {
                report.record(layer, LayerStatus::Unavailable, Some(err.to_string()));
            }
            Err(err) => return Err(err),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_select_layers() {
        let only = LayerModes::only(Layer::Landlock);
        assert_eq!(only.get(Layer::Landlock), LayerMode::Required);
        assert!(Layer::ALL.iter().filter(|l| only.is_on(**l)).count() == 1);
        let but = LayerModes::all_but(Layer::Seccomp);
        assert!(!but.is_on(Layer::Seccomp));
        assert!(but.is_on(Layer::Fds));
    }

    #[test]
    fn weak_is_opt_in_through_the_environment() {
        let strict = PlanOptions::from_lookup(|_| None);
        assert_eq!(strict.modes, LayerModes::all(LayerMode::Required));
        assert_eq!(strict.worker_user, None);
        let weak = PlanOptions::from_lookup(|k| match k {
            ALLOW_WEAK_ENV => Some("1".into()),
            WORKER_USER_ENV => Some("daemon:daemon".into()),
            _ => None,
        });
        assert_eq!(weak.modes, LayerModes::all(LayerMode::AllowWeak));
        assert_eq!(weak.worker_user.as_deref(), Some("daemon:daemon"));
        let not_one = PlanOptions::from_lookup(|k| (k == ALLOW_WEAK_ENV).then(|| "yes".into()));
        assert_eq!(not_one.modes, LayerModes::all(LayerMode::Required));
    }

    #[test]
    fn the_socket_may_not_be_a_standard_stream() {
        let options = PlanOptions {
            modes: LayerModes::all(LayerMode::Off),
            ..PlanOptions::default()
        };
        assert!(ConfinementPlan::new(2, &options).is_err());
        assert!(ConfinementPlan::new(3, &options).is_ok());
    }
}
