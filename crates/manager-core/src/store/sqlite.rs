//! The embedded backend: one SQLite file, `picloud.db`, in the data directory.
//!
//! Invariants: every connection runs in WAL mode with foreign keys on (so
//! deleting a script deletes its versions) and a busy timeout, so a writer
//! waits for the lock instead of failing.
//!
//! Durability: a write is answered only after its transaction committed.
//! In WAL mode a commit appends to the `-wal` file; with `synchronous=FULL`
//! (set explicitly, not left to the build of SQLite) that file is synced at
//! every commit, so an acknowledged write survives a `kill -9` of the
//! server (which `NORMAL` would survive too: the OS still holds the written
//! pages) and also a power cut or kernel crash (which `NORMAL` would not).
//! Saves are rare and records are written in batches, so the sync per
//! commit costs little. Every multi-statement write runs in
//! a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock
//! before reading: two saves of one script serialize, and the second reads
//! the version the first wrote.

use std::path::Path;
use std::time::Duration;

use shared::{Script, ScriptId};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::error::{StoreError, is_unique_violation};
use super::model::{NewScript, ScriptChange, VersionInfo};
use super::rows::{PendingVersion, ScriptRow, VersionRow};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "picloud.db";

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers run in parallel under WAL; writers take turns whatever the count.
const MAX_CONNECTIONS: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Selects a script's current version; append a `WHERE` clause.
macro_rules! current_script {
    ($tail:literal) => {
        concat!(
            "SELECT s.id, s.name, s.version, v.source, s.limits, s.route_method, s.route_path, s.cors_origins, s.concurrency, s.created_at, s.updated_at ",
            "FROM scripts s LEFT JOIN script_versions v ",
            "ON v.script_id = s.id AND v.version = s.version ",
            $tail
        )
    };
}

/// Opens (creating if needed) the database in `data_dir` and migrates it.
pub async fn connect(data_dir: &Path) -> Result<SqlitePool, StoreError> {
    create_private_dir(data_dir).await?;
    let path = data_dir.join(FILE_NAME);
    create_private_file(&path).await?;
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|err| match StoreError::from(err) {
            StoreError::Other(msg) => {
                StoreError::Config(format!("cannot open {}: {msg}", path.display()))
            }
            other => other,
        })?;
    MIGRATOR.run(&pool).await?;
    tracing::info!(path = %path.display(), "opened SQLite database");
    Ok(pool)
}

/// The data directory holds every script's source and the admin token hash:
/// only the server's own user may enter it. An existing directory is left as it is.
async fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(dir).await.map_err(|err| {
        StoreError::Config(format!(
            "cannot create data directory {}: {err}",
            dir.display()
        ))
    })
}

/// The database file is made 0600 before SQLite opens it (SQLite gives its
/// `-wal` and `-shm` files the same mode), so a copy of the directory's
/// files (a backup) does not become readable by others. An existing file
/// is left as it is.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::Config(format!(
            "cannot create {}: {err}",
            path.display()
        ))),
    }
}

pub async fn ping(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub async fn create(pool: &SqlitePool, new: NewScript) -> Result<Script, StoreError> {
    let pending = PendingVersion::first(new);
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    sqlx::query(
        "INSERT INTO scripts (id, name, version, limits, created_at, updated_at, route_method, route_path, cors_origins, concurrency) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(pending.script.id.to_string())
    .bind(&pending.script.name)
    .bind(pending.version())
    .bind(&pending.limits_json)
    .bind(pending.created_at_ms())
    .bind(pending.updated_at_ms())
    .bind(pending.route_method())
    .bind(pending.route_path())
    .bind(&pending.cors_json)
    .bind(pending.concurrency())
    .execute(&mut *tx)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            StoreError::DuplicateName(pending.script.name.clone())
        } else {
            err.into()
        }
    })?;
    insert_version(&mut tx, &pending).await?;
    tx.commit().await?;
    Ok(pending.script)
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("ORDER BY s.name"))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(ScriptRow::into_script)
        .collect()
}

pub async fn get(pool: &SqlitePool, id: ScriptId) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.id = ?1"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
        .map(ScriptRow::into_script)
        .transpose()
}

pub async fn get_by_name(pool: &SqlitePool, name: &str) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.name = ?1"))
        .bind(name)
        .fetch_optional(pool)
        .await?
        .map(ScriptRow::into_script)
        .transpose()
}

pub async fn get_version(
    pool: &SqlitePool,
    id: ScriptId,
    version: u32,
) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(
        "SELECT s.id, s.name, v.version, v.source, v.limits, s.route_method, s.route_path, s.cors_origins, s.concurrency, s.created_at, \
                v.created_at AS updated_at \
         FROM script_versions v JOIN scripts s ON s.id = v.script_id \
         WHERE v.script_id = ?1 AND v.version = ?2",
    )
    .bind(id.to_string())
    .bind(i64::from(version))
    .fetch_optional(pool)
    .await?
    .map(ScriptRow::into_script)
    .transpose()
}

pub async fn update(
    pool: &SqlitePool,
    id: ScriptId,
    change: ScriptChange,
) -> Result<Script, StoreError> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    let current = sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.id = ?1"))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?
        .into_script()?;
    let pending = PendingVersion::next(current, change)?;
    sqlx::query(
        "UPDATE scripts SET version = ?2, limits = ?3, updated_at = ?4, \
         route_method = ?5, route_path = ?6, cors_origins = ?7, concurrency = ?8 \
         WHERE id = ?1",
    )
    .bind(id.to_string())
    .bind(pending.version())
    .bind(&pending.limits_json)
    .bind(pending.updated_at_ms())
    .bind(pending.route_method())
    .bind(pending.route_path())
    .bind(&pending.cors_json)
    .bind(pending.concurrency())
    .execute(&mut *tx)
    .await?;
    insert_version(&mut tx, &pending).await?;
    tx.commit().await?;
    Ok(pending.script)
}

pub async fn delete(pool: &SqlitePool, id: ScriptId) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM scripts WHERE id = ?1")
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn versions(pool: &SqlitePool, id: ScriptId) -> Result<Vec<VersionInfo>, StoreError> {
    sqlx::query_as::<_, VersionRow>(
        "SELECT version, content_hash, created_at, restored_from FROM script_versions \
         WHERE script_id = ?1 ORDER BY version",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(VersionRow::into_info)
    .collect()
}

pub async fn setting(pool: &SqlitePool, key: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn set_setting(pool: &SqlitePool, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

async fn insert_version(
    tx: &mut Transaction<'static, Sqlite>,
    pending: &PendingVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO script_versions \
         (script_id, version, source, content_hash, limits, created_at, restored_from) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(pending.script.id.to_string())
    .bind(pending.version())
    .bind(&pending.script.source)
    .bind(&pending.content_hash)
    .bind(&pending.limits_json)
    .bind(pending.updated_at_ms())
    .bind(pending.restored_from())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_database_files_are_private_to_the_server() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(dir.path()).await.unwrap();
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        for name in [FILE_NAME.to_owned(), format!("{FILE_NAME}-wal")] {
            let mode = std::fs::metadata(dir.path().join(&name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[tokio::test]
    async fn every_connection_is_wal_with_a_sync_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(dir.path()).await.unwrap();
        // Every pooled connection, not just the first one.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut conn = pool.acquire().await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
            held.push(conn);
        }
    }
}
