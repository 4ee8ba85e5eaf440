//! The probes as Rhai functions, for end-to-end tests in a real worker.
//!
//! Compiled only with the test-only `probes` feature: a production engine
//! never has these functions, so no script can call them.

use std::ffi::CString;

use rhai::{Engine, EvalAltResult};

use super::probes::{self, Probe, ProbeTargets};

/// Registers `probe(name)` and `probe(name, target)` on `engine`.
///
/// `name` is a [`Probe`] name (`"read_passwd"`, `"fork"`, ...). `target` is
/// the TCP port for `connect_loopback`, the pid for `kill_parent` and
/// `ptrace`, and the descriptor for `inherited_fd`; without it `kill_parent`
/// aims at the process that called `register_probes` (the zygote, the
/// parent of every worker). The result is `"ok"` or `"ERRNO@call"` (for
/// example `"EACCES@open"`); a probe stopped by seccomp does not return, the
/// worker dies with `SIGSYS`.
pub fn register_probes(engine: &mut Engine) {
    let registrar = nix::unistd::getpid().as_raw();
    engine.register_fn("probe", move |name: &str| run(name, None, registrar));
    engine.register_fn("probe", move |name: &str, target: i64| {
        run(name, Some(target), registrar)
    });
}

fn run(name: &str, target: Option<i64>, registrar: i32) -> Result<String, Box<EvalAltResult>> {
    let probe: Probe = name
        .parse()
        .map_err(|e: probes::UnknownProbe| e.to_string())?;
    let target = target
        .map(i32::try_from)
        .transpose()
        .map_err(|_| "probe target out of range")?;
    let pid = nix::unistd::getpid().as_raw();
    let targets = ProbeTargets {
        scratch_path: CString::new(format!("/tmp/picloud-probe-{pid}"))
            .map_err(|e| e.to_string())?,
        loopback_port: target.and_then(|t| u16::try_from(t).ok()).unwrap_or(0),
        parent_pid: target.unwrap_or(registrar),
        victim_pid: target.unwrap_or(registrar),
        inherited_fd: target.unwrap_or(-1),
    };
    Ok(probes::run(probe, &targets).short())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_callable_from_a_script() {
        let mut engine = Engine::new_raw();
        register_probes(&mut engine);
        // Unconfined, reading /etc/passwd works: the function really probes.
        assert_eq!(
            engine.eval::<String>(r#"probe("read_passwd")"#).unwrap(),
            "ok"
        );
        assert_eq!(
            engine
                .eval::<String>(r#"probe("inherited_fd", -1)"#)
                .unwrap(),
            "EBADF@read"
        );
        assert!(engine.eval::<String>(r#"probe("format_disk")"#).is_err());
    }
}
