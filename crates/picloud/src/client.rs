//! A small client for the admin API, used by the command line.
//!
//! Errors are turned into one readable line: the server's JSON `message`
//! when it sent one, else what went wrong on the way.

use std::fmt::Write as _;

use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where the server is and how to prove we may use its admin API.
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, env = "PICLOUD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token (default: `PICLOUD_ADMIN_TOKEN`, else `<data dir>/admin-token`).
    #[arg(long, env = "PICLOUD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory to find a generated `admin-token` in.
    #[arg(long, env = "PICLOUD_DATA_DIR", default_value = "./data", hide = true)]
    pub data_dir: std::path::PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(conn: &Connection) -> anyhow::Result<Self> {
        let token = conn.token.clone().or_else(|| {
            std::fs::read_to_string(conn.data_dir.join("admin-token"))
                .ok()
                .map(|t| t.trim().to_owned())
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("picloud-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to the admin API, with the token.
    pub fn admin(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        let token = self.token.as_deref().ok_or_else(|| {
            anyhow!(
                "no admin token: set PICLOUD_ADMIN_TOKEN, pass --token, or run where \
                     the server's data directory is (./data/admin-token, or set PICLOUD_DATA_DIR)"
            )
        })?;
        Ok(self
            .http
            .request(method, self.url(&format!("/api/admin{path}")))
            .bearer_auth(token))
    }

    /// A request to the data plane (no token).
    pub fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends and decodes a JSON answer; a non-2xx answer becomes one error line.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        let response = fail_unless_ok(response).await?;
        response
            .json()
            .await
            .context("the server's answer is not the JSON expected")
    }

    /// Sends, expecting no body back.
    pub async fn empty(&self, request: RequestBuilder) -> anyhow::Result<()> {
        let response = self.send(request).await?;
        fail_unless_ok(response).await.map(drop)
    }

    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!("cannot reach {}: is picloud running there?", self.base)
            } else if e.is_timeout() {
                anyhow!("{} did not answer in time", self.base)
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })
    }
}

/// Turns an error answer into one line, e.g. `404 not_found: no script x`.
pub async fn fail_unless_ok(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    bail!("{}", describe_error(status, &text))
}

pub fn describe_error(status: StatusCode, body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["message"].is_string() => {
            let mut line = format!(
                "{} {}: {}",
                status.as_u16(),
                v["error"].as_str().unwrap_or("error"),
                v["message"].as_str().unwrap_or_default()
            );
            if let (Some(l), Some(c)) = (v["line"].as_u64(), v["column"].as_u64()) {
                let _ = write!(line, " (line {l}, column {c})");
            }
            line
        }
        _ => format!("{status}"),
    }
}
