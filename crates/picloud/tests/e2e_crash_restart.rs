//! `kill -9` of `picloud` in the middle of admin writes, then a restart on
//! the same database: every script and version the server acknowledged
//! (`2xx`) before it died is there, whole, and runs; writes it had not
//! answered are there whole or not at all. On SQLite (WAL) and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Db, Options, PgDatabase, Server, children_named};
use serde_json::{Value, json};

const WRITERS: usize = 4;

/// What a script of this name answers at this version.
fn source(name: &str, version: u64) -> String {
    format!("\"{name} v{version}\"")
}

/// Creates scripts and saves versions of them until the server stops
/// answering; returns every write it acknowledged: `(name, version)`.
async fn write_until_dead(
    client: reqwest::Client,
    base: String,
    writer: usize,
    started: Arc<AtomicBool>,
) -> Vec<(String, u64)> {
    let mut acked = Vec::new();
    for i in 0.. {
        let name = format!("w{writer}-{i}");
        for version in 1..=3u64 {
            let request = if version == 1 {
                client
                    .post(format!("{base}/api/admin/scripts"))
                    .json(&json!({ "name": name, "source": source(&name, 1) }))
            } else {
                client
                    .put(format!("{base}/api/admin/scripts/{name}"))
                    .json(&json!({ "source": source(&name, version) }))
            };
            let Ok(r) = request
                .bearer_auth(common::TOKEN)
                .timeout(Duration::from_secs(30))
                .send()
                .await
            else {
                return acked; // the server is gone
            };
            let status = r.status();
            let Ok(body) = r.json::<Value>().await else {
                return acked; // died while answering: not acknowledged
            };
            assert!(status.is_success(), "{name} v{version}: {status} {body}");
            assert_eq!(body["version"], version, "{body}");
            acked.push((name.clone(), version));
            started.store(true, Ordering::SeqCst);
        }
    }
    unreachable!()
}

async fn acknowledged_writes_survive_a_kill(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let pg = (db == Db::Postgres).then(PgDatabase::create);
    let options = || Options {
        data_dir: Some(dir.path().to_path_buf()),
        env: pg
            .iter()
            .map(|pg| ("PICLOUD_DATABASE_URL".to_owned(), pg.url.clone()))
            .collect(),
        ..Options::default()
    };

    let server = Server::start_with(options());
    let zygote = children_named(server.pid(), "picloud-zygote");
    let workers: Vec<u32> = zygote
        .iter()
        .flat_map(|&z| children_named(z, "picloud-worker"))
        .collect();
    assert_eq!(zygote.len(), 1);
    let started = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write_until_dead(
                server.client.clone(),
                server.base.clone(),
                w,
                Arc::clone(&started),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no write was acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Writes are in flight on every writer: no shutdown, no flush.
    server.kill();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = 0;
    for writer in writers {
        for (name, version) in writer.await.unwrap() {
            count += 1;
            let latest = acked.entry(name).or_default();
            *latest = (*latest).max(version);
        }
    }
    assert!(count >= 10, "too few writes to show anything: {count}");
    // The server's zygote and workers do not outlive it.
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in zygote.iter().chain(&workers) {
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && common::proc_stat(*pid).is_some_and(|(_, state, _)| state != 'Z')
        {
            assert!(
                Instant::now() < deadline,
                "process {pid} outlived the server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let server = Server::start_with(options());
    let stored: Vec<Value> = server
        .admin_json("/api/admin/scripts")
        .await
        .as_array()
        .unwrap()
        .clone();
    let stored: BTreeMap<String, Value> = stored
        .into_iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s))
        .collect();
    for (name, &version) in &acked {
        let script = stored
            .get(name)
            .unwrap_or_else(|| panic!("{name} (acknowledged up to v{version}) is gone"));
        let current = script["version"].as_u64().unwrap();
        // A write answered after the last acknowledged one may have landed too.
        assert!(
            (version..=version + 1).contains(&current),
            "{name}: acknowledged v{version}, stored v{current}"
        );
    }
    // Every stored script, acknowledged or not, is whole: versions 1..=n,
    // each with its own source, and the current one runs.
    for (name, script) in &stored {
        let current = script["version"].as_u64().unwrap();
        let history = server
            .admin_json(&format!("/api/admin/scripts/{name}/versions"))
            .await;
        assert_eq!(history["current"], current, "{name}: {history}");
        let numbers: Vec<u64> = history["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {history}"))
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (1..=current).collect::<Vec<_>>(), "{name}");
        for version in 1..=current {
            let v = server
                .admin_json(&format!("/api/admin/scripts/{name}/versions/{version}"))
                .await;
            assert_eq!(v["source"], source(name, version), "{name} v{version}: {v}");
        }
        let id = script["id"].as_str().unwrap();
        let r = server.client.get(server.execute(id)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), format!("{name} v{current}"));
    }
    // Only the writers' last, unanswered creations may be stored beyond the
    // acknowledged ones.
    let unacknowledged = stored.keys().filter(|n| !acked.contains_key(*n)).count();
    assert!(
        unacknowledged <= WRITERS,
        "{unacknowledged} unacknowledged scripts"
    );
    drop(server);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_kill_sqlite() {
    acknowledged_writes_survive_a_kill(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_kill_postgres() {
    acknowledged_writes_survive_a_kill(Db::Postgres).await;
}
