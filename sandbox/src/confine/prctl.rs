//! Layer 3: `no_new_privs` and not dumpable.
//!
//! Invariants after [`apply`]: no `execve` can ever grant privileges (setuid
//! bits and file capabilities are ignored), and the worker is not dumpable:
//! no core file, its `/proc/PID` files belong to root, and other processes
//! of the same uid cannot ptrace it. Both are read back, not assumed.

use super::{Applied, ConfineError, ConfinementPlan, Layer};

const LAYER: Layer = Layer::Prctl;

pub(super) fn apply(_plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    set(libc::PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")?;
    set(libc::PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE)")?;
    // SAFETY: prctl getters with integer arguments only.
    let (nnp, dumpable) = unsafe {
        (
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0),
        )
    };
    if nnp != 1 || dumpable != 0 {
        return Err(ConfineError::NotInEffect {
            layer: LAYER,
            what: "no_new_privs or dumpable did not read back as set",
        });
    }
    Ok(Applied::done(None))
}

fn set(option: libc::c_int, value: libc::c_ulong, op: &'static str) -> Result<(), ConfineError> {
    // SAFETY: prctl setters with integer arguments only.
    if unsafe { libc::prctl(option, value, 0, 0, 0) } != 0 {
        return Err(ConfineError::last(LAYER, op));
    }
    Ok(())
}
