//! Regression: dropping privileges resets the parent-death signal, which
//! left workers alive after their zygote died. After `apply`, a confined
//! child still has `SIGKILL` as its parent-death signal.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use sandbox::confine::{
    ConfinementPlan, ExpectedParent, Layer, LayerMode, LayerModes, PlanOptions, apply,
};

#[test]
fn the_parent_death_signal_survives_the_privilege_drop() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: the privilege drop only happens when started as root (CI is root)");
        return;
    }
    let me = nix::unistd::getpid().as_raw();
    let options = PlanOptions {
        modes: LayerModes::all(LayerMode::Off)
            .with(Layer::Fds, LayerMode::Required)
            .with(Layer::Privileges, LayerMode::Required),
        parent: ExpectedParent::Pid(me),
        keep_stderr: false,
        ..PlanOptions::default()
    };
    // A pipe end stands in for the worker socket; the child reports through its exit code.
    let (keep, _other) = nix::unistd::pipe().unwrap();
    let plan = ConfinementPlan::new(std::os::fd::AsRawFd::as_raw_fd(&keep), &options).unwrap();
    // SAFETY: the child only makes system calls and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = if apply(&plan).is_ok() {
                let mut sig: libc::c_int = 0;
                // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer.
                let rc = unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &raw mut sig, 0, 0, 0) };
                i32::from(!(rc == 0 && sig == libc::SIGKILL))
            } else {
                2
            };
            // SAFETY: leave without running the test harness's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
            WaitStatus::Exited(_, 0) => {}
            WaitStatus::Exited(_, 1) => {
                panic!("the privilege drop cleared the parent-death signal")
            }
            other => panic!("confined child ended unexpectedly: {other:?}"),
        },
    }
}
