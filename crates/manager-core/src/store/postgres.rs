//! The production backend: PostgreSQL 15+, chosen by a `postgres://` URL.
//!
//! Invariants: ids are native `UUID`s (read back as text so both backends
//! share one row type); a save locks the script's row with
//! `SELECT ... FOR UPDATE` and only then reads the current version, in a
//! separate statement, so concurrent saves of one script queue on that row
//! and each sees the version the previous one wrote. Saves of different
//! scripts do not wait for each other.

use std::str::FromStr;
use std::time::Duration;

use shared::{Script, ScriptId};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::error::{StoreError, is_unique_violation};
use super::model::{NewScript, ScriptChange, VersionInfo};
use super::rows::{PendingVersion, ScriptRow, VersionRow};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_CONNECTIONS: u32 = 10;
/// Bounds how long a request waits for a connection: while the server is
/// away, every admin request waits this long before its `503` (sqlx keeps
/// trying to connect until then), so it is short; a busy pool of ten
/// connections frees one far sooner.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Selects a script's current version; append a `WHERE` clause.
macro_rules! current_script {
    ($tail:literal) => {
        concat!(
            "SELECT s.id::text AS id, s.name, s.version, v.source, s.limits, s.route_method, s.route_path, s.cors_origins, s.concurrency, s.created_at, s.updated_at ",
            "FROM scripts s LEFT JOIN script_versions v ",
            "ON v.script_id = s.id AND v.version = s.version ",
            $tail
        )
    };
}

/// Whether `url` names a PostgreSQL server.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connects to the server at `url` and migrates its database.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    // The parse error may quote the URL, which may hold a password: say less.
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::Config("the PostgreSQL URL does not parse".to_owned()))?
        .application_name("picloud");
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    tracing::info!("connected to PostgreSQL");
    Ok(pool)
}

pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub async fn create(pool: &PgPool, new: NewScript) -> Result<Script, StoreError> {
    let pending = PendingVersion::first(new);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO scripts (id, name, version, limits, created_at, updated_at, route_method, route_path, cors_origins, concurrency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(pending.script.id.0)
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

pub async fn list(pool: &PgPool) -> Result<Vec<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("ORDER BY s.name"))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(ScriptRow::into_script)
        .collect()
}

pub async fn get(pool: &PgPool, id: ScriptId) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?
        .map(ScriptRow::into_script)
        .transpose()
}

pub async fn get_by_name(pool: &PgPool, name: &str) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await?
        .map(ScriptRow::into_script)
        .transpose()
}

pub async fn get_version(
    pool: &PgPool,
    id: ScriptId,
    version: u32,
) -> Result<Option<Script>, StoreError> {
    sqlx::query_as::<_, ScriptRow>(
        "SELECT s.id::text AS id, s.name, v.version, v.source, v.limits, s.route_method, s.route_path, s.cors_origins, s.concurrency, s.created_at, \
                v.created_at AS updated_at \
         FROM script_versions v JOIN scripts s ON s.id = v.script_id \
         WHERE v.script_id = $1 AND v.version = $2",
    )
    .bind(id.0)
    .bind(i64::from(version))
    .fetch_optional(pool)
    .await?
    .map(ScriptRow::into_script)
    .transpose()
}

pub async fn update(
    pool: &PgPool,
    id: ScriptId,
    change: ScriptChange,
) -> Result<Script, StoreError> {
    let mut tx = pool.begin().await?;
    // Lock first, read second. Locking inside the joined read is wrong: a save
    // that waited for the lock re-checks only the locked row, so it would pair
    // the new current version with the old version row (or none).
    sqlx::query("SELECT 1 FROM scripts WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    // A new statement under READ COMMITTED sees every save committed before the lock was granted.
    let current = sqlx::query_as::<_, ScriptRow>(current_script!("WHERE s.id = $1"))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?
        .into_script()?;
    let pending = PendingVersion::next(current, change)?;
    sqlx::query(
        "UPDATE scripts SET version = $2, limits = $3, updated_at = $4, \
         route_method = $5, route_path = $6, cors_origins = $7, concurrency = $8 \
         WHERE id = $1",
    )
    .bind(id.0)
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

pub async fn delete(pool: &PgPool, id: ScriptId) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM scripts WHERE id = $1")
        .bind(id.0)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn versions(pool: &PgPool, id: ScriptId) -> Result<Vec<VersionInfo>, StoreError> {
    sqlx::query_as::<_, VersionRow>(
        "SELECT version, content_hash, created_at, restored_from FROM script_versions \
         WHERE script_id = $1 ORDER BY version",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(VersionRow::into_info)
    .collect()
}

pub async fn setting(pool: &PgPool, key: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn set_setting(pool: &PgPool, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

async fn insert_version(
    tx: &mut Transaction<'static, Postgres>,
    pending: &PendingVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO script_versions \
         (script_id, version, source, content_hash, limits, created_at, restored_from) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(pending.script.id.0)
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

    #[test]
    fn recognises_both_url_schemes() {
        assert!(is_postgres_url("postgres://localhost/picloud"));
        assert!(is_postgres_url("postgresql://u@h:5432/db"));
        assert!(!is_postgres_url("sqlite://data/picloud.db"));
        assert!(!is_postgres_url("mysql://localhost"));
    }
}
