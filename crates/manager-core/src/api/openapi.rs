//! The admin API's OpenAPI 3 document, generated from the handlers' and
//! types' annotations, served at `/api/admin/openapi.json`. The command line
//! and the dashboard follow it; the test suite runs schemathesis against a
//! live server with it.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{invocations, scripts, versions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PiCloud admin API",
        description = "Script management, versions, invocation records and the pool's state. \
                       Every operation needs `Authorization: Bearer <admin token>`.",
    ),
    paths(
        scripts::create, scripts::list, scripts::get, scripts::update, scripts::delete,
        versions::list, versions::get, versions::rollback,
        invocations::list, invocations::get, invocations::stats, invocations::stream,
        super::pool_status, super::sandbox_report,
    ),
    components(schemas(ErrorBody, shared::Outcome, shared::InvocationStats)),
    modifiers(&BearerToken),
    tags(
        (name = "scripts", description = "Create, read, update and delete scripts"),
        (name = "versions", description = "Immutable versions and rollback"),
        (name = "invocations", description = "Invocation records, statistics and the live stream"),
        (name = "system", description = "The worker pool and the sandbox"),
    )
)]
pub struct AdminApi;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The document as JSON, rendered once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        AdminApi::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"))
    })
}

/// `GET /api/admin/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_admin_route() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with('3')),
            Some(true)
        );
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/admin/scripts",
            "/api/admin/scripts/{id}",
            "/api/admin/scripts/{id}/versions",
            "/api/admin/scripts/{id}/versions/{version}",
            "/api/admin/scripts/{id}/rollback",
            "/api/admin/scripts/{id}/invocations",
            "/api/admin/scripts/{id}/invocations/stream",
            "/api/admin/scripts/{id}/stats",
            "/api/admin/invocations/{id}",
            "/api/admin/pool",
            "/api/admin/sandbox",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} is missing from the OpenAPI document"
            );
        }
        assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
        assert!(doc["components"]["schemas"]["ScriptView"].is_object());
    }
}
