//! What callers hand to the repository and what it hands back besides
//! [`shared::Script`].

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::LimitOverrides;
use shared::route::Route;

/// Where the database lives.
#[derive(Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Holds `picloud.db` when SQLite is used; created on first start.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `postgresql://`) URL. When set it wins over `data_dir`.
    pub database_url: Option<String>,
}

impl Default for DbConfig {
    /// SQLite in `./data`.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
        }
    }
}

// A database URL may carry a password; it must never reach a log line.
impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Which database engine a repository talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Lower-case name, for logs and readiness reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A script to create. The caller has already validated the name, the source
/// size and the limits; the store keeps what it is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewScript {
    pub name: String,
    pub source: String,
    pub limits: LimitOverrides,
    pub route: Option<Route>,
    pub cors_origins: Vec<String>,
    pub concurrency: Option<u32>,
}

/// A save of an existing script: each `None` keeps the current value. Every
/// save creates a new version, even one that changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptChange {
    pub source: Option<String>,
    pub limits: Option<LimitOverrides>,
    /// `Some(None)` removes the route.
    pub route: Option<Option<Route>>,
    pub cors_origins: Option<Vec<String>>,
    /// `Some(None)` goes back to the pool's default.
    pub concurrency: Option<Option<u32>>,
    /// Set by a rollback: the version whose content this save restores.
    pub restored_from: Option<u32>,
}

/// One entry of a script's version history.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    /// SHA-256 of the version's source, lower-case hex.
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    /// Written by a rollback to this earlier version's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_database_url() {
        let config = DbConfig {
            data_dir: PathBuf::from("data"),
            database_url: Some("postgres://picloud:hunter2@db/picloud".to_owned()),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
