//! Layer 4: resource limits.
//!
//! Invariants after both steps: the address space, lifetime CPU seconds,
//! process count, file size and core size are at most the plan's values,
//! soft and hard alike (the hard CPU limit is one second above the soft one,
//! so a worker that ignores `SIGXCPU` is killed a second later), and no new
//! descriptor can be opened (the open-files limit is one above the highest
//! kept descriptor). Lowering limits needs no privilege; raising them again
//! needs `CAP_SYS_RESOURCE`, which the privileges layer removed and seccomp
//! forbids asking for.
//!
//! `RLIMIT_CPU` counts over the worker's whole life: it is a backstop, and
//! the supervisor recycles workers by the CPU they used long before it.
//! `RLIMIT_NPROC` is ignored for root (and for `CAP_SYS_RESOURCE` /
//! `CAP_SYS_ADMIN`), so it stops `fork` only after the privilege drop.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};

use super::{Applied, ConfineError, ConfinementPlan, Layer};

const LAYER: Layer = Layer::Rlimits;
const MIB: u64 = 1024 * 1024;

/// The limits a worker runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitValues {
    /// `RLIMIT_AS`: must cover the binary's mappings, the stacks and the
    /// heap allocator's hard cap; it is the backstop behind that cap.
    pub address_space_bytes: u64,
    /// `RLIMIT_CPU` soft limit over the worker's life (`SIGXCPU`).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`; `None` means one above the highest kept descriptor,
    /// so no new descriptor can be opened.
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC` (enforced only for non-root workers).
    pub processes: u64,
    /// `RLIMIT_FSIZE`.
    pub file_size_bytes: u64,
    /// `RLIMIT_CORE`.
    pub core_bytes: u64,
}

impl Default for RlimitValues {
    fn default() -> Self {
        Self {
            address_space_bytes: 1024 * MIB,
            cpu_seconds: 120,
            open_files: None,
            processes: 0,
            file_size_bytes: 0,
            core_bytes: 0,
        }
    }
}

pub(super) fn apply_all_but_open_files(plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    let v = &plan.rlimits;
    let limits = [
        (
            Resource::RLIMIT_AS,
            v.address_space_bytes,
            v.address_space_bytes,
            "setrlimit(AS)",
        ),
        (
            Resource::RLIMIT_CPU,
            v.cpu_seconds,
            v.cpu_seconds.saturating_add(1),
            "setrlimit(CPU)",
        ),
        (
            Resource::RLIMIT_NPROC,
            v.processes,
            v.processes,
            "setrlimit(NPROC)",
        ),
        (
            Resource::RLIMIT_FSIZE,
            v.file_size_bytes,
            v.file_size_bytes,
            "setrlimit(FSIZE)",
        ),
        (
            Resource::RLIMIT_CORE,
            v.core_bytes,
            v.core_bytes,
            "setrlimit(CORE)",
        ),
    ];
    for (resource, soft, hard, op) in limits {
        lower(resource, soft, hard, op)?;
    }
    Ok(Applied::done(format!(
        "as {} MiB, cpu {} s, nproc {}, fsize {}, core {}",
        v.address_space_bytes / MIB,
        v.cpu_seconds,
        v.processes,
        v.file_size_bytes,
        v.core_bytes
    )))
}

pub(super) fn apply_open_files(plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    let highest_kept = u64::try_from(plan.socket_fd.max(2)).unwrap_or(u64::MAX);
    let nofile = plan.rlimits.open_files.unwrap_or(highest_kept + 1);
    lower(Resource::RLIMIT_NOFILE, nofile, nofile, "setrlimit(NOFILE)")?;
    Ok(Applied::done(format!("nofile {nofile}")))
}

/// Sets a limit, never above what is already in force, and reads it back.
fn lower(resource: Resource, soft: u64, hard: u64, op: &'static str) -> Result<(), ConfineError> {
    let (_, current_hard) = getrlimit(resource).map_err(|e| ConfineError::sys(LAYER, op, e))?;
    let hard = hard.min(current_hard);
    let soft = soft.min(hard);
    setrlimit(resource, soft, hard).map_err(|e| ConfineError::sys(LAYER, op, e))?;
    if getrlimit(resource).map_err(|e| ConfineError::sys(LAYER, op, e))? != (soft, hard) {
        return Err(ConfineError::NotInEffect {
            layer: LAYER,
            what: "a limit did not read back as set",
        });
    }
    Ok(())
}
