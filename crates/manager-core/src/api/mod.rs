//! The admin API (`/api/admin/*`): thin handlers over the repository, the
//! executor's compile check and the orchestrator's catalog. Every route sits
//! behind the admin token.

pub mod auth;
pub mod body;
pub mod error;
pub mod scripts;
pub mod versions;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::routing::{get, post};
use shared::{CatalogUpdates, ExecutorClient, ExecutorStatus, LimitsConfig};

use crate::store::ScriptRepository;
pub use auth::{AdminToken, TokenSource};
pub use error::ApiError;

/// What the admin handlers work with.
pub struct AdminState {
    pub repo: ScriptRepository,
    pub executor: Arc<dyn ExecutorClient>,
    pub catalog: Arc<dyn CatalogUpdates>,
    pub limits: LimitsConfig,
    /// Serialises writes that may claim a route (see `scripts::create`).
    pub route_writes: tokio::sync::Mutex<()>,
}

/// The admin routes, token-protected; unknown admin paths are a JSON `404`.
pub fn router(state: Arc<AdminState>, token: AdminToken) -> Router {
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
        .fallback(|| async { ApiError::NotFound("no such admin endpoint".into()) })
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_token,
        ))
}

/// `GET /api/admin/pool`: the executor's capacity right now.
async fn pool_status(State(state): State<Arc<AdminState>>) -> Json<ExecutorStatus> {
    Json(state.executor.status())
}
