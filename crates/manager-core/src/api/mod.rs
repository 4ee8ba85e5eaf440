//! The admin API (`/api/admin/*`): thin handlers over the repository, the
//! executor's compile check and the orchestrator's catalog. Every route sits
//! behind the admin token.

pub mod auth;
pub mod body;
pub mod error;
pub mod invocations;
pub mod metrics;
pub mod openapi;
pub mod scripts;
pub mod versions;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::routing::{any, get, post};
use shared::{CatalogUpdates, ExecutorClient, ExecutorStatus, LimitsConfig};

use crate::store::ScriptRepository;
pub use auth::{AdminToken, AuthGuard, TokenSource};
pub use error::{ApiError, ErrorBody, ErrorResponses};

/// What the admin handlers work with.
pub struct AdminState {
    pub repo: ScriptRepository,
    pub executor: Arc<dyn ExecutorClient>,
    pub catalog: Arc<dyn CatalogUpdates>,
    pub limits: LimitsConfig,
    /// Serialises script writes, each with its catalog change: two writers
    /// cannot both claim overlapping routes (see `scripts::create`), and a
    /// save cannot re-add a script to the catalog after a delete removed it.
    pub route_writes: tokio::sync::Mutex<()>,
    /// The invocation record pipeline (live stream, per-script drop counts).
    pub records: crate::records::Records,
    /// The sandbox layers workers get, as reported at start (`/api/admin/sandbox`).
    pub sandbox: serde_json::Value,
    /// Renders `/metrics`; `None` answers it with `404`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The admin routes, token-protected; unknown admin paths are a JSON `404`.
pub fn router(state: Arc<AdminState>, guard: Arc<AuthGuard>) -> Router {
    Router::new()
        .route(
            "/api/admin/scripts",
            get(scripts::list).post(scripts::create),
        )
        .route(
            "/api/admin/scripts/{id}",
            get(scripts::get)
                .put(scripts::update)
                .delete(scripts::delete),
        )
        .route("/api/admin/scripts/{id}/versions", get(versions::list))
        .route(
            "/api/admin/scripts/{id}/versions/{version}",
            get(versions::get),
        )
        .route("/api/admin/scripts/{id}/rollback", post(versions::rollback))
        .route("/api/admin/pool", get(pool_status))
        .route("/api/admin/sandbox", get(sandbox_report))
        .route("/api/admin/openapi.json", get(openapi::document))
        .route(
            "/api/admin/scripts/{id}/invocations",
            get(invocations::list),
        )
        .route(
            "/api/admin/scripts/{id}/invocations/stream",
            get(invocations::stream),
        )
        .route("/api/admin/scripts/{id}/stats", get(invocations::stats))
        .route("/api/admin/invocations/{id}", get(invocations::get))
        .route("/metrics", get(metrics::render))
        // A route, not a fallback: a merged router's fallback would lose the
        // auth layer, and unknown admin paths must need the token too.
        .route("/api/admin/{*rest}", any(unknown_admin_path))
        .with_state(state)
        .layer(middleware::from_fn_with_state(guard, auth::require_token))
}

/// `GET /api/admin/pool`: the executor's capacity right now.
#[utoipa::path(
    get, path = "/api/admin/pool", tag = "system",
    responses(
        (status = 200, description = "Workers, queue and recycling counters", body = ExecutorStatus),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn pool_status(State(state): State<Arc<AdminState>>) -> Json<ExecutorStatus> {
    Json(state.executor.status())
}

/// `GET /api/admin/sandbox`: the confinement layers in force and the kernel's support.
#[utoipa::path(
    get, path = "/api/admin/sandbox", tag = "system",
    responses(
        (status = 200, description = "Each confinement layer's status and the kernel's support", body = Object),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn sandbox_report(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(state.sandbox.clone())
}

async fn unknown_admin_path() -> ApiError {
    ApiError::NotFound("no such admin endpoint".into())
}
