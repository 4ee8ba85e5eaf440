//! What this kernel and process can give, probed without confining anything
//! (run at server start), and the start-up report built from it.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::landlock::covered;
use super::report::{LayerReport, LayerStatus};
use super::seccomp::ARCH_NAME;
use super::{ConfinementPlan, Layer, LayerMode};

/// Landlock as the kernel offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LandlockSupport {
    /// Enforced, at this ABI version.
    Available { abi: i32 },
    /// Built into the kernel but not enabled at boot (`lsm=` lacks it).
    NotEnabled,
    /// Not built into the kernel, or hidden by a container's seccomp profile.
    NotImplemented,
}

/// The confinement features this kernel and process offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSupport {
    /// The CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// The seccomp allow-list exists for this architecture.
    pub seccomp_allow_list: bool,
    /// Seccomp filters with the trap and kill-process actions work.
    pub seccomp_filter: bool,
    pub landlock: LandlockSupport,
    /// The server runs as root, so workers drop to the worker account.
    pub running_as_root: bool,
}

/// Probes the kernel; cheap, changes nothing.
pub fn probe_kernel() -> KernelSupport {
    let landlock = match landlock_abi() {
        Ok(abi) => LandlockSupport::Available { abi },
        Err(Errno::EOPNOTSUPP) => LandlockSupport::NotEnabled,
        Err(_) => LandlockSupport::NotImplemented,
    };
    KernelSupport {
        arch: std::env::consts::ARCH.to_owned(),
        seccomp_allow_list: ARCH_NAME.is_some(),
        seccomp_filter: seccomp_action_available(libc::SECCOMP_RET_TRAP)
            && seccomp_action_available(libc::SECCOMP_RET_KILL_PROCESS),
        landlock,
        running_as_root: nix::unistd::geteuid().is_root(),
    }
}

/// The kernel's landlock ABI version.
pub(crate) fn landlock_abi() -> Result<i32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        i32::try_from(rc).map_err(|_| Errno::EOVERFLOW)
    }
}

fn seccomp_action_available(action: u32) -> bool {
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &raw const action,
        )
    };
    rc == 0
}

/// What the server reports at start-up (log and `GET /api/admin/sandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub kernel: KernelSupport,
    /// Per layer: what a worker confined with the plan will get.
    pub layers: Vec<LayerReport>,
    /// Some layer the plan asks for cannot be applied here. The server must
    /// refuse to start unless the operator allowed a weak sandbox.
    pub weak: bool,
}

/// Predicts, from [`probe_kernel`], what [`apply`](super::apply) will do
/// with `plan` on this machine. The truth is each worker's own
/// [`ConfinementReport`](super::ConfinementReport), and
/// [`check`](super::check) tries every layer for real.
pub fn sandbox_report(plan: &ConfinementPlan) -> SandboxReport {
    let kernel = probe_kernel();
    let layers: Vec<LayerReport> = Layer::ALL
        .iter()
        .map(|&layer| {
            let (status, detail) = if plan.modes().get(layer) == LayerMode::Off {
                (LayerStatus::Off, None)
            } else {
                predict(layer, plan, &kernel)
            };
            LayerReport {
                layer,
                status,
                detail,
            }
        })
        .collect();
    let weak = layers.iter().any(|l| l.status == LayerStatus::Unavailable);
    SandboxReport {
        kernel,
        layers,
        weak,
    }
}

fn predict(
    layer: Layer,
    plan: &ConfinementPlan,
    kernel: &KernelSupport,
) -> (LayerStatus, Option<String>) {
    match layer {
        Layer::Fds | Layer::Prctl => (LayerStatus::Applied, None),
        Layer::Privileges => match plan.identity() {
            Some(id) => (
                LayerStatus::Applied,
                Some(format!("root drops to uid {} gid {}", id.uid, id.gid)),
            ),
            None => (
                LayerStatus::NotNeeded,
                Some(format!("already uid {}", nix::unistd::getuid())),
            ),
        },
        Layer::Rlimits => {
            let r = plan.rlimits();
            (
                LayerStatus::Applied,
                Some(format!(
                    "as {} MiB, cpu {} s",
                    r.address_space_bytes / (1024 * 1024),
                    r.cpu_seconds
                )),
            )
        }
        Layer::Landlock => match kernel.landlock {
            LandlockSupport::Available { abi } => (
                LayerStatus::Applied,
                Some(format!("ABI {abi}: {}", covered(abi))),
            ),
            LandlockSupport::NotEnabled => (
                LayerStatus::Unavailable,
                Some("landlock is built in but not enabled (boot with lsm=...,landlock)".into()),
            ),
            LandlockSupport::NotImplemented => (
                LayerStatus::Unavailable,
                Some("the kernel has no landlock, or a container profile hides it".into()),
            ),
        },
        Layer::Seccomp => {
            if !kernel.seccomp_allow_list {
                (
                    LayerStatus::Unavailable,
                    Some(format!("no allow-list for {}", kernel.arch)),
                )
            } else if !kernel.seccomp_filter {
                (
                    LayerStatus::Unavailable,
                    Some("the kernel lacks seccomp filters with trap and kill-process".into()),
                )
            } else {
                (
                    LayerStatus::Applied,
                    Some(format!("allow-list for {}", kernel.arch)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::PlanOptions;

    #[test]
    fn this_machine_offers_every_layer() {
        // The project's machines (see docs/sandbox.md) have landlock and seccomp.
        let k = probe_kernel();
        assert!(k.seccomp_filter, "{k:?}");
        assert!(k.seccomp_allow_list, "{k:?}");
        assert!(
            matches!(k.landlock, LandlockSupport::Available { abi } if abi >= 1),
            "{k:?}"
        );
    }

    #[test]
    fn report_follows_the_plan() {
        let plan = ConfinementPlan::new(3, &PlanOptions::default()).unwrap();
        let report = sandbox_report(&plan);
        assert!(!report.weak, "{report:?}");
        assert_eq!(report.layers.len(), Layer::ALL.len());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["layers"][4]["layer"], "landlock");
        let off = PlanOptions {
            modes: crate::confine::LayerModes::all_but(Layer::Seccomp),
            ..PlanOptions::default()
        };
        let report = sandbox_report(&ConfinementPlan::new(3, &off).unwrap());
        assert_eq!(report.layers[5].status, LayerStatus::Off);
    }
}
