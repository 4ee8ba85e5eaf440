//! The admin token: a 256-bit random secret of which only the SHA-256 is kept.
//!
//! A slow password hash would buy nothing for a random token and would turn a
//! flood of wrong tokens into a CPU attack; the comparison is constant-time.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
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
        if let Some(stored) = repo.setting(SETTING_KEY).await? {
            let bytes = hex::decode(stored.trim()).map_err(|_| TokenError::CorruptHash)?;
            let sha256 = <[u8; 32]>::try_from(bytes).map_err(|_| TokenError::CorruptHash)?;
            return Ok((Self { sha256 }, TokenSource::Stored));
        }
        let (token, path) = Self::issue(repo, data_dir).await?;
        Ok((token, TokenSource::Generated(path)))
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

/// Middleware: every admin request needs `Authorization: Bearer <token>`.
pub async fn require_token(
    State(token): State<Arc<AdminToken>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if token.verify(p) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
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
    fn writes_the_token_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(TOKEN_FILE);
        write_private(&path, "secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret\n");
    }
}
