//! The data plane's HTTP routes: `/api/execute/{id}`, `/exec/*` (custom
//! routes), `/healthz`, `/readyz`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use shared::{
    ExecutorClient, ExecutorError, HealthCheck, Invocation, InvocationId, InvocationRecord,
    InvocationSink, Outcome, ScriptId, ScriptRef, ScriptResolver, TrustedProxies,
};

use shared::route::{RouteLookup, normalize_request_path};

use crate::cors;
use crate::error::{RequestError, json_error};
use crate::request;
use crate::respond::{platform_headers, respond};

/// Data-plane settings.
#[derive(Debug, Clone, Default)]
pub struct OrchestratorConfig {
    /// Send `X-PiCloud-Stats` with every response (`PICLOUD_EXPOSE_STATS=1`).
    pub expose_stats: bool,
    /// Peers whose `X-Forwarded-For` names the client (`PICLOUD_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}

/// Everything the data plane needs, injected as trait objects.
pub struct Orchestrator {
    pub executor: Arc<dyn ExecutorClient>,
    pub resolver: Arc<dyn ScriptResolver>,
    pub sink: Arc<dyn InvocationSink>,
    /// Extra checks `/readyz` runs (the database, in the all-in-one binary).
    pub health: Vec<Arc<dyn HealthCheck>>,
    pub config: OrchestratorConfig,
    /// Per-script metric handles, made on each script's first invocation.
    pub metrics: crate::metrics::Handles,
}

/// The data plane's routes, ready to merge into a server.
pub fn router(state: Arc<Orchestrator>) -> Router {
    Router::new()
        .route("/api/execute/{id}", any(execute))
        .route("/exec", any(exec))
        .route("/exec/", any(exec))
        .route("/exec/{*path}", any(exec))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn execute(
    State(o): State<Arc<Orchestrator>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let invocation_id = InvocationId::new();
    let mut response = match o.prepare(&id, request).await {
        Ok((script, script_request, client)) => {
            o.run(invocation_id, script, script_request, client, None)
                .await
        }
        Err(e) => e.into_response(),
    };
    platform_headers(response.headers_mut(), invocation_id);
    response
}

/// `/exec/*`: the script bound to this method and path.
async fn exec(State(o): State<Arc<Orchestrator>>, request: Request) -> Response {
    let invocation_id = InvocationId::new();
    let mut response = o.exec_inner(invocation_id, request).await;
    platform_headers(response.headers_mut(), invocation_id);
    response
}

impl Orchestrator {
    async fn exec_inner(&self, invocation_id: InvocationId, request: Request) -> Response {
        let segments = match normalize_request_path(request.uri().path()) {
            Some(Ok(segments)) => segments,
            Some(Err(e)) => return RequestError::BadRequest(e.to_string()).into_response(),
            None => return RequestError::NotFound("no such route".into()).into_response(),
        };
        let method = request.method().as_str();
        let preflight = request.method() == axum::http::Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let lookup_method = if preflight {
            request
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        } else {
            method
        };
        match self.resolver.by_route(lookup_method, &segments) {
            RouteLookup::Found {
                target,
                params,
                pattern,
            } => {
                if preflight {
                    return cors::preflight(&target, lookup_method, request.headers());
                }
                let origin = cors::allowed_origin(&target, request.headers()).cloned();
                let mut response = match self.read_request(&target, request, params).await {
                    Ok((script_request, client)) => {
                        self.run(invocation_id, target, script_request, client, Some(pattern))
                            .await
                    }
                    Err(e) => e.into_response(),
                };
                cors::decorate(&mut response, origin);
                response
            }
            RouteLookup::MethodNotAllowed { allowed } => {
                let mut response = (
                    StatusCode::METHOD_NOT_ALLOWED,
                    json_error(
                        "method_not_allowed",
                        &format!("this route answers {}", allowed.join(", ")),
                    ),
                )
                    .into_response();
                if let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, v);
                }
                response
            }
            RouteLookup::NotFound => RequestError::NotFound("no such route".into()).into_response(),
        }
    }

    /// Resolves the script and reads the request within the script's limits.
    async fn prepare(
        &self,
        raw_id: &str,
        request: Request,
    ) -> Result<(Arc<ScriptRef>, shared::ScriptRequest, Option<IpAddr>), RequestError> {
        let id: ScriptId = raw_id.parse().map_err(|e: shared::IdParseError| {
            RequestError::BadRequest(format!(
                "{e}: /api/execute/ takes a script's id; to call a script by a path \
                     of your own, give it a route under /exec/"
            ))
        })?;
        let script = self
            .resolver
            .by_id(id)
            .ok_or_else(|| RequestError::NotFound(format!("no script with id {id}")))?;
        let (script_request, client) = self.read_request(&script, request, Vec::new()).await?;
        Ok((script, script_request, client))
    }

    /// Reads the body within the script's limit and builds its `request`.
    async fn read_request(
        &self,
        script: &ScriptRef,
        request: Request,
        params: Vec<(String, String)>,
    ) -> Result<(shared::ScriptRequest, Option<IpAddr>), RequestError> {
        let (parts, body) = request.into_parts();
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| client_ip(&self.config.trusted_proxies, c.0.ip(), &parts.headers));
        let body = read_body(&parts.headers, body, script.limits.request_body_bytes).await?;
        let script_request =
            request::build(&parts.method, &parts.uri, &parts.headers, params, body)?;
        Ok((script_request, client))
    }

    /// Runs a prepared invocation, answers, and hands the record to the sink.
    async fn run(
        &self,
        id: InvocationId,
        script: Arc<ScriptRef>,
        request: shared::ScriptRequest,
        client: Option<IpAddr>,
        route: Option<String>,
    ) -> Response {
        let started_at = chrono::Utc::now();
        let method = request.method.clone();
        let path = request.path.clone();
        let invocation = Invocation {
            id,
            script: Arc::clone(&script),
            request,
        };
        let begun = Instant::now();
        let mut output = match self.executor.invoke(invocation).await {
            Ok(output) => output,
            Err(ExecutorError::Unavailable(m) | ExecutorError::Internal(m)) => {
                tracing::error!(invocation = %id, error = %m, "executor could not take the invocation");
                let mut out = shared::InvocationOutput::failed(
                    Outcome::Overloaded,
                    "the executor is not available; retry shortly",
                );
                out.stats.wall_us = elapsed_us(begun);
                out
            }
        };
        let (response, status) = respond(id, &mut output, self.config.expose_stats);
        let record = InvocationRecord {
            id,
            script_id: script.script.id,
            script_version: script.script.version,
            route,
            method,
            path,
            started_at,
            status,
            outcome: output.outcome,
            error: output.error,
            stats: output.stats,
            logs: output.logs,
            logs_truncated: output.logs_truncated,
            logs_shed: 0,
            client_addr: client.map(|c| c.to_string()),
        };
        crate::metrics::observe(&self.metrics, &script, &record);
        self.sink.record(record);
        response
    }
}

/// The client: the peer, or what a trusted proxy forwarded (every
/// `X-Forwarded-For` line, in order, as one list).
fn client_ip(trusted: &TrustedProxies, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    if trusted.is_empty() {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = forwarded.join(",");
    trusted.client_ip(peer, (!forwarded.is_empty()).then_some(joined.as_str()))
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Reads at most `limit` bytes; more is a `413`, announced or not.
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, RequestError> {
    let too_large = || {
        RequestError::PayloadTooLarge(format!(
            "request body is larger than {limit} bytes, this script's request_body_bytes limit"
        ))
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e)
            .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
        // The server's front fails a body that does not arrive in time with
        // an I/O error of kind `TimedOut`.
        let timed_out = std::iter::successors(std::error::Error::source(&e), |e| e.source())
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::TimedOut);
        if is_limit {
            too_large()
        } else if timed_out {
            RequestError::Timeout("the request body did not arrive in time".into())
        } else {
            RequestError::BadRequest("the request body could not be read".into())
        }
    })
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` waits for one check. A database that is away can
/// make a check wait for its connection pool's whole acquire timeout; a
/// probe must get its `503` well before a typical probe timeout instead.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `check`, counting no answer within `timeout` as a failure.
async fn check_within(check: &dyn HealthCheck, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, check.check()).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn readyz(State(o): State<Arc<Orchestrator>>) -> Response {
    let status = o.executor.status();
    let mut problems = Vec::new();
    if !status.ready {
        problems.push(format!(
            "executor: {}",
            status.detail.as_deref().unwrap_or("not ready")
        ));
    }
    for check in &o.health {
        if let Err(e) = check_within(check.as_ref(), HEALTH_CHECK_TIMEOUT).await {
            problems.push(format!("{}: {e}", check.name()));
        }
    }
    let body = serde_json::json!({
        "ready": problems.is_empty(),
        "problems": problems,
        "executor": status,
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dependency that never answers, like a database behind a dead
    /// connection while the pool keeps retrying.
    struct Silent;

    #[async_trait::async_trait]
    impl HealthCheck for Silent {
        fn name(&self) -> &'static str {
            "silent"
        }
        async fn check(&self) -> Result<(), String> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_check_that_never_answers_counts_as_failed() {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            check_within(&Silent, Duration::from_millis(50)),
        )
        .await
        .expect("check_within must give up on its own");
        assert_eq!(answer, Err("no answer within 50 ms".to_owned()));
    }
}
