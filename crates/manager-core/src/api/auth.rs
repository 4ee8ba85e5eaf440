//! The admin token: a 256-bit random secret of which only the SHA-256 is kept.
//!
//! A slow password hash would buy nothing for a random token and would turn a
//! flood of wrong tokens into a CPU attack; the comparison is constant-time.
//! Failures are `401` with no hint which part was wrong, and each client
//! address gets a bounded number of them per minute before `429`. Browsers
//! may call the admin API only from the dashboard's own origin.

use std::io::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lru::LruCache;
use shared::TrustedProxies;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::store::{ScriptRepository, StoreError};

const SETTING_KEY: &str = "admin_token_sha256";
/// Name of the file the generated token is written to, in the data directory.
pub const TOKEN_FILE: &str = "admin-token";
/// Makes leaked tokens easy for secret scanners to recognise.
const TOKEN_PREFIX: &str = "picloud_";

/// The admin token's hash, held in memory.
#[derive(Clone)]
pub struct AdminToken {
    sha256: [u8; 32],
}

/// Where the token in force came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `PICLOUD_ADMIN_TOKEN`.
    Environment,
    /// A hash stored by an earlier start.
    Stored,
    /// Generated now and written to this file (mode 0600).
    Generated(PathBuf),
}

/// Why the token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("PICLOUD_ADMIN_TOKEN is set but empty")]
    EmptyToken,
    #[error("stored admin token hash is malformed; run `picloud admin reset-token`")]
    CorruptHash,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AdminToken {
    pub fn from_secret(secret: &str) -> Self {
        Self {
            sha256: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Constant-time check of a presented token.
    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.sha256).into()
    }

    /// The token in force: from the environment, else the stored hash, else a
    /// new one generated, stored (hash only) and written to `data_dir`.
    pub async fn bootstrap(
        repo: &ScriptRepository,
        data_dir: &Path,
        from_env: Option<&str>,
    ) -> Result<(Self, TokenSource), TokenError> {
        if let Some(secret) = from_env {
            if secret.trim().is_empty() {
                return Err(TokenError::EmptyToken);
            }
            return Ok((Self::from_secret(secret), TokenSource::Environment));
        }
        if let Some(token) = Self::stored(repo).await? {
            return Ok((token, TokenSource::Stored));
        }
        let (token, path) = Self::issue(repo, data_dir).await?;
        Ok((token, TokenSource::Generated(path)))
    }

    /// The token whose hash is stored, if any.
    pub async fn stored(repo: &ScriptRepository) -> Result<Option<Self>, TokenError> {
        let Some(stored) = repo.setting(SETTING_KEY).await? else {
            return Ok(None);
        };
        let bytes = hex::decode(stored.trim()).map_err(|_| TokenError::CorruptHash)?;
        let sha256 = <[u8; 32]>::try_from(bytes).map_err(|_| TokenError::CorruptHash)?;
        Ok(Some(Self { sha256 }))
    }

    /// Issues a new random token: stores its hash (replacing any old one) and
    /// writes the token itself to `<data_dir>/admin-token` with mode 0600.
    pub async fn issue(
        repo: &ScriptRepository,
        data_dir: &Path,
    ) -> Result<(Self, PathBuf), TokenError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let path = data_dir.join(TOKEN_FILE);
        write_private(&path, &secret).map_err(|source| TokenError::File {
            path: path.clone(),
            source,
        })?;
        let token = Self::from_secret(&secret);
        repo.set_setting(SETTING_KEY, &hex::encode(token.sha256))
            .await?;
        Ok((token, path))
    }
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode on open; make sure it is private.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Failed attempts one client address may make per window.
pub const MAX_FAILURES: u32 = 20;
/// The rate-limit window.
pub const FAILURE_WINDOW: Duration = Duration::from_mins(1);
/// Addresses tracked at once; the least recently failing are forgotten first.
const TRACKED_CLIENTS: usize = 10_000;

/// The admin API's gate: the token in force, the failure limiter and the
/// trusted proxies that may name the client's address.
pub struct AuthGuard {
    token: ArcSwap<AdminToken>,
    failures: Mutex<LruCache<IpAddr, (Instant, u32)>>,
    trusted: TrustedProxies,
}

impl AuthGuard {
    pub fn new(token: AdminToken, trusted: TrustedProxies) -> Self {
        Self {
            token: ArcSwap::from_pointee(token),
            failures: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_CLIENTS).expect("non-zero constant"),
            )),
            trusted,
        }
    }

    /// Puts a new token in force (after `picloud admin reset-token`).
    pub fn replace(&self, token: AdminToken) {
        self.token.store(Arc::new(token));
    }

    fn verify(&self, presented: &str) -> bool {
        self.token.load().verify(presented)
    }

    /// Whether `ip` is still within its failure budget.
    fn may_try(&self, ip: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&ip) {
            Some((since, count)) if since.elapsed() < FAILURE_WINDOW => *count < MAX_FAILURES,
            _ => true,
        }
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match failures.get_mut(&ip) {
            Some((since, count)) if since.elapsed() < FAILURE_WINDOW => *count += 1,
            _ => {
                failures.put(ip, (now, 1));
            }
        }
    }

    /// Re-reads the stored hash every `every`, so a token reset from the
    /// command line takes effect without a restart. Not used when the token
    /// comes from the environment.
    pub fn follow_stored(self: &Arc<Self>, repo: ScriptRepository, every: Duration) {
        let guard = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match AdminToken::stored(&repo).await {
                    Ok(Some(token)) => {
                        if token.sha256 != guard.token.load().sha256 {
                            tracing::warn!(
                                "the admin token was reset; the old one no longer works"
                            );
                            guard.replace(token);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "could not re-read the admin token hash"),
                }
            }
        });
    }
}

/// Middleware: every admin request needs `Authorization: Bearer <token>`,
/// from a client within its failure budget, and (from a browser) the
/// dashboard's own origin.
pub async fn require_token(
    State(guard): State<Arc<AuthGuard>>,
    request: Request,
    next: Next,
) -> Response {
    if !same_origin(request.headers()) {
        return ApiError::ForbiddenOrigin.into_response();
    }
    let ip = client_ip(&guard.trusted, &request);
    if !guard.may_try(ip) {
        return ApiError::RateLimited(FAILURE_WINDOW.as_secs()).into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if guard.verify(p) => next.run(request).await,
        _ => {
            guard.record_failure(ip);
            tracing::info!(client = %ip, "admin request with a missing or wrong token");
            ApiError::Unauthorized.into_response()
        }
    }
}

fn client_ip(trusted: &TrustedProxies, request: &Request) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    trusted.client_ip(peer, forwarded)
}

/// A request with an `Origin` must come from the host it is sent to (the
/// dashboard is served from the same host as the API). Requests without an
/// `Origin` (command line, scripts) are not browsers' cross-site requests.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
    });
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_token() {
        let t = AdminToken::from_secret("picloud_abc");
        assert!(t.verify("picloud_abc"));
        assert!(!t.verify("picloud_abd"));
        assert!(!t.verify(""));
    }

    #[test]
    fn limits_failures_per_client() {
        let guard = AuthGuard::new(AdminToken::from_secret("t"), TrustedProxies::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(guard.may_try(a));
            guard.record_failure(a);
        }
        assert!(!guard.may_try(a));
        assert!(
            guard.may_try(b),
            "one client's failures do not lock out another"
        );
    }

    #[test]
    fn origin_must_match_the_host() {
        use axum::http::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("box.local:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://box.local:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn writes_the_token_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(TOKEN_FILE);
        write_private(&path, "secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret\n");
    }
}
