//! `/api/admin/scripts`: create, list, read, update and delete scripts.
//!
//! Every write compiles the source in the executor first (a worker, under
//! the compile deadline): a script that does not compile is never stored.
//! After a successful write the orchestrator's catalog is told at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::route::Route;
use shared::{LimitOverrides, Limits, Script, ScriptId};

use super::AdminState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorResponses};
use crate::store::{NewScript, ScriptChange};

/// `POST /api/admin/scripts`.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateScript {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    pub source: String,
    #[serde(default)]
    pub limits: LimitOverrides,
    /// `{"method": "POST", "path": "/exec/hooks/{id}"}` or `"POST /exec/hooks/{id}"`.
    #[serde(default)]
    pub route: Option<RouteInput>,
    /// Browser origins allowed to call the script (CORS).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Invocations that may run at once (default: half the workers).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub concurrency: Option<u32>,
}

/// A route in either of its two spellings.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteInput {
    Text(String),
    Object(Route),
}

impl RouteInput {
    fn into_route(self) -> Result<Route, ApiError> {
        let route = match self {
            Self::Text(t) => Route::from_cli(&t),
            Self::Object(r) => r.parse().map(|p| p.to_route()),
        };
        route.map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// `PUT /api/admin/scripts/{id}`: what is given changes, the rest stays.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateScript {
    pub source: Option<String>,
    pub limits: Option<LimitOverrides>,
    /// Absent: keep; `null`: remove the route; a value: set it.
    #[serde(default, deserialize_with = "present")]
    pub route: Option<Option<RouteInput>>,
    pub cors_origins: Option<Vec<String>>,
    /// Absent: keep; `null`: back to the default; a value: set it.
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = 1, maximum = 1024)]
    pub concurrency: Option<Option<u32>>,
}

/// Tells a field that is `null` (`Some(None)`) from one that is absent (`None`).
#[allow(
    clippy::option_option,
    reason = "absent, null and a value are three different requests"
)]
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A script as the admin API shows it.
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct ScriptView {
    pub id: ScriptId,
    pub name: String,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The script's own limits.
    pub limits: LimitOverrides,
    /// What it actually runs under.
    pub effective_limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    pub cors_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ScriptView {
    pub fn new(state: &AdminState, script: Script, with_source: bool) -> Self {
        Self {
            id: script.id,
            effective_limits: state.limits.resolve(&script.limits),
            limits: script.limits,
            route: script.route,
            cors_origins: script.cors_origins,
            concurrency: script.concurrency,
            name: script.name,
            version: script.version,
            source: with_source.then_some(script.source),
            created_at: script.created_at,
            updated_at: script.updated_at,
        }
    }
}

/// `[a-z0-9][a-z0-9_-]{0,63}`, and not something that reads as an id.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let bytes = name.as_bytes();
    let valid = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if !valid {
        return Err(ApiError::BadRequest(
            "name must match [a-z0-9][a-z0-9_-]{0,63}".into(),
        ));
    }
    if name.parse::<ScriptId>().is_ok() {
        return Err(ApiError::BadRequest(
            "name must not look like a script id (UUID)".into(),
        ));
    }
    Ok(())
}

/// Finds a script by id (UUID) or by name; anything else is a `400`.
pub async fn find(state: &AdminState, raw: &str) -> Result<Script, ApiError> {
    let found = if let Ok(id) = raw.parse::<ScriptId>() {
        state.repo.get(id).await?
    } else if validate_name(raw).is_ok() {
        state.repo.get_by_name(raw).await?
    } else {
        return Err(ApiError::BadRequest(format!(
            "`{}` is neither a script id (UUID) nor a script name",
            raw.chars().take(64).collect::<String>()
        )));
    };
    found.ok_or_else(|| ApiError::NotFound(format!("no script `{raw}`")))
}

impl AdminState {
    /// Validates limits and source, and compiles the source in a worker.
    pub(super) async fn check_source(
        &self,
        source: &str,
        overrides: &LimitOverrides,
    ) -> Result<(), ApiError> {
        self.limits
            .validate(overrides)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let limits = self.limits.resolve(overrides);
        let size = u64::try_from(source.len()).unwrap_or(u64::MAX);
        if size > limits.source_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "source is {size} bytes; the limit is {}",
                limits.source_bytes
            )));
        }
        self.executor
            .compile_check(source, &limits)
            .await?
            .map_err(ApiError::Compile)
    }
}

impl AdminState {
    /// `409` naming the other script when `route` overlaps one of its routes.
    async fn check_route_free(
        &self,
        route: &Route,
        this: Option<ScriptId>,
    ) -> Result<(), ApiError> {
        let wanted = route
            .parse()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        for other in self.repo.list().await? {
            if Some(other.id) == this {
                continue;
            }
            let Some(theirs) = other.route.as_ref().and_then(|r| r.parse().ok()) else {
                continue;
            };
            if wanted.overlaps(&theirs) {
                return Err(ApiError::Conflict(format!(
                    "route `{route}` overlaps `{}` of script `{}`",
                    theirs.to_route(),
                    other.name
                )));
            }
        }
        Ok(())
    }
}

/// The most invocations of one script that may be asked to run at once.
const MAX_CONCURRENCY: u32 = 1024;

fn validate_concurrency(c: Option<u32>) -> Result<Option<u32>, ApiError> {
    match c {
        Some(n) if n == 0 || n > MAX_CONCURRENCY => Err(ApiError::BadRequest(format!(
            "concurrency must be 1 to {MAX_CONCURRENCY}"
        ))),
        other => Ok(other),
    }
}

/// Origins are `scheme://host[:port]` (http or https), or `*` for any.
fn validate_origins(origins: Vec<String>) -> Result<Vec<String>, ApiError> {
    if origins.len() > 32 {
        return Err(ApiError::BadRequest("at most 32 CORS origins".into()));
    }
    for o in &origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let ok = o == "*"
            || rest.is_some_and(|host| {
                !host.is_empty()
                    && host.len() <= 253
                    && host.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            });
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "CORS origin `{}` must be `*` or scheme://host[:port] with http or https",
                o.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(origins)
}

/// The database-free checks the create and update handlers apply to a body,
/// exposed for the admin-body fuzz target (not an API).
#[doc(hidden)]
pub mod checks {
    use super::{ApiError, Route, RouteInput};

    pub fn route(input: RouteInput) -> Result<Route, ApiError> {
        input.into_route()
    }

    pub fn origins(origins: Vec<String>) -> Result<Vec<String>, ApiError> {
        super::validate_origins(origins)
    }

    pub fn concurrency(c: Option<u32>) -> Result<Option<u32>, ApiError> {
        super::validate_concurrency(c)
    }
}

#[utoipa::path(
    post, path = "/api/admin/scripts", tag = "scripts",
    request_body = CreateScript,
    responses(
        (status = 201, description = "Created (compiled first; a compile error is 422 with line and column)", body = ScriptView),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(state): State<Arc<AdminState>>,
    JsonBody(body): JsonBody<CreateScript>,
) -> Result<Response, ApiError> {
    validate_name(&body.name)?;
    let route = body.route.map(RouteInput::into_route).transpose()?;
    let cors_origins = validate_origins(body.cors_origins)?;
    state.check_source(&body.source, &body.limits).await?;
    // Route checks and the write happen under one lock, so two writers
    // cannot both claim overlapping routes.
    let _routes = state.route_writes.lock().await;
    if let Some(route) = &route {
        state.check_route_free(route, None).await?;
    }
    let script = state
        .repo
        .create(NewScript {
            name: body.name,
            source: body.source,
            limits: body.limits,
            route,
            cors_origins,
            concurrency: validate_concurrency(body.concurrency)?,
        })
        .await?;
    state.catalog.upsert(script.clone());
    tracing::info!(script = %script.id, name = %script.name, "script created");
    Ok((
        StatusCode::CREATED,
        Json(ScriptView::new(&state, script, true)),
    )
        .into_response())
}

#[utoipa::path(
    get, path = "/api/admin/scripts", tag = "scripts",
    responses(
        (status = 200, description = "Every script, without source", body = [ScriptView]),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Vec<ScriptView>>, ApiError> {
    let scripts = state.repo.list().await?;
    Ok(Json(
        scripts
            .into_iter()
            .map(|s| ScriptView::new(&state, s, false))
            .collect(),
    ))
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}", tag = "scripts",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    responses(
        (status = 200, description = "The script with its source", body = ScriptView),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<ScriptView>, ApiError> {
    let script = find(&state, &id).await?;
    Ok(Json(ScriptView::new(&state, script, true)))
}

#[utoipa::path(
    put, path = "/api/admin/scripts/{id}", tag = "scripts",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    request_body = UpdateScript,
    responses(
        (status = 200, description = "Saved as a new version", body = ScriptView),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateScript>,
) -> Result<Json<ScriptView>, ApiError> {
    if body.source.is_none()
        && body.limits.is_none()
        && body.route.is_none()
        && body.cors_origins.is_none()
        && body.concurrency.is_none()
    {
        return Err(ApiError::BadRequest(
            "nothing to change: give `source`, `limits`, `route`, `cors_origins` or `concurrency`"
                .into(),
        ));
    }
    let route = match body.route {
        None => None,
        Some(None) => Some(None),
        Some(Some(input)) => Some(Some(input.into_route()?)),
    };
    let cors_origins = body.cors_origins.map(validate_origins).transpose()?;
    let current = find(&state, &id).await?;
    let id = current.id;
    let source = body.source.as_deref().unwrap_or(&current.source);
    let limits = body.limits.unwrap_or(current.limits);
    state.check_source(source, &limits).await?;
    let _routes = state.route_writes.lock().await;
    if let Some(Some(route)) = &route {
        state.check_route_free(route, Some(id)).await?;
    }
    let script = state
        .repo
        .update(
            id,
            ScriptChange {
                source: body.source,
                limits: body.limits,
                route,
                cors_origins,
                concurrency: body.concurrency.map(validate_concurrency).transpose()?,
                restored_from: None,
            },
        )
        .await?;
    state.catalog.upsert(script.clone());
    tracing::info!(script = %script.id, version = script.version, "script updated");
    Ok(Json(ScriptView::new(&state, script, true)))
}

#[utoipa::path(
    delete, path = "/api/admin/scripts/{id}", tag = "scripts",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    responses(
        (status = 204, description = "Deleted with its route; records stay until retention removes them"),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = find(&state, &id).await?.id;
    // Under the writers' lock: a save finishing meanwhile cannot put the
    // script back into the catalog after it was removed.
    let _writes = state.route_writes.lock().await;
    if !state.repo.delete(id).await? {
        return Err(ApiError::NotFound(format!("no script with id {id}")));
    }
    state.catalog.remove(id);
    tracing::info!(script = %id, "script deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in ["a", "hello-world", "x_1", "0abc", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a/b",
            "é",
            &"a".repeat(65),
            "0b7e8c52-58d2-4c3b-9f57-7d16b8f0d1a3",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
