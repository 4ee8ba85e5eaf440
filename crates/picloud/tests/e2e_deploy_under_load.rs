//! A script is deployed, updated, rolled back and deleted while several
//! clients invoke it in a loop, by its route and by its id, over real HTTP.
//! Every call gets a version that was current while it ran, whole (the body
//! names its version and carries a filler derived from it); none fails
//! because of the change; after the delete is acknowledged the answer is a
//! clean `404`. And admin writes racing each other never leave the data
//! plane serving a script the database no longer has.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Db, Options, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// A version's source: answers its tag and a filler only that tag makes.
fn source(tag: &str) -> String {
    format!(
        r#"let fill = "{tag}"; fill.pad(400, "{tag}"); #{{ tag: "{tag}", fill: fill, n: request.query["n"] }}"#
    )
}

fn filler(tag: &str) -> String {
    tag.repeat(400 / tag.len() + 1)[..400].to_owned()
}

/// The admin operations, in order. `stage` counts those started, `acked`
/// those acknowledged; `TAGS[stage]` is what the script answers once that
/// stage is acknowledged (`None`: no script, `404`).
const TAGS: [Option<&str>; 7] = [
    None,       // 0: not deployed yet
    Some("v1"), // 1: created (version 1)
    Some("v2"), // 2: updated (version 2)
    Some("v3"), // 3: updated (version 3)
    Some("v1"), // 4: rolled back to version 1 (saved as version 4)
    Some("v5"), // 5: updated (version 5)
    None,       // 6: deleted
];

#[derive(Default)]
struct Stages {
    started: AtomicUsize,
    acked: AtomicUsize,
}

/// One call: the stage acknowledged before it was sent, the last stage
/// started when its answer was in, and what it answered.
struct Call {
    before: usize,
    after: usize,
    answer: Option<String>,
}

/// Calls `url` until `stop`, checking each answer is whole and well-formed.
async fn invoke_until(
    client: reqwest::Client,
    url: String,
    stages: Arc<Stages>,
    stop: Arc<AtomicBool>,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let before = stages.acked.load(Ordering::SeqCst);
        let r = client
            .get(format!("{url}?n={n}"))
            .timeout(Duration::from_mins(1))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let after = stages.started.load(Ordering::SeqCst);
        let answer = match status {
            200 => {
                let v: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("not a whole JSON answer: {body}"));
                let tag = v["tag"].as_str().unwrap().to_owned();
                assert_eq!(v["fill"], filler(&tag), "a torn answer: {body}");
                assert_eq!(v["n"], n.to_string(), "another call's answer: {body}");
                Some(tag)
            }
            404 => {
                let v: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("a 404 that is not JSON: {body}"));
                assert_eq!(v["error"], "not_found", "{body}");
                None
            }
            other => panic!("call {n} to {url} failed with {other}: {body}"),
        };
        calls.push(Call {
            before,
            after,
            answer,
        });
    }
    calls
}

async fn admin_ok(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
    stages: &Stages,
) -> Value {
    let stage = stages.started.load(Ordering::SeqCst) + 1;
    stages.started.store(stage, Ordering::SeqCst);
    let mut request = server.admin(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "stage {stage}: {status} {text}");
    stages.acked.store(stage, Ordering::SeqCst);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_a_whole_current_version_through_deploy_update_rollback_delete() {
    let server = Server::start_with(Options {
        env: vec![
            ("PICLOUD_WORKERS".into(), "2".into()),
            ("PICLOUD_SCRIPT_CONCURRENCY".into(), "2".into()),
        ],
        ..Options::default()
    });
    let stages = Arc::new(Stages::default());
    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |url: String| {
        tokio::spawn(invoke_until(
            server.client.clone(),
            url,
            Arc::clone(&stages),
            Arc::clone(&stop),
        ))
    };
    let route_url = server.url("/exec/live");
    let mut invokers: Vec<_> = (0..2).map(|_| spawn(route_url.clone())).collect();
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    pause().await;

    let created = admin_ok(
        &server,
        Method::POST,
        "/api/admin/scripts",
        Some(json!({ "name": "live", "route": "GET /exec/live", "source": source("v1") })),
        &stages,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let script = format!("/api/admin/scripts/{id}");
    invokers.extend((0..2).map(|_| spawn(server.execute(&id))));
    pause().await;
    for tag in ["v2", "v3"] {
        admin_ok(
            &server,
            Method::PUT,
            &script,
            Some(json!({ "source": source(tag) })),
            &stages,
        )
        .await;
        pause().await;
    }
    let restored = admin_ok(
        &server,
        Method::POST,
        &format!("{script}/rollback"),
        Some(json!({ "version": 1 })),
        &stages,
    )
    .await;
    assert_eq!(restored["version"], 4, "{restored}");
    pause().await;
    admin_ok(
        &server,
        Method::PUT,
        &script,
        Some(json!({ "source": source("v5") })),
        &stages,
    )
    .await;
    pause().await;
    admin_ok(&server, Method::DELETE, &script, None, &stages).await;
    pause().await;
    stop.store(true, Ordering::SeqCst);

    let mut calls = Vec::new();
    for invoker in invokers {
        calls.extend(invoker.await.unwrap());
    }
    for call in &calls {
        // Current when sent, or written while the call ran.
        let allowed: Vec<Option<&str>> = TAGS[call.before..=call.after].to_vec();
        assert!(
            allowed.contains(&call.answer.as_deref()),
            "a call sent at stage {} and answered by stage {} got {:?}",
            call.before,
            call.after,
            call.answer
        );
    }
    // Every stage was seen by calls made after it was acknowledged.
    for (stage, tag) in TAGS.iter().enumerate().skip(1) {
        let seen = calls
            .iter()
            .filter(|c| c.before == stage && c.after == stage)
            .filter(|c| c.answer.as_deref() == *tag)
            .count();
        assert!(seen > 0, "no call saw stage {stage} ({tag:?})");
    }
}

const ROUNDS: usize = 40;
const WRITES_PER_ROUND: usize = 3;

/// An update (or rollback) racing a delete of the same script: once both
/// are answered and the delete succeeded, the script is gone from the data
/// plane too, as it is from the database.
async fn a_write_racing_a_delete_never_resurrects_the_script(db: Db) {
    let server = Server::start(db);
    for round in 0..ROUNDS {
        let name = format!("racer-{round}");
        let id = server.deploy(&name, &source("v1")).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let script = format!("/api/admin/scripts/{id}");
        // Updates and rollbacks at once, and the delete among them.
        let writes = futures_util::future::join_all((0..WRITES_PER_ROUND).map(|w| {
            let request = if (round + w) % 2 == 0 {
                server
                    .admin(Method::PUT, &script)
                    .json(&json!({ "source": source("v2") }))
            } else {
                server
                    .admin(Method::POST, &format!("{script}/rollback"))
                    .json(&json!({ "version": 1 }))
            };
            async move { request.send().await.unwrap().status().as_u16() }
        }));
        let delete = async {
            server
                .admin(Method::DELETE, &script)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        let (written, deleted) = tokio::join!(writes, delete);
        for status in &written {
            assert!(
                matches!(status, 200 | 404),
                "round {round}: writes {written:?}"
            );
        }
        assert_eq!(deleted, 204, "round {round}");
        let stored = server.admin(Method::GET, &script).send().await.unwrap();
        assert_eq!(stored.status(), 404, "round {round}: still stored");
        let r = server.client.get(server.execute(&id)).send().await.unwrap();
        assert_eq!(
            r.status(),
            404,
            "round {round}: deleted (writes {written:?}), but still served: {}",
            r.text().await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_a_delete_never_resurrects_the_script_sqlite() {
    a_write_racing_a_delete_never_resurrects_the_script(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_a_delete_never_resurrects_the_script_postgres() {
    a_write_racing_a_delete_never_resurrects_the_script(Db::Postgres).await;
}
