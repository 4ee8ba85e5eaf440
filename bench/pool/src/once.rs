//! `run-once`: the child of the fork+exec server. Everything a
//! process-per-request design pays happens here, every time: exec, building
//! the engine, compiling the script, one run, exit. The request comes as CGI
//! does it: `REQUEST_METHOD`, `QUERY_STRING`, `CONTENT_TYPE` and
//! `CONTENT_LENGTH` in the environment and the body on stdin.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use executor_core::ScriptRuntime;
use shared::{Limits, Outcome, ScriptRequest};

use crate::workload::Workload;

/// The largest request body read from stdin.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Runs `workload` once for the request described by the CGI variables and
/// prints the response body.
pub fn run(workload: &str) -> anyhow::Result<()> {
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
    let compiled = runtime
        .compile(workload.source, &limits)
        .context("compiling the workload")?;
    let output = runtime.run(&compiled, &request, &limits);
    let response = output
        .response
        .filter(|_| output.outcome == Outcome::Ok)
        .with_context(|| format!("the script failed: {}", output.outcome))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&response.body)?;
    out.flush()?;
    Ok(())
}
