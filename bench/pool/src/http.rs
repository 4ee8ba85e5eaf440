//! The benchmark's own HTTP servers: the in-process baseline (axum and a
//! cached Rhai AST on script threads, no process boundary), the same behind
//! PiCloud's orchestrator, and the fork+exec-per-request server.
//!
//! Every server announces itself with one stdout line,
//! `listening on http://ADDR`, so the run script can use port 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use executor_core::InProcessExecutor;
use orchestrator_core::{Orchestrator, OrchestratorConfig, ScriptCatalog};
use shared::{
    CatalogUpdates as _, ExecutorClient, Invocation, InvocationId, InvocationOutput,
    InvocationRecord, InvocationSink, LimitsConfig, Outcome, ScriptRef,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::workload::{self, Workload};

/// The most a fork+exec child may print; more is a failed request.
const MAX_CHILD_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Which in-process server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// axum → build the script's request → run → answer: `/run/{workload}`.
    Minimal,
    /// PiCloud's own data plane (`orchestrator-core`) with the in-process
    /// executor instead of the pool: `/api/execute/{id}`.
    Orchestrator,
}

/// Serves the in-process baseline on `threads` script threads until killed.
pub async fn serve_in_process(
    bind: SocketAddr,
    threads: NonZeroUsize,
    kind: Baseline,
) -> anyhow::Result<()> {
    let executor: Arc<dyn ExecutorClient> = Arc::new(InProcessExecutor::with_threads(threads));
    let app = match kind {
        Baseline::Minimal => Router::new()
            .route("/run/{workload}", any(run_in_process))
            .with_state(Arc::new(InProcess {
                executor,
                scripts: workload::ALL.map(|w| (w.name, w.script_ref())),
            })),
        Baseline::Orchestrator => {
            let catalog = Arc::new(ScriptCatalog::new(LimitsConfig::default()));
            catalog.load_all(workload::ALL.map(Workload::script).to_vec());
            orchestrator_core::router(Arc::new(Orchestrator {
                executor,
                resolver: catalog,
                sink: Arc::new(DiscardSink),
                health: Vec::new(),
                config: OrchestratorConfig::default(),
                metrics: orchestrator_core::metrics::Handles::default(),
            }))
        }
    };
    serve(bind, app).await
}

/// The baseline keeps no records (the pool targets are measured with records
/// on and off, so their cost is visible separately).
struct DiscardSink;

impl InvocationSink for DiscardSink {
    fn record(&self, _: InvocationRecord) {}
}

struct InProcess {
    executor: Arc<dyn ExecutorClient>,
    scripts: [(&'static str, Arc<ScriptRef>); workload::ALL.len()],
}

async fn run_in_process(
    State(state): State<Arc<InProcess>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((_, script)) = state.scripts.iter().find(|(n, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such workload").into_response();
    };
    let request = match orchestrator_core::request::build(&method, &uri, &headers, Vec::new(), body)
    {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let invocation = Invocation {
        id: InvocationId::new(),
        script: Arc::clone(script),
        request,
    };
    match state.executor.invoke(invocation).await {
        Ok(output) => script_answer(output),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The script's response as it is, or a 500 naming the outcome.
fn script_answer(output: InvocationOutput) -> Response {
    let Some(answer) = output.response.filter(|_| output.outcome == Outcome::Ok) else {
        let message = output.error.unwrap_or_default();
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {message}", output.outcome),
        )
            .into_response();
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// Serves `/run/{workload}` by re-executing this binary (`run-once`) for
/// every request, CGI style: the request goes in through the environment,
/// the body comes back on stdout.
/// The fork+exec server's configuration, shared by its handlers.
struct ForkExec {
    exe: std::path::PathBuf,
    /// Children confine themselves as pool workers are confined.
    confine: bool,
}

pub async fn serve_fork_exec(bind: SocketAddr, confine: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let app = Router::new()
        .route("/run/{workload}", any(run_fork_exec))
        .with_state(Arc::new(ForkExec { exe, confine }));
    serve(bind, app).await
}

async fn run_fork_exec(
    State(server): State<Arc<ForkExec>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if Workload::by_name(&name).is_none() {
        return (StatusCode::NOT_FOUND, "no such workload").into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let request = CgiRequest {
        workload: &name,
        method: method.as_str(),
        query: uri.query().unwrap_or(""),
        content_type,
        body: &body,
    };
    match fork_exec(&server, &request).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

/// What a CGI child is told about its request.
struct CgiRequest<'a> {
    workload: &'a str,
    method: &'a str,
    query: &'a str,
    content_type: &'a str,
    body: &'a [u8],
}

async fn fork_exec(server: &ForkExec, request: &CgiRequest<'_>) -> anyhow::Result<Vec<u8>> {
    let mut command = tokio::process::Command::new(&server.exe);
    command.arg("run-once").arg(request.workload);
    if server.confine {
        command.arg("--confine");
    }
    let mut child = command
        .env_clear()
        .env("REQUEST_METHOD", request.method)
        .env("QUERY_STRING", request.query)
        .env("CONTENT_TYPE", request.content_type)
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the script process")?;
    let mut stdin = child.stdin.take().context("the child's stdin")?;
    let mut stdout = child
        .stdout
        .take()
        .context("the child's stdout")?
        .take(MAX_CHILD_OUTPUT_BYTES + 1);
    let mut body = Vec::new();
    // Write the body while reading the answer, so neither pipe can fill up and stall.
    let (written, read) = tokio::join!(
        async {
            let written = stdin.write_all(request.body).await;
            drop(stdin);
            written
        },
        stdout.read_to_end(&mut body)
    );
    written.context("writing the request body")?;
    read.context("reading the child's output")?;
    let status = child.wait().await.context("waiting for the child")?;
    anyhow::ensure!(status.success(), "the script process failed: {status}");
    anyhow::ensure!(
        u64::try_from(body.len()).unwrap_or(u64::MAX) <= MAX_CHILD_OUTPUT_BYTES,
        "the script printed more than {MAX_CHILD_OUTPUT_BYTES} bytes"
    );
    Ok(body)
}

async fn serve(bind: SocketAddr, app: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    axum::serve(listener, app).await.context("serving")
}
