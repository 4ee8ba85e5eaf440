//! Script storage: the manager's database, over SQLite or PostgreSQL.
//!
//! [`ScriptRepository`] is the only writer. Its invariants, on both backends:
//! - A script's versions are numbered 1, 2, 3, ... without gaps or repeats,
//!   even under concurrent saves; a version row is never changed once written
//!   (the schema refuses `UPDATE`s on it) and carries the SHA-256 of its source.
//! - Every multi-row write is one transaction, so a crash leaves either the old
//!   state or the new one.
//! - Every value read back is checked; a row that does not decode is reported
//!   as [`StoreError::Corrupt`], never a panic.
//! - Timestamps are stored as unix milliseconds; a script returned by a write
//!   is equal to the one a later read returns.
//!
//! Migrations (workspace `migrations/sqlite` and `migrations/postgres`) are
//! compiled in and applied at [`ScriptRepository::connect`].

mod error;
pub mod invocations;
mod model;
mod postgres;
mod rows;
mod sqlite;

use async_trait::async_trait;
use shared::{HealthCheck, Script, ScriptId};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

pub use error::StoreError;
pub use model::{Backend, DbConfig, NewScript, ScriptChange, VersionInfo};
pub use rows::content_hash;
/// The SQLite database's file name inside the data directory.
pub use sqlite::FILE_NAME as SQLITE_FILE_NAME;

/// The script store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ScriptRepository {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl ScriptRepository {
    /// Opens the database `config` names and brings its schema up to date.
    ///
    /// With a `database_url` (`postgres://` or `postgresql://`) it connects to
    /// PostgreSQL; an empty URL counts as unset. Otherwise it uses SQLite in
    /// `data_dir`, creating the directory (mode 0700) and `picloud.db` if they
    /// do not exist. Fails with [`StoreError::Config`] for any other URL scheme
    /// or an unusable data directory, [`StoreError::Unavailable`] when the
    /// server cannot be reached, and [`StoreError::Migration`] when the schema
    /// cannot be migrated (including a database migrated by a newer build).
    pub async fn connect(config: &DbConfig) -> Result<Self, StoreError> {
        let pool = match config.database_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => {
                if !postgres::is_postgres_url(url) {
                    return Err(StoreError::Config(
                        "the database URL must start with postgres:// or postgresql:// \
                         (SQLite is configured by the data directory)"
                            .to_owned(),
                    ));
                }
                Pool::Postgres(postgres::connect(url).await?)
            }
            _ => Pool::Sqlite(sqlite::connect(&config.data_dir).await?),
        };
        Ok(Self { pool })
    }

    /// Which engine this repository talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a trivial query: `Ok` means the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::ping(pool).await,
            Pool::Postgres(pool) => postgres::ping(pool).await,
        }
    }

    /// Stores a new script as version 1 under a fresh id and returns it.
    /// Fails with [`StoreError::DuplicateName`] when the name is taken.
    pub async fn create(&self, new: NewScript) -> Result<Script, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::create(pool, new).await,
            Pool::Postgres(pool) => postgres::create(pool, new).await,
        }
    }

    /// The current version of every script, ordered by name (byte order).
    pub async fn list(&self) -> Result<Vec<Script>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::list(pool).await,
            Pool::Postgres(pool) => postgres::list(pool).await,
        }
    }

    /// The current version of one script, or `None` if there is no such script.
    pub async fn get(&self, id: ScriptId) -> Result<Option<Script>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::get(pool, id).await,
            Pool::Postgres(pool) => postgres::get(pool, id).await,
        }
    }

    /// The current version of the script with this exact name, if any.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<Script>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::get_by_name(pool, name).await,
            Pool::Postgres(pool) => postgres::get_by_name(pool, name).await,
        }
    }

    /// One stored version of a script, as it was saved: its source and limits,
    /// with `updated_at` the time that version was written. `None` when the
    /// script or that version does not exist.
    pub async fn get_version(
        &self,
        id: ScriptId,
        version: u32,
    ) -> Result<Option<Script>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::get_version(pool, id, version).await,
            Pool::Postgres(pool) => postgres::get_version(pool, id, version).await,
        }
    }

    /// Saves a new version (current + 1) with the changed fields, in one
    /// transaction, and returns it. Concurrent saves of one script queue, so
    /// none is lost and no number repeats. Fails with [`StoreError::NotFound`]
    /// when the script does not exist.
    pub async fn update(&self, id: ScriptId, change: ScriptChange) -> Result<Script, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::update(pool, id, change).await,
            Pool::Postgres(pool) => postgres::update(pool, id, change).await,
        }
    }

    /// Deletes a script with all its versions. `false` when there was none.
    pub async fn delete(&self, id: ScriptId) -> Result<bool, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::delete(pool, id).await,
            Pool::Postgres(pool) => postgres::delete(pool, id).await,
        }
    }

    /// A script's history, oldest first. A script always has at least version
    /// 1, so an empty history means [`StoreError::NotFound`].
    pub async fn versions(&self, id: ScriptId) -> Result<Vec<VersionInfo>, StoreError> {
        let versions = match &self.pool {
            Pool::Sqlite(pool) => sqlite::versions(pool, id).await,
            Pool::Postgres(pool) => postgres::versions(pool, id).await,
        }?;
        if versions.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(versions)
    }

    /// The value of a server setting, if it was ever set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::setting(pool, key).await,
            Pool::Postgres(pool) => postgres::setting(pool, key).await,
        }
    }

    /// Sets a server setting, replacing any earlier value.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::set_setting(pool, key, value).await,
            Pool::Postgres(pool) => postgres::set_setting(pool, key, value).await,
        }
    }

    /// Waits for in-flight queries, then closes every connection. Later calls
    /// on this repository (or its clones) fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

#[async_trait]
impl HealthCheck for ScriptRepository {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.ping().await.map_err(|err| err.to_string())
    }
}
