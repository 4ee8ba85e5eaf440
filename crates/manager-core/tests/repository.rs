//! The repository suite: every test runs once on SQLite and once on
//! PostgreSQL, each time against a fresh, real database.

// Test bodies live in helper fns the lint does not recognise as tests.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Utc};
use common::TestDb;
use manager_core::store::{
    Backend, DbConfig, NewScript, SQLITE_FILE_NAME, ScriptChange, ScriptRepository, StoreError,
    content_hash,
};
use shared::{LimitOverrides, ScriptId};

/// Writes each test body once and instantiates it for both backends, as
/// `<test>::sqlite` and `<test>::postgres`.
macro_rules! on_both_backends {
    ($( async fn $name:ident($db:ident: TestDb) $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                common::run(Backend::Sqlite, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                common::run(Backend::Postgres, body).await;
            }
        }
    )*};
}

fn new_script(name: &str, source: &str) -> NewScript {
    NewScript {
        name: name.to_owned(),
        source: source.to_owned(),
        ..NewScript::default()
    }
}

fn source_change(source: &str) -> ScriptChange {
    ScriptChange {
        source: Some(source.to_owned()),
        ..ScriptChange::default()
    }
}

/// Now, cut to the whole milliseconds the store keeps.
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

on_both_backends! {
    async fn create_then_read_back(db: TestDb) {
        let repo = db.open().await;
        assert_eq!(repo.backend(), db.backend);
        repo.ping().await.unwrap();

        let created = repo.create(new_script("hello", "`hi ${request.path}`")).await.unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.name, "hello");
        assert_eq!(created.source, "`hi ${request.path}`");

        assert_eq!(repo.get(created.id).await.unwrap(), Some(created.clone()));
        assert_eq!(repo.get_by_name("hello").await.unwrap(), Some(created.clone()));
        assert_eq!(repo.list().await.unwrap(), vec![created.clone()]);

        assert_eq!(repo.get(ScriptId::new()).await.unwrap(), None);
        assert_eq!(repo.get_by_name("Hello").await.unwrap(), None, "names match exactly");
        assert_eq!(repo.get_by_name("nope").await.unwrap(), None);
    }

    async fn list_holds_current_versions_in_byte_order(db: TestDb) {
        let repo = db.open().await;
        let names = ["b", "a_1", "a-2", "a", "0z", "ab"];
        for name in names {
            repo.create(new_script(name, "1")).await.unwrap();
        }
        let a = repo.get_by_name("a").await.unwrap().unwrap();
        repo.update(a.id, source_change("2")).await.unwrap();

        let listed = repo.list().await.unwrap();
        let listed_names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        let mut expected = names.to_vec();
        expected.sort_unstable(); // str order is byte order, as in the store
        assert_eq!(listed_names, expected);

        let a = listed.iter().find(|s| s.name == "a").unwrap();
        assert_eq!((a.version, a.source.as_str()), (2, "2"));
    }

    async fn duplicate_names_are_refused(db: TestDb) {
        let repo = db.open().await;
        let first = repo.create(new_script("dup", "1")).await.unwrap();
        let err = repo.create(new_script("dup", "2")).await.unwrap_err();
        assert_eq!(err, StoreError::DuplicateName("dup".to_owned()));
        assert_eq!(repo.list().await.unwrap(), vec![first], "the refused create left nothing behind");
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM script_versions").await, 1);
    }

    async fn updates_add_versions_and_keep_old_ones_intact(db: TestDb) {
        let repo = db.open().await;
        let first_limits = LimitOverrides { wall_time_ms: Some(250), ..LimitOverrides::default() };
        let second_limits = LimitOverrides { operations: Some(5_000), ..LimitOverrides::default() };
        let v1 = repo
            .create(NewScript { name: "s".into(), source: "1".into(), limits: first_limits, ..NewScript::default() })
            .await
            .unwrap();

        let v2 = repo.update(v1.id, source_change("2")).await.unwrap();
        assert_eq!((v2.version, v2.source.as_str(), v2.limits), (2, "2", first_limits));
        let v3 = repo
            .update(v1.id, ScriptChange { limits: Some(second_limits), ..ScriptChange::default() })
            .await
            .unwrap();
        assert_eq!((v3.version, v3.source.as_str(), v3.limits), (3, "2", second_limits));
        let v4 = repo.update(v1.id, ScriptChange::default()).await.unwrap();
        assert_eq!((v4.version, v4.source.as_str(), v4.limits), (4, "2", second_limits));
        assert_eq!((v4.id, v4.name.as_str(), v4.created_at), (v1.id, "s", v1.created_at));
        assert_eq!(repo.get(v1.id).await.unwrap(), Some(v4.clone()));

        let history = repo.versions(v1.id).await.unwrap();
        let numbers: Vec<u32> = history.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        for (info, script) in history.iter().zip([&v1, &v2, &v3, &v4]) {
            assert_eq!(info.content_hash, content_hash(&script.source), "version {}", info.version);
            let stored = repo.get_version(v1.id, info.version).await.unwrap().unwrap();
            assert_eq!(stored.source, script.source);
            assert_eq!(stored.limits, script.limits);
            assert_eq!(stored.version, info.version);
            assert_eq!(stored.updated_at, info.created_at);
        }
        assert_ne!(history[0].content_hash, history[1].content_hash);
        assert_eq!(repo.get_version(v1.id, 5).await.unwrap(), None);
        assert_eq!(repo.get_version(ScriptId::new(), 1).await.unwrap(), None);
    }

    async fn the_schema_refuses_to_rewrite_a_version(db: TestDb) {
        let repo = db.open().await;
        let script = repo.create(new_script("s", "original")).await.unwrap();
        let rewrite = db.raw_execute("UPDATE script_versions SET source = 'tampered'").await;
        assert!(rewrite.is_err(), "a version row was rewritten: {rewrite:?}");
        let stored = repo.get_version(script.id, 1).await.unwrap().unwrap();
        assert_eq!(stored.source, "original");
    }

    async fn missing_scripts_are_reported_as_such(db: TestDb) {
        let repo = db.open().await;
        let ghost = ScriptId::new();
        assert_eq!(repo.update(ghost, source_change("1")).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(repo.versions(ghost).await.unwrap_err(), StoreError::NotFound);
        assert!(!repo.delete(ghost).await.unwrap());
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM script_versions").await, 0);
    }

    async fn concurrent_updates_neither_collide_nor_get_lost(db: TestDb) {
        const WRITERS: u32 = 20;
        let repo = db.open().await;
        let script = repo.create(new_script("busy", "v0")).await.unwrap();

        let mut tasks = tokio::task::JoinSet::new();
        for writer in 1..=WRITERS {
            let repo = repo.clone();
            tasks.spawn(async move {
                let saved = repo.update(script.id, source_change(&format!("v{writer}"))).await;
                (writer, saved)
            });
        }
        let mut returned = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (writer, saved) = joined.unwrap();
            let saved = saved.unwrap_or_else(|err| panic!("writer {writer}: {err}"));
            assert_eq!(saved.source, format!("v{writer}"));
            returned.push((saved.version, writer));
        }
        returned.sort_unstable();
        let numbers: Vec<u32> = returned.iter().map(|(version, _)| *version).collect();
        assert_eq!(numbers, (2..=WRITERS + 1).collect::<Vec<_>>(), "no gaps, no repeats");

        let history: Vec<u32> = repo.versions(script.id).await.unwrap().iter().map(|v| v.version).collect();
        assert_eq!(history, (1..=WRITERS + 1).collect::<Vec<_>>());
        for (version, writer) in &returned {
            let stored = repo.get_version(script.id, *version).await.unwrap().unwrap();
            assert_eq!(stored.source, format!("v{writer}"), "version {version} holds its writer's save");
        }
        let current = repo.get(script.id).await.unwrap().unwrap();
        let (last_version, last_writer) = returned.last().unwrap();
        assert_eq!(current.version, *last_version);
        assert_eq!(current.source, format!("v{last_writer}"));
    }

    async fn deleting_a_script_deletes_its_versions(db: TestDb) {
        let repo = db.open().await;
        let doomed = repo.create(new_script("doomed", "1")).await.unwrap();
        repo.update(doomed.id, source_change("2")).await.unwrap();
        let kept = repo.create(new_script("kept", "1")).await.unwrap();
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM script_versions").await, 3);

        assert!(repo.delete(doomed.id).await.unwrap());
        assert_eq!(repo.get(doomed.id).await.unwrap(), None);
        assert_eq!(repo.get_by_name("doomed").await.unwrap(), None);
        assert_eq!(repo.versions(doomed.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(repo.get_version(doomed.id, 1).await.unwrap(), None);
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM script_versions").await, 1, "cascaded");
        assert!(!repo.delete(doomed.id).await.unwrap(), "already gone");

        assert_eq!(repo.list().await.unwrap(), vec![kept]);
        let reborn = repo.create(new_script("doomed", "again")).await.unwrap();
        assert_ne!(reborn.id, doomed.id);
        assert_eq!(reborn.version, 1);
    }

    async fn settings_round_trip(db: TestDb) {
        let repo = db.open().await;
        assert_eq!(repo.setting("admin_token_sha256").await.unwrap(), None);
        repo.set_setting("admin_token_sha256", "aa").await.unwrap();
        assert_eq!(repo.setting("admin_token_sha256").await.unwrap().as_deref(), Some("aa"));
        repo.set_setting("admin_token_sha256", "bb").await.unwrap();
        assert_eq!(repo.setting("admin_token_sha256").await.unwrap().as_deref(), Some("bb"));
        repo.set_setting("other", "").await.unwrap();
        assert_eq!(repo.setting("other").await.unwrap().as_deref(), Some(""));
        assert_eq!(repo.setting("admin_token_sha256").await.unwrap().as_deref(), Some("bb"));
        assert_eq!(repo.setting("absent").await.unwrap(), None);
    }

    async fn data_survives_reopening(db: TestDb) {
        let repo = db.open().await;
        let script = repo.create(new_script("durable", "1")).await.unwrap();
        let script = repo.update(script.id, source_change("2")).await.unwrap();
        repo.set_setting("k", "v").await.unwrap();
        let history = repo.versions(script.id).await.unwrap();
        repo.close().await;
        assert!(matches!(repo.ping().await, Err(StoreError::Unavailable(_))), "closed");

        if db.backend == Backend::Sqlite {
            assert!(db.config.data_dir.join(SQLITE_FILE_NAME).is_file());
        }
        // Opening again re-runs the (already applied) migrations.
        let reopened = db.open().await;
        assert_eq!(reopened.get(script.id).await.unwrap(), Some(script.clone()));
        assert_eq!(reopened.versions(script.id).await.unwrap(), history);
        assert_eq!(reopened.setting("k").await.unwrap().as_deref(), Some("v"));
        let next = reopened.update(script.id, source_change("3")).await.unwrap();
        assert_eq!(next.version, 3);
    }

    async fn limits_round_trip_as_json(db: TestDb) {
        let repo = db.open().await;
        let limits = LimitOverrides {
            operations: Some(1),
            wall_time_ms: Some(60_000),
            memory_bytes: Some(u64::MAX),
            log_bytes: Some(4096),
            ..LimitOverrides::default()
        };
        let script = repo
            .create(NewScript { name: "limited".into(), source: "1".into(), limits, ..NewScript::default() })
            .await
            .unwrap();
        assert_eq!(repo.get(script.id).await.unwrap().unwrap().limits, limits);
        let stored = db.raw_text("SELECT limits FROM scripts").await;
        assert_eq!(serde_json::from_str::<LimitOverrides>(&stored).unwrap(), limits, "stored as JSON text");

        let cleared = repo
            .update(script.id, ScriptChange { limits: Some(LimitOverrides::default()), ..ScriptChange::default() })
            .await
            .unwrap();
        assert_eq!(cleared.limits, LimitOverrides::default());
        assert_eq!(repo.get(script.id).await.unwrap().unwrap().limits, LimitOverrides::default());
        assert_eq!(repo.get_version(script.id, 1).await.unwrap().unwrap().limits, limits);
    }

    async fn timestamps_are_kept_to_the_millisecond(db: TestDb) {
        let repo = db.open().await;
        let before = now_ms();
        let created = repo.create(new_script("clock", "1")).await.unwrap();
        let after_create = now_ms();
        assert!(before <= created.created_at && created.created_at <= after_create);
        assert_eq!(created.created_at, created.updated_at);

        let updated = repo.update(created.id, source_change("2")).await.unwrap();
        let after_update = now_ms();
        assert_eq!(updated.created_at, created.created_at, "creation time never moves");
        assert!(created.updated_at <= updated.updated_at && updated.updated_at <= after_update);

        let stored = repo.get(created.id).await.unwrap().unwrap();
        assert_eq!((stored.created_at, stored.updated_at), (updated.created_at, updated.updated_at));
        let history = repo.versions(created.id).await.unwrap();
        assert_eq!(history[0].created_at, created.created_at);
        assert_eq!(history[1].created_at, updated.updated_at);
        let stored_ms = db.raw_i64("SELECT created_at FROM scripts").await;
        assert_eq!(stored_ms, created.created_at.timestamp_millis(), "unix milliseconds");
    }

    async fn corrupt_rows_are_errors_not_panics(db: TestDb) {
        let repo = db.open().await;
        let script = repo.create(new_script("fragile", "1")).await.unwrap();
        db.raw_execute("UPDATE scripts SET limits = 'not json'").await.unwrap();

        assert!(matches!(repo.get(script.id).await, Err(StoreError::Corrupt(_))));
        assert!(matches!(repo.list().await, Err(StoreError::Corrupt(_))));
        assert!(matches!(repo.update(script.id, source_change("2")).await, Err(StoreError::Corrupt(_))));
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM script_versions").await, 1, "the failed save wrote nothing");
        assert!(repo.delete(script.id).await.unwrap(), "a corrupt script can still be removed");
    }
}

#[tokio::test]
async fn sqlite_creates_a_private_wal_database_in_the_data_directory() {
    use std::os::unix::fs::PermissionsExt;

    common::run(Backend::Sqlite, |db: TestDb| async move {
        assert!(!db.config.data_dir.exists());
        let repo = db.open().await;
        let mode = std::fs::metadata(&db.config.data_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "data directory mode {mode:o}");
        assert!(db.config.data_dir.join(SQLITE_FILE_NAME).is_file());
        assert_eq!(db.raw_text("PRAGMA journal_mode").await, "wal");
        repo.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_empty_url_means_sqlite_and_other_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty_url = DbConfig {
        data_dir: dir.path().to_owned(),
        database_url: Some(String::new()),
    };
    let repo = ScriptRepository::connect(&empty_url).await.unwrap();
    assert_eq!(repo.backend(), Backend::Sqlite);
    repo.close().await;

    for url in [
        "mysql://localhost/picloud",
        "sqlite://data/picloud.db",
        "picloud.db",
    ] {
        let config = DbConfig {
            data_dir: dir.path().to_owned(),
            database_url: Some(url.to_owned()),
        };
        let err = ScriptRepository::connect(&config).await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let config = DbConfig {
        data_dir: std::env::temp_dir(),
        database_url: Some("postgres://postgres@127.0.0.1:1/picloud".to_owned()),
    };
    let err = ScriptRepository::connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unusable_data_directory_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let config = DbConfig {
        data_dir: file.join("data"),
        database_url: None,
    };
    let err = ScriptRepository::connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
}

on_both_backends! {
    async fn routes_and_cors_round_trip_and_survive_saves(db: TestDb) {
        let repo = db.open().await;
        let route = shared::route::Route { method: Some("POST".into()), path: "/exec/hooks/{id}".into() };
        let created = repo
            .create(NewScript {
                name: "hook".into(),
                source: "1".into(),
                route: Some(route.clone()),
                cors_origins: vec!["https://app.example.test".into()],
                concurrency: Some(3),
                ..NewScript::default()
            })
            .await
            .unwrap();
        let read = repo.get(created.id).await.unwrap().unwrap();
        assert_eq!(read.route.as_ref(), Some(&route));
        assert_eq!(read.cors_origins, vec!["https://app.example.test".to_owned()]);
        assert_eq!(read.concurrency, Some(3));
        assert_eq!(read, created);

        // A source-only save keeps the route; `Some(None)` removes it.
        let v2 = repo.update(created.id, source_change("2")).await.unwrap();
        assert_eq!(v2.route.as_ref(), Some(&route));
        let v3 = repo
            .update(
                created.id,
                ScriptChange {
                    route: Some(None),
                    cors_origins: Some(vec![]),
                    concurrency: Some(None),
                    ..ScriptChange::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((v3.route.clone(), v3.cors_origins.len(), v3.concurrency), (None, 0, None));
        assert_eq!(repo.get(created.id).await.unwrap().unwrap(), v3);
        let listed = repo.list().await.unwrap();
        assert_eq!(listed, vec![v3]);
    }

    async fn a_rollback_is_a_new_version_marked_with_its_origin(db: TestDb) {
        let repo = db.open().await;
        let v1 = repo.create(new_script("r", "\"one\"")).await.unwrap();
        repo.update(v1.id, source_change("\"two\"")).await.unwrap();
        let old = repo.get_version(v1.id, 1).await.unwrap().unwrap();
        let v3 = repo
            .update(
                v1.id,
                ScriptChange {
                    source: Some(old.source.clone()),
                    limits: Some(old.limits),
                    restored_from: Some(1),
                    ..ScriptChange::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((v3.version, v3.source.as_str()), (3, "\"one\""));
        let history = repo.versions(v1.id).await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[2].restored_from, Some(1));
        assert_eq!(history[1].restored_from, None);
        assert_eq!(history[2].content_hash, history[0].content_hash);
    }
}
