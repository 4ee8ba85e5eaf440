//! Runs one test body against a real database of either backend.
//!
//! SQLite gets a fresh temporary data directory; PostgreSQL gets a fresh
//! database (`picloud_t_<random>`) on the server named by
//! `PICLOUD_TEST_PG_URL`, dropped afterwards even when the body panics. Tests
//! therefore never see each other's rows and may run in parallel. An
//! unreachable PostgreSQL server fails the test: it is never skipped.

use std::future::Future;

use manager_core::store::{Backend, DbConfig, SQLITE_FILE_NAME, ScriptRepository};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tempfile::TempDir;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one test.
pub struct TestDb {
    pub backend: Backend,
    pub config: DbConfig,
    _data_dir: Option<TempDir>,
}

impl TestDb {
    /// Opens the repository, as the server would at start.
    pub async fn open(&self) -> ScriptRepository {
        ScriptRepository::connect(&self.config)
            .await
            .unwrap_or_else(|err| panic!("opening the {} repository: {err}", self.backend))
    }

    /// Runs SQL on a connection of its own, behind the repository's back.
    pub async fn raw_execute(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        Ok(match self.backend {
            Backend::Sqlite => self.raw_sqlite().await.execute(sql).await?.rows_affected(),
            Backend::Postgres => self
                .raw_postgres()
                .await
                .execute(sql)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a query that yields one integer, behind the repository's back.
    pub async fn raw_i64(&self, sql: &'static str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut self.raw_sqlite().await)
                    .await
            }
            Backend::Postgres => {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut self.raw_postgres().await)
                    .await
            }
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// Runs a query that yields one text value, behind the repository's back.
    pub async fn raw_text(&self, sql: &'static str) -> String {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_one(&mut self.raw_sqlite().await)
                    .await
            }
            Backend::Postgres => {
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_one(&mut self.raw_postgres().await)
                    .await
            }
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    async fn raw_sqlite(&self) -> SqliteConnection {
        let options =
            SqliteConnectOptions::new().filename(self.config.data_dir.join(SQLITE_FILE_NAME));
        SqliteConnection::connect_with(&options)
            .await
            .expect("raw SQLite connection")
    }

    async fn raw_postgres(&self) -> PgConnection {
        let url = self
            .config
            .database_url
            .as_deref()
            .expect("a PostgreSQL test database has a URL");
        PgConnection::connect(url)
            .await
            .expect("raw PostgreSQL connection")
    }
}

/// Runs `body` against a fresh database of `backend`, then removes it.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let config = DbConfig {
                // Nested and absent, so connecting must create it.
                data_dir: dir.path().join("state").join("data"),
                database_url: None,
            };
            body(TestDb {
                backend,
                config,
                _data_dir: Some(dir),
            })
            .await;
        }
        Backend::Postgres => run_on_postgres(body).await,
    }
}

async fn run_on_postgres<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url =
        std::env::var("PICLOUD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|err| {
        panic!(
            "PostgreSQL is not reachable at {admin_url} ({err}). These tests need a real server: \
             start one, or set PICLOUD_TEST_PG_URL to a superuser URL of a running server."
        )
    });
    let name = format!("picloud_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap_or_else(|err| panic!("CREATE DATABASE {name}: {err}"));

    let config = DbConfig {
        data_dir: std::env::temp_dir().join("unused-by-postgres"),
        database_url: Some(with_database(&admin_url, &name)),
    };
    // A task of its own, so a panicking body still reaches the DROP below.
    let outcome = tokio::spawn(body(TestDb {
        backend: Backend::Postgres,
        config,
        _data_dir: None,
    }))
    .await;

    admin
        .execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .await
        .unwrap_or_else(|err| panic!("DROP DATABASE {name}: {err}"));
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test body did not finish: {err}"),
        }
    }
}

/// `url` with its database path replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
}
