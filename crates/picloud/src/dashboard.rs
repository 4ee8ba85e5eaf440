//! The dashboard: the static SvelteKit build, served at `/` in single-node
//! mode (Caddy serves the same files in production).
//!
//! Invariants:
//! - Only files inside the build directory are ever read: assets go through
//!   `tower-http`'s `ServeDir` (which refuses `..` and absolute paths), and
//!   the page itself is one fixed file of that directory.
//! - Every dashboard response carries the same strict headers: a CSP that
//!   allows only this origin and, for the one inline script SvelteKit boots
//!   from, exactly its SHA-256 (computed from the file being served, so a
//!   rebuild needs no restart); `frame-ancestors 'none'`; `no-referrer`;
//!   `nosniff`.
//! - Paths under `/api/` never get the app's page: an API path nobody serves
//!   is a JSON `404`, as the admin API's own fallback answers.
//! - A missing build is a short note, never a crash.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

/// Environment variable naming the build directory.
pub const DIR_ENV: &str = "PICLOUD_DASHBOARD_DIR";
/// The build directory when [`DIR_ENV`] is unset, relative to the working directory.
pub const DEFAULT_DIR: &str = "dashboard/build";
/// The app's page, in order of preference (SvelteKit's SPA fallback names).
const PAGES: [&str; 2] = ["index.html", "200.html"];
/// A page bigger than this is not a SvelteKit shell; refuse it rather than buffer it.
const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// The policy, less the inline-script hashes that go after `script-src 'self'`.
const CSP_HEAD: &str = "default-src 'self'; script-src 'self'";
const CSP_TAIL: &str = "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The dashboard's routes, serving the directory named by [`DIR_ENV`].
pub fn router() -> Router {
    let dir = std::env::var_os(DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from);
    router_for(dir)
}

/// The dashboard's routes for a given build directory: `/` and every path
/// no other route claims. Merge it last; more specific routes win.
pub fn router_for(dir: PathBuf) -> Router {
    if dir.is_dir() {
        tracing::info!(dir = %dir.display(), "serving the dashboard");
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "the dashboard is not built; `/` will say so (build it with scripts/lib/dashboard-build)"
        );
    }
    let handler = move |request: Request| {
        let dir = dir.clone();
        async move { serve(&dir, request).await }
    };
    Router::new()
        .route("/", any(handler.clone()))
        .route("/{*path}", any(handler))
}

async fn serve(dir: &Path, request: Request) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return api_not_found();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = note(
            StatusCode::METHOD_NOT_ALLOWED,
            "The dashboard only answers GET.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
        return not_built(dir);
    }
    if is_asset(path) {
        let mut response = asset(dir, request).await;
        secure(response.headers_mut(), None);
        response
    } else {
        page(dir).await
    }
}

/// A file with an extension (other than a page) is an asset; anything else
/// is a route of the app, answered with its page.
fn is_asset(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    last.contains('.')
        && !Path::new(last)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("html"))
}

async fn asset(dir: &Path, request: Request) -> Response {
    let immutable = request.uri().path().starts_with("/_app/immutable/");
    let served = ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .oneshot(request)
        .await;
    let mut response = match served {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    let cache = if immutable && response.status().is_success() {
        // Content-hashed file names: a new build has new names.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The app's HTML, with a CSP that admits exactly its inline scripts.
async fn page(dir: &Path) -> Response {
    for name in PAGES {
        let path = dir.join(name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() && meta.len() <= MAX_PAGE_BYTES => {}
            Ok(meta) if meta.is_file() => {
                tracing::error!(path = %path.display(), "the dashboard page is too large to serve");
                return note(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The dashboard page is unusable.",
                );
            }
            _ => continue,
        }
        let html = match tokio::fs::read_to_string(&path).await {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the dashboard page");
                return note(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The dashboard page cannot be read.",
                );
            }
        };
        let csp = policy(&inline_script_hashes(&html));
        let mut response = (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            html,
        )
            .into_response();
        secure(response.headers_mut(), Some(&csp));
        return response;
    }
    note(
        StatusCode::NOT_FOUND,
        "The dashboard build has no index.html; rebuild it with scripts/lib/dashboard-build.",
    )
}

/// The dashboard's Content-Security-Policy, admitting these inline-script hashes.
fn policy(hashes: &[String]) -> String {
    let mut csp = String::from(CSP_HEAD);
    for hash in hashes {
        csp.push_str(" 'sha256-");
        csp.push_str(hash);
        csp.push('\'');
    }
    csp.push_str(CSP_TAIL);
    csp
}

/// Base64 SHA-256 of the text of every `<script>` without `src`, as CSP
/// hash sources want it.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(open) = find_ascii_ci(rest, "<script") {
        let after = &rest[open + "<script".len()..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let attributes = after[..tag_end].to_ascii_lowercase();
        let content = &after[tag_end + 1..];
        let Some(close) = find_ascii_ci(content, "</script") else {
            break;
        };
        if !attributes.contains("src=") {
            let digest = Sha256::digest(&content.as_bytes()[..close]);
            hashes.push(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        rest = &content[close..];
    }
    hashes
}

/// Byte offset of an ASCII `needle` in `haystack`, ignoring ASCII case.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The headers every dashboard response carries; `csp` replaces the
/// hash-less default policy on the page itself.
fn secure(headers: &mut HeaderMap, csp: Option<&str>) {
    let csp = csp.map_or_else(|| policy(&[]), str::to_owned);
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn api_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "not_found", "message": "no such endpoint" })),
    )
        .into_response()
}

/// A short HTML note in place of the app.
fn note(status: StatusCode, text: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>PiCloud</title>\
         <body style=\"font:15px system-ui;margin:3rem;color:#333\"><h1>PiCloud</h1><p>{text}</p>"
    );
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    // The note's one inline style attribute is allowed; nothing else is.
    if let Ok(v) = HeaderValue::from_str(
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    ) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn not_built(dir: &Path) -> Response {
    tracing::debug!(dir = %dir.display(), "dashboard requested but not built");
    note(
        StatusCode::NOT_FOUND,
        "The dashboard is not built. Build it with <code>scripts/lib/dashboard-build</code> \
         (Node.js 20), or point <code>PICLOUD_DASHBOARD_DIR</code> at a build, then restart. \
         The API is up: <code>/api/admin/…</code>, <code>/api/execute/…</code>, <code>/healthz</code>.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    const PAGE: &str = "<!doctype html><html><head>\
        <link href=\"/_app/immutable/entry/start.js\" rel=\"modulepreload\">\
        <script src=\"/ext.js\"></script></head><body><div>\
        <SCRIPT>\n\t\t\t\tconsole.log(\"boot\");\n\t\t\t</script></div></body></html>";

    /// A build in `<tmp>/build`, beside a file it must never serve.
    struct Build {
        root: tempfile::TempDir,
    }

    impl Build {
        fn path(&self) -> PathBuf {
            self.root.path().join("build")
        }
    }

    fn build() -> Build {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("build");
        std::fs::create_dir_all(dir.join("_app/immutable/entry")).unwrap();
        std::fs::write(dir.join("index.html"), PAGE).unwrap();
        std::fs::write(
            dir.join("_app/immutable/entry/start.js"),
            "export const x = 1;",
        )
        .unwrap();
        std::fs::write(dir.join("favicon.svg"), "<svg/>").unwrap();
        std::fs::write(root.path().join("secret.txt"), "nope").unwrap();
        Build { root }
    }

    async fn get(router: &Router, method: Method, path: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn hashes_inline_scripts_exactly_as_csp_wants() {
        // Reference value: `printf 'alert(1)' | openssl dgst -sha256 -binary | base64`.
        assert_eq!(
            inline_script_hashes("<script>alert(1)</script>"),
            ["bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="]
        );
        // External scripts are not hashed; case and attributes do not matter.
        let hashes = inline_script_hashes(PAGE);
        assert_eq!(hashes.len(), 1);
        assert_eq!(
            hashes,
            inline_script_hashes(
                "<script type=module>\n\t\t\t\tconsole.log(\"boot\");\n\t\t\t</script>"
            )
        );
        // Unterminated markup yields what was complete, without panicking.
        assert!(inline_script_hashes("<script>never closed").is_empty());
        assert!(inline_script_hashes("<script").is_empty());
        assert_eq!(inline_script_hashes("<script>é</script><script>").len(), 1);
    }

    #[tokio::test]
    async fn serves_the_page_for_app_routes_with_a_strict_policy() {
        let dir = build();
        let router = router_for(dir.path());
        for path in ["/", "/scripts/3f6c/invocations", "/login", "/index.html"] {
            let (status, headers, body) = get(&router, Method::GET, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, PAGE, "{path}");
            let csp = header(&headers, "content-security-policy");
            let hash = &inline_script_hashes(PAGE)[0];
            assert!(
                csp.contains(&format!("script-src 'self' 'sha256-{hash}';")),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.contains("default-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
            assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
            assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
            assert_eq!(header(&headers, "x-frame-options"), "DENY");
            assert_eq!(header(&headers, "cache-control"), "no-cache");
        }
    }

    #[tokio::test]
    async fn serves_assets_and_refuses_what_is_not_there() {
        let dir = build();
        let router = router_for(dir.path());
        let (status, headers, body) =
            get(&router, Method::GET, "/_app/immutable/entry/start.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "export const x = 1;");
        assert!(header(&headers, "content-type").contains("javascript"));
        assert!(header(&headers, "cache-control").contains("immutable"));
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");

        let (status, headers, _) = get(&router, Method::GET, "/favicon.svg").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "cache-control"), "no-cache");

        // A missing asset is a 404, not the app's page.
        let (status, _, body) = get(&router, Method::GET, "/_app/immutable/gone.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!body.contains("console.log"));

        // Nothing outside the build directory, however the path is spelled.
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/_app/..%2f..%2fsecret.txt",
        ] {
            let (status, _, body) = get(&router, Method::GET, path).await;
            assert_ne!(body, "nope", "{path}");
            assert!(status.is_client_error() || body == PAGE, "{path}: {status}");
        }
    }

    #[tokio::test]
    async fn serves_precompressed_assets_to_browsers_that_accept_them() {
        let dir = build();
        let js = dir.path().join("_app/immutable/entry/start.js.br");
        std::fs::write(js, b"brotli bytes").unwrap();
        let request = Request::builder()
            .uri("/_app/immutable/entry/start.js")
            .header(header::ACCEPT_ENCODING, "gzip, br")
            .body(Body::empty())
            .unwrap();
        let response = router_for(dir.path()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(response.headers(), "content-encoding"), "br");
        assert!(header(response.headers(), "content-type").contains("javascript"));
        let body = to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"brotli bytes");
        // Without the header, the plain file.
        let (_, headers, body) = get(
            &router_for(dir.path()),
            Method::GET,
            "/_app/immutable/entry/start.js",
        )
        .await;
        assert_eq!(header(&headers, "content-encoding"), "");
        assert_eq!(body, "export const x = 1;");
    }

    #[tokio::test]
    async fn api_paths_and_other_methods_never_get_the_page() {
        let dir = build();
        let router = router_for(dir.path());
        let (status, headers, body) = get(&router, Method::GET, "/api/admin/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(header(&headers, "content-type").starts_with("application/json"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "not_found");
        let (status, headers, _) = get(&router, Method::POST, "/scripts").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&headers, "allow"), "GET, HEAD");
        let (status, _, body) = get(&router, Method::HEAD, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn a_missing_build_is_a_note_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let router = router_for(dir.path().join("not-there"));
        let (status, headers, body) = get(&router, Method::GET, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("dashboard is not built"), "{body}");
        assert!(header(&headers, "content-security-policy").contains("default-src 'none'"));

        // A directory without a page says so too.
        let empty = tempfile::tempdir().unwrap();
        let router = router_for(empty.path().to_path_buf());
        let (status, _, body) = get(&router, Method::GET, "/scripts").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no index.html"), "{body}");
    }

    #[tokio::test]
    async fn falls_back_to_200_html() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("200.html"), "<p>spa</p>").unwrap();
        let router = router_for(dir.path().to_path_buf());
        let (status, _, body) = get(&router, Method::GET, "/anything").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<p>spa</p>");
    }

    #[tokio::test]
    async fn more_specific_routes_win_when_merged() {
        let dir = build();
        let app = Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/api/admin/scripts",
                axum::routing::get(|| async { "list" }),
            )
            .merge(router_for(dir.path()));
        assert_eq!(get(&app, Method::GET, "/healthz").await.2, "ok");
        assert_eq!(get(&app, Method::GET, "/api/admin/scripts").await.2, "list");
        assert_eq!(get(&app, Method::GET, "/scripts").await.2, PAGE);
    }
}
