//! Layer 5: landlock, with no rules at all.
//!
//! Invariants after [`apply`]: the worker's landlock domain handles every
//! filesystem access right the kernel knows and grants none (no open, no
//! exec, no directory listing, no file creation); where the ABI has them
//! (4+) TCP bind and connect are denied, and (6+) the worker can neither
//! connect to abstract Unix sockets nor signal processes outside its own
//! domain. Every worker makes its own domain, so workers are outside each
//! other's. The ruleset is requested best-effort for every right this crate
//! knows, so a newer kernel gives more; a kernel that enforces nothing is an
//! error.

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus,
    Scope,
};

use super::kernel::landlock_abi;
use super::{Applied, ConfineError, ConfinementPlan};

/// The newest ABI this code asks for.
const REQUESTED: ABI = ABI::V10;

pub(super) fn apply(_plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(REQUESTED))?
        .handle_access(AccessNet::from_all(REQUESTED))?
        .scope(Scope::from_all(REQUESTED))?
        .create()?
        .restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(ConfineError::LandlockUnsupported(
            "the ruleset was not enforced",
        ));
    }
    let detail = match landlock_abi() {
        Ok(abi) => format!("ABI {abi}: {}", covered(abi)),
        Err(_) => "enforced".to_owned(),
    };
    Ok(Applied::done(detail))
}

/// What a kernel with landlock ABI `abi` enforces for a worker.
pub(crate) fn covered(abi: i32) -> &'static str {
    match abi {
        ..=0 => "nothing",
        1..=3 => "filesystem only",
        4..=5 => "filesystem, TCP bind/connect",
        6..=9 => "filesystem, TCP bind/connect, abstract-socket and signal scopes",
        _ => "filesystem, TCP and UDP, abstract-socket and signal scopes",
    }
}
