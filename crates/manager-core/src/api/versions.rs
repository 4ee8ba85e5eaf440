//! Version history and rollback: `GET .../versions`, `GET .../versions/{n}`,
//! `POST .../rollback`.
//!
//! Versions are immutable. A rollback does not rewrite history: it saves the
//! old content (source and limits) as a new version, marked with the version
//! it restored, in one transaction, after compiling it again.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::LimitOverrides;

use super::AdminState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorResponses};
use super::scripts::{ScriptView, find};
use crate::store::{ScriptChange, VersionInfo, content_hash};

/// `GET .../versions`.
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct History {
    pub current: u32,
    pub versions: Vec<VersionInfo>,
}

/// `GET .../versions/{n}`.
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct VersionView {
    pub version: u32,
    pub source: String,
    pub content_hash: String,
    pub limits: LimitOverrides,
    pub created_at: DateTime<Utc>,
}

/// `POST .../rollback`.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub version: u32,
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}/versions", tag = "versions",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    responses(
        (status = 200, description = "Every version, oldest first", body = History),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<History>, ApiError> {
    let script = find(&state, &id).await?;
    let versions = state.repo.versions(script.id).await?;
    Ok(Json(History {
        current: script.version,
        versions,
    }))
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}/versions/{version}", tag = "versions",
    params(
        ("id" = String, Path, description = "Script id (UUID) or name"),
        ("version" = u32, Path, description = "Version number, from 1"),
    ),
    responses(
        (status = 200, description = "One version as it was saved", body = VersionView),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    State(state): State<Arc<AdminState>>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    let script = find(&state, &id).await?;
    let n = parse_version(&version)?;
    let v = state.repo.get_version(script.id, n).await?.ok_or_else(|| {
        ApiError::NotFound(format!("script `{}` has no version {n}", script.name))
    })?;
    Ok(Json(VersionView {
        version: v.version,
        content_hash: content_hash(&v.source),
        source: v.source,
        limits: v.limits,
        created_at: v.updated_at,
    }))
}

#[utoipa::path(
    post, path = "/api/admin/scripts/{id}/rollback", tag = "versions",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    request_body = Rollback,
    responses(
        (status = 200, description = "The old content saved as a new version", body = super::scripts::ScriptView),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rollback>,
) -> Result<Json<ScriptView>, ApiError> {
    let script = find(&state, &id).await?;
    let old = state
        .repo
        .get_version(script.id, body.version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "script `{}` has no version {}",
                script.name, body.version
            ))
        })?;
    state.check_source(&old.source, &old.limits).await?;
    // Under the writers' lock, like every save (see `scripts::delete`).
    let _writes = state.route_writes.lock().await;
    let restored = state
        .repo
        .update(
            script.id,
            ScriptChange {
                source: Some(old.source),
                limits: Some(old.limits),
                restored_from: Some(body.version),
                ..ScriptChange::default()
            },
        )
        .await?;
    state.catalog.upsert(restored.clone());
    tracing::info!(
        script = %restored.id, version = restored.version, restored_from = body.version,
        "script rolled back"
    );
    Ok(Json(ScriptView::new(&state, restored, true)))
}

fn parse_version(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("`{raw}` is not a version number")))
}
