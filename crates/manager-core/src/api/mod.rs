//! The admin API (`/api/admin/*`): thin handlers over the repository, the
//! executor's compile check and the orchestrator's catalog. Every route sits
//! behind the admin token.

pub mod auth;
pub mod body;
pub mod error;
pub mod scripts;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use shared::{CatalogUpdates, ExecutorClient, LimitsConfig};

use crate::store::ScriptRepository;
pub use auth::{AdminToken, TokenSource};
pub use error::ApiError;

/// What the admin handlers work with.
pub struct AdminState {
    pub repo: ScriptRepository,
    pub executor: Arc<dyn ExecutorClient>,
    pub catalog: Arc<dyn CatalogUpdates>,
    pub limits: LimitsConfig,
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
        .fallback(|| async { ApiError::NotFound("no such admin endpoint".into()) })
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_token,
        ))
}
