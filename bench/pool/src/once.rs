//! `run-once`: the child of the fork+exec server. Everything a
//! process-per-request design pays happens here, every time: exec, building
//! the engine, compiling the script, one run, exit.

use std::io::Write as _;

use anyhow::Context as _;
use executor_core::ScriptRuntime;
use shared::{Limits, Outcome, ScriptRequest};

use crate::workload::Workload;

/// Runs `workload` once for the request described by the CGI variables
/// `REQUEST_METHOD` and `QUERY_STRING` and prints the response body.
pub fn run(workload: &str) -> anyhow::Result<()> {
    let workload =
        Workload::by_name(workload).with_context(|| format!("no workload `{workload}`"))?;
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let request = ScriptRequest {
        method: std::env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".to_owned()),
        path: format!("/run/{}", workload.name),
        query: orchestrator_core::request::parse_query(&query)
            .map_err(|e| anyhow::anyhow!("bad query string: {e}"))?,
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
