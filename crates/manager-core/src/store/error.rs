//! What can go wrong in the store, sorted by what a caller does about it.
//!
//! Callers branch on the variant (409 for a duplicate name, 404 for a missing
//! script, 503 when the database is away); the message is for logs. Database
//! errors are classified by their error code or kind, never by their text.

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// An error from the script repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another script already has this name.
    #[error("a script named `{0}` already exists")]
    DuplicateName(String),
    /// The script does not exist (or was deleted meanwhile).
    #[error("no such script")]
    NotFound,
    /// The database cannot be reached or is too busy right now; retrying may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not decode into what it should hold.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// The database configuration is unusable (bad URL, data directory not creatable).
    #[error("database configuration: {0}")]
    Config(String),
    /// The schema could not be brought up to date, or the database is newer than this build.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => classify_database_error(db.as_ref()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.to_string()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => Self::Corrupt(err.to_string()),
            sqlx::Error::Configuration(_) => Self::Config(err.to_string()),
            sqlx::Error::Migrate(migrate) => Self::from(*migrate),
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            // A connection that fails while migrating is an outage, not a bad schema.
            sqlx::migrate::MigrateError::Execute(inner) => match Self::from(inner) {
                unavailable @ Self::Unavailable(_) => unavailable,
                other => Self::Migration(other.to_string()),
            },
            other => Self::Migration(other.to_string()),
        }
    }
}

/// Whether `err` is a unique-constraint violation (by the driver's error kind).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

fn classify_database_error(db: &dyn DatabaseError) -> StoreError {
    let transient = if db.try_downcast_ref::<SqliteError>().is_some() {
        db.code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(is_transient_sqlite_code)
    } else if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        is_transient_sqlstate(pg.code())
    } else {
        false
    };
    if transient {
        StoreError::Unavailable(db.to_string())
    } else {
        StoreError::Other(db.to_string())
    }
}

/// SQLite's busy/locked family: the low byte of an extended result code is
/// its primary code.
fn is_transient_sqlite_code(extended: i64) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    matches!(extended & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
}

/// PostgreSQL's connection, resource and shutdown states: the server cannot
/// serve this right now, though the request itself is fine.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || matches!(code, "57P01" | "57P02" | "57P03") // shutting down / starting up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_family_is_transient() {
        assert!(is_transient_sqlite_code(5)); // SQLITE_BUSY
        assert!(is_transient_sqlite_code(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(is_transient_sqlite_code(6)); // SQLITE_LOCKED
        assert!(!is_transient_sqlite_code(2067)); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!is_transient_sqlite_code(19)); // SQLITE_CONSTRAINT
    }

    #[test]
    fn postgres_connection_and_shutdown_states_are_transient() {
        assert!(is_transient_sqlstate("08006"));
        assert!(is_transient_sqlstate("53300"));
        assert!(is_transient_sqlstate("57P01"));
        assert!(!is_transient_sqlstate("23505")); // unique_violation
        assert!(!is_transient_sqlstate("42P01")); // undefined_table
    }

    #[test]
    fn driver_errors_are_sorted_by_what_the_caller_can_do() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(std::io::Error::other("reset"))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::ColumnNotFound("source".into())),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
        assert!(!is_unique_violation(&sqlx::Error::RowNotFound));
    }
}
