//! PiCloud behind Caddy, as `caddy/Caddyfile` deploys it: the committed
//! file itself runs (its settings are `{$VAR}` placeholders that this test
//! fills through Caddy's environment), in front of a real `picloud` on free
//! ports. Through the proxy: the dashboard's page and every file it loads,
//! an upload and calls of a script, the metrics, the body limit; and the
//! client address in the records is the real one, believed only from Caddy.
//!
//! Needs Debian's `caddy` (scripts/test installs it) and the dashboard's
//! build (scripts/lib/dashboard-build, which scripts/test runs first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Options, Server, TOKEN};
use reqwest::header;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The client's own address: another loopback address than Caddy's
/// (127.0.0.1), so the record shows whose address PiCloud believed.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// `caddy run` on `caddy/Caddyfile`, stopped on drop.
struct Caddy {
    base: String,
    child: Child,
    log: PathBuf,
    _home: tempfile::TempDir,
}

impl Caddy {
    /// Starts Caddy on `caddy/Caddyfile` in front of `upstream`
    /// (`host:port`), with these extra environment variables, and waits
    /// until it proxies `/healthz`.
    async fn start(upstream: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port().to_string();
        let base = format!("http://127.0.0.1:{port}");
        let mut env = vec![("CADDY_BIND", "127.0.0.1"), ("CADDY_PORT", port.as_str())];
        env.extend_from_slice(extra);
        Self::run(
            "caddy/Caddyfile",
            upstream,
            &env,
            base,
            &reqwest::Client::new(),
        )
        .await
    }

    /// Runs the committed `file` with Caddy's environment set to `env`
    /// (on top of the upstream, the dashboard and a throwaway state
    /// directory), and waits until `client` gets `/healthz` through it at `base`.
    async fn run(
        file: &str,
        upstream: &str,
        env: &[(&str, &str)],
        base: String,
        client: &reqwest::Client,
    ) -> Self {
        require_caddy();
        let dashboard = dashboard_build();
        let home = tempfile::tempdir().unwrap();
        let log = home.path().join("caddy.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("caddy");
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(common::workspace().join(file))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Caddy keeps its state under HOME / XDG_*: a throwaway one.
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("CADDY_ADMIN", "off")
            .env("PICLOUD_UPSTREAM", upstream)
            .env("PICLOUD_DASHBOARD_DIR", &dashboard)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("caddy starts");
        let mut caddy = Self {
            base,
            child,
            log,
            _home: home,
        };
        caddy.wait_ready(client).await;
        caddy
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("caddy exited ({status}) at start:\n{}", self.log_text());
            }
            if let Ok(r) = client.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "caddy did not proxy /healthz within 60 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails, with what to do, when Debian's `caddy` is not installed.
fn require_caddy() {
    let found = Command::new("caddy")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`caddy` is not installed: run scripts/test, which installs Debian's caddy \
         (scripts/lib/ensure-caddy), or `apt-get install caddy`"
    );
}

/// The dashboard's build, or a failure saying how to make it.
fn dashboard_build() -> PathBuf {
    let dir = common::workspace()
        .join("dashboard/build")
        .canonicalize()
        .ok()
        .filter(|d| d.join("index.html").is_file());
    dir.expect("the dashboard is not built: run scripts/test, or scripts/lib/dashboard-build first")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client whose connections come from [`CLIENT`].
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(CLIENT)
        .build()
        .unwrap()
}

fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// The base64 SHA-256 of every inline `<script>` of a page.
fn inline_script_hashes(html: &str) -> Vec<String> {
    html.split("<script>")
        .skip(1)
        .map(|rest| {
            let body = rest.split("</script>").next().unwrap();
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()))
        })
        .collect()
}

/// Every absolute path the page loads: `href="/..."`, `src="/..."` and
/// the boot script's `import("/...")`.
fn referenced_paths(html: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for marker in ["href=\"/", "src=\"/", "import(\"/"] {
        for rest in html.split(marker).skip(1) {
            let path = rest.split('"').next().unwrap();
            paths.push(format!("/{path}"));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Sends a call of a script: `200`, its invocation id and its JSON answer.
async fn call(request: reqwest::RequestBuilder) -> (String, Value) {
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-picloud-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (id, r.json().await.unwrap())
}

async fn records_of(server: &Server, script: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = server
            .admin(
                reqwest::Method::GET,
                &format!("/api/admin/scripts/{script}/invocations?limit=100"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = page["invocations"].as_array().unwrap().clone();
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_loads_through_caddy() {
    let server = Server::start_with(Options::default());
    let caddy = Caddy::start(host_port(&server.base), &[]).await;
    let http = client();

    let page = http.get(caddy.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    let expected = std::fs::read_to_string(dashboard_build().join("index.html")).unwrap();
    assert_eq!(html, expected, "Caddy serves the build's own page");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    // The header policy adds what a <meta> cannot carry, and names no
    // scripts: a second script policy would block the page's inline boot script.
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src") && !csp.contains("default-src"),
        "{csp}"
    );
    // The page's own policy admits exactly its inline script.
    let meta = html
        .split("http-equiv=\"content-security-policy\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the build carries its CSP in a <meta>");
    let hashes = inline_script_hashes(&html);
    assert!(!hashes.is_empty(), "SvelteKit boots from an inline script");
    for hash in &hashes {
        assert!(meta.contains(&format!("'sha256-{hash}'")), "{meta}");
    }

    // Every file the page loads is there, with its type and a long cache life.
    let paths = referenced_paths(&html);
    let has = |ext: &str| {
        paths
            .iter()
            .any(|p| Path::new(p).extension().is_some_and(|e| e == ext))
    };
    assert!(has("js") && has("css"), "{paths:?}");
    for path in &paths {
        let r = http.get(caddy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let kind = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let want = match Path::new(path).extension().and_then(|e| e.to_str()) {
            Some("js") => "javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            _ => "",
        };
        assert!(kind.contains(want), "{path}: {kind}");
        if path.starts_with("/_app/immutable/") {
            assert_eq!(
                r.headers()[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable",
                "{path}"
            );
        }
        assert!(!r.bytes().await.unwrap().is_empty(), "{path}");
    }

    // Compressed for browsers that accept it (the build's precompressed copies).
    let r = http
        .get(caddy.url("/"))
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header::CONTENT_ENCODING], "br");

    // A route of the app gets the page; a missing file is a 404, not the page.
    let r = http.get(caddy.url("/scripts/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), expected);
    let r = http
        .get(caddy.url("/_app/immutable/missing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // An API path nobody serves is PiCloud's JSON 404, not the page.
    let r = http.get(caddy.url("/api/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_deploy_and_run_through_caddy_and_records_name_the_real_client() {
    // PiCloud believes X-Forwarded-For from Caddy's address only.
    let server = Server::start_with(Options {
        env: vec![("PICLOUD_TRUSTED_PROXIES".into(), "127.0.0.1".into())],
        ..Options::default()
    });
    let caddy = Caddy::start(host_port(&server.base), &[]).await;
    let http = client();

    // Upload through the proxy, with a route of its own.
    let r = http
        .post(caddy.url("/api/admin/scripts"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "name": "greet",
            "route": "GET /exec/greet/{name}",
            "source": "#{ hello: request.params.name }",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without the token the proxy changes nothing: 401.
    let r = http
        .get(caddy.url("/api/admin/scripts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Called by its route and by id; the client claims another address.
    let (by_route, body) = call(
        http.get(caddy.url("/exec/greet/ada"))
            .header("x-forwarded-for", "6.6.6.6"),
    )
    .await;
    assert_eq!(body, json!({"hello": "ada"}));
    let (by_id, _) = call(http.get(caddy.url(&format!("/api/execute/{id}")))).await;
    // The same forged header sent to PiCloud directly, from an address it
    // does not trust, is not believed either.
    let (direct, _) = call(
        http.get(server.url("/exec/greet/direct"))
            .header("x-forwarded-for", "6.6.6.6"),
    )
    .await;

    let records = records_of(&server, "greet", 3).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    for invocation in [&by_route, &by_id, &direct] {
        let record = records
            .iter()
            .find(|r| r["id"] == invocation.as_str())
            .unwrap_or_else(|| panic!("no record of {invocation}: {records:#?}"));
        // Not Caddy's 127.0.0.1, not the forged 6.6.6.6: the client.
        assert_eq!(record["client_addr"], "127.0.0.2", "{record:#}");
    }

    // The health check and, with the token, the metrics are proxied.
    let r = http.get(caddy.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(caddy.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(caddy.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("picloud_"));
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_refuses_a_body_over_its_limit_before_picloud_sees_it() {
    let server = Server::start_with(Options::default());
    // Caddy's limit below PiCloud's (1 MiB by default), so the refusal
    // below can only be Caddy's.
    let caddy = Caddy::start(
        host_port(&server.base),
        &[("PICLOUD_LIMIT_REQUEST_BODY_BYTES_MAX", "1000")],
    )
    .await;
    let http = client();
    let id = server
        .deploy("size", "request.body.len()")
        .await
        .get("id")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let call = |bytes: usize| {
        http.post(caddy.url(&format!("/api/execute/{id}")))
            .body(vec![b'a'; bytes])
            .send()
    };

    let r = call(1000).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1000");

    let r = call(1001).await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large", "{body}");

    // PiCloud itself would have taken it.
    let r = http
        .post(server.execute(&id))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Only the two calls that reached PiCloud left a record.
    let records = records_of(&server, "size", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        records_of(&server, "size", 2).await.len(),
        2,
        "{records:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_production_caddyfile_serves_https_with_its_headers_and_hides_metrics() {
    let server = Server::start_with(Options {
        env: vec![("PICLOUD_TRUSTED_PROXIES".into(), "127.0.0.1".into())],
        ..Options::default()
    });
    // `localhost` gets a certificate from Caddy's own CA: no network, no
    // ACME. The ports are free ones instead of 80 and 443.
    let (plain_port, tls_port) = (free_port(), free_port());
    let https = reqwest::Client::builder()
        .local_address(CLIENT)
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], tls_port)),
        )
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let caddy = Caddy::run(
        "caddy/Caddyfile.prod",
        host_port(&server.base),
        &[
            ("PICLOUD_DOMAIN", "localhost"),
            ("CADDY_HTTP_PORT", &plain_port.to_string()),
            ("CADDY_HTTPS_PORT", &tls_port.to_string()),
        ],
        format!("https://localhost:{tls_port}"),
        &https,
    )
    .await;

    // Plain HTTP redirects to HTTPS.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{plain_port}/api/admin/scripts"))
        .header(header::HOST, "localhost")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("https://localhost"), "{location}");

    // Every answer carries HSTS and the security headers, and no Server.
    let page = https.get(caddy.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    let hsts = headers[header::STRICT_TRANSPORT_SECURITY].to_str().unwrap();
    assert!(hsts.contains("max-age=31536000"), "{hsts}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(headers.get(header::SERVER).is_none());
    let html = page.text().await.unwrap();
    assert!(html.contains("http-equiv=\"content-security-policy\""));
    // The dashboard compresses.
    let r = https
        .get(caddy.url("/"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");

    // The API works through it, and the record names the client.
    let r = https
        .post(caddy.url("/api/admin/scripts"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "prod", "route": "GET /exec/prod", "source": "\"tls\""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get(header::STRICT_TRANSPORT_SECURITY).is_some());
    let r = https.get(caddy.url("/exec/prod")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tls");
    let records = records_of(&server, "prod", 1).await;
    assert_eq!(records[0]["client_addr"], "127.0.0.2");

    // /metrics is not public, with or without the token.
    for token in [None, Some(TOKEN)] {
        let mut request = https.get(caddy.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(!r.text().await.unwrap().contains("picloud_"));
    }

    // The access log is JSON, one object per request.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = caddy.log_text();
        let access: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["logger"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("http.log.access"))
            })
            .collect();
        if access.iter().any(|v| v["request"]["uri"] == "/exec/prod") {
            assert!(
                access
                    .iter()
                    .any(|v| v["status"] == 404 && v["request"]["uri"] == "/metrics")
            );
            break;
        }
        assert!(Instant::now() < deadline, "no JSON access log line:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The committed files' request body limit is PiCloud's own maximum.
#[test]
fn the_caddy_body_limit_defaults_to_picloud_s_maximum() {
    let max = shared::Limits::MAXIMA.request_body_bytes;
    for file in [
        "caddy/Caddyfile",
        "caddy/Caddyfile.prod",
        "caddy/errors.caddy",
    ] {
        let text = std::fs::read_to_string(common::workspace().join(file)).unwrap();
        let uses: Vec<&str> = text
            .match_indices("{$PICLOUD_LIMIT_REQUEST_BODY_BYTES_MAX:")
            .map(|(at, _)| text[at..].split('}').next().unwrap())
            .collect();
        assert!(!uses.is_empty(), "{file} sets no body limit");
        for used in uses {
            assert_eq!(
                used,
                format!("{{$PICLOUD_LIMIT_REQUEST_BODY_BYTES_MAX:{max}"),
                "{file}"
            );
        }
    }
}
