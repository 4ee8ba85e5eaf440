//! `run-once`: the child of the fork+exec server. Everything a
//! process-per-request design pays happens here, every time: exec, building
//! the engine, compiling the script, one run, exit. The request comes as CGI
//! does it: `REQUEST_METHOD`, `QUERY_STRING`, `CONTENT_TYPE` and
//! `CONTENT_LENGTH` in the environment and the body on stdin.
//!
//! With `--confine` the child applies every confinement layer a pool worker
//! gets (`sandbox::confine`) after building the engine and before it
//! compiles the script: what a fork+exec design of this platform would pay
//! for the same isolation. The response then goes out on a copy of stdout
//! kept as the confined process's one descriptor.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use executor_core::ScriptRuntime;
use shared::{Limits, Outcome, ScriptRequest};

use crate::workload::Workload;

/// The largest request body read from stdin.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Runs `workload` once for the request described by the CGI variables and
/// prints the response body.
pub fn run(workload: &str, confine: bool) -> anyhow::Result<()> {
    let workload =
        Workload::by_name(workload).with_context(|| format!("no workload `{workload}`"))?;
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let length: u64 = std::env::var("CONTENT_LENGTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    anyhow::ensure!(length <= MAX_BODY_BYTES, "request body too large");
    let mut body = String::new();
    std::io::stdin()
        .take(length)
        .read_to_string(&mut body)
        .context("reading the request body")?;
    let content_type = std::env::var("CONTENT_TYPE").unwrap_or_default();
    let body_is_json = content_type.starts_with("application/json") && !body.trim().is_empty();
    if body_is_json {
        serde_json::from_str::<serde_json::Value>(&body).context("the body is not JSON")?;
    }
    let request = ScriptRequest {
        method: std::env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".to_owned()),
        path: format!("/run/{}", workload.name),
        query: orchestrator_core::request::parse_query(&query)
            .map_err(|e| anyhow::anyhow!("bad query string: {e}"))?,
        body,
        body_is_json,
        ..ScriptRequest::default()
    };
    let limits = Limits::DEFAULTS;
    let mut runtime = ScriptRuntime::new();
    let mut out: Box<dyn std::io::Write> = if confine {
        runtime.warm_up();
        Box::new(confined()?)
    } else {
        Box::new(std::io::stdout().lock())
    };
    let compiled = runtime
        .compile(workload.source, &limits)
        .context("compiling the workload")?;
    let output = runtime.run(&compiled, &request, &limits);
    let response = output
        .response
        .filter(|_| output.outcome == Outcome::Ok)
        .with_context(|| format!("the script failed: {}", output.outcome))?;
    out.write_all(&response.body)?;
    out.flush()?;
    Ok(())
}

/// Confines this process as a pool worker (all layers, required) and
/// returns the one descriptor it may still write: a copy of stdout, which
/// the confinement leaves open as the worker's "socket".
fn confined() -> anyhow::Result<std::fs::File> {
    use sandbox::confine::{ConfinementPlan, ExpectedParent, PlanOptions};
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    /// Where workers keep their socket; any descriptor above stderr works.
    const KEPT_FD: i32 = 3;
    let stdout = std::io::stdout();
    // SAFETY: dup2 onto a descriptor this process does not otherwise use.
    if unsafe { libc::dup2(stdout.as_raw_fd(), KEPT_FD) } != KEPT_FD {
        return Err(std::io::Error::last_os_error()).context("keeping a copy of stdout");
    }
    let options = PlanOptions {
        // The server that exec'd us, as the zygote is a worker's parent.
        parent: ExpectedParent::Pid(parent_pid()),
        ..PlanOptions::default()
    };
    let plan = ConfinementPlan::new(KEPT_FD, &options).context("planning the confinement")?;
    sandbox::confine::apply(&plan).context("confining the child")?;
    // SAFETY: KEPT_FD was made above and is owned by nothing else.
    Ok(unsafe { std::fs::File::from_raw_fd(KEPT_FD) })
}

fn parent_pid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}
