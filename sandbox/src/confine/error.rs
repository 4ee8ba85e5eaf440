//! Why confinement could not be planned or applied.

use super::Layer;

/// A confinement step failed. Every variant names what failed, never data a
/// worker or a script controls.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A system call that a layer needs returned an error.
    #[error("{layer} layer: {op} failed: {errno}")]
    Syscall {
        layer: Layer,
        op: &'static str,
        errno: nix::errno::Errno,
    },
    /// A layer was applied but reading its effect back showed it did not hold.
    #[error("{layer} layer: {what}")]
    NotInEffect { layer: Layer, what: &'static str },
    /// The parent died before the parent-death signal was armed.
    #[error("fds layer: the parent exited before the worker was confined")]
    ParentGone,
    /// `PICLOUD_WORKER_USER` names nothing usable.
    #[error("worker user `{spec}`: {reason}")]
    WorkerUser { spec: String, reason: &'static str },
    /// The landlock crate refused the ruleset.
    #[error("landlock layer: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// The kernel enforces no landlock at all.
    #[error("landlock layer: the kernel does not enforce landlock ({0})")]
    LandlockUnsupported(&'static str),
    /// The seccomp allow-list did not compile.
    #[error("seccomp layer: compiling the filter failed: {0}")]
    SeccompCompile(#[from] seccompiler::BackendError),
    /// The kernel refused the seccomp filter.
    #[error("seccomp layer: installing the filter failed: {0}")]
    SeccompInstall(#[from] seccompiler::Error),
    /// The plan asks for a layer it has no program for (the plan was built
    /// with seccomp off and then switched on).
    #[error("seccomp layer: the plan carries no compiled filter")]
    SeccompNotCompiled,
    /// This CPU architecture has no allow-list.
    #[error("seccomp layer: no allow-list for architecture {0}")]
    UnsupportedArch(&'static str),
}

impl ConfineError {
    pub(crate) fn sys(layer: Layer, op: &'static str, errno: nix::errno::Errno) -> Self {
        Self::Syscall { layer, op, errno }
    }

    pub(crate) fn last(layer: Layer, op: &'static str) -> Self {
        Self::sys(layer, op, nix::errno::Errno::last())
    }
}
