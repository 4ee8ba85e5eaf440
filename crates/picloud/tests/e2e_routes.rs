//! Custom routes, CORS, versions and rollback over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use common::{Db, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn create(server: &Server, body: Value) -> (u16, Value) {
    let r = server
        .admin(Method::POST, "/api/admin/scripts")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_match_params_and_refuse_conflicts_and_traversal() {
    let server = Server::start(Db::Sqlite);
    let (s, _) = create(
        &server,
        json!({
            "name": "user", "route": {"method": "GET", "path": "/exec/users/{id}"},
            "source": "#{ id: request.params.id, path: request.path }"
        }),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = create(
        &server,
        json!({
            "name": "files", "route": "ANY /exec/files/{*rest}", "source": "request.params.rest"
        }),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = create(
        &server,
        json!({
            "name": "secret", "route": "GET /exec/admin/secret", "source": "\"secret\""
        }),
    )
    .await;
    assert_eq!(s, 201);

    let r = server
        .client
        .get(server.url("/exec/users/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "id": "42", "path": "/exec/users/42" })
    );
    let r = server
        .client
        .delete(server.url("/exec/files/a/b%20c.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "a/b c.txt");
    let r = server
        .client
        .post(server.url("/exec/users/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(
        server
            .client
            .get(server.url("/exec/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Conflicts are 409 and name the other script.
    for route in [
        "GET /exec/users/me",
        "/exec/users/{x}",
        "ANY /exec/files/x/y",
    ] {
        let (s, b) = create(
            &server,
            json!({"name": "clash", "route": route, "source": "1"}),
        )
        .await;
        assert_eq!(s, 409, "{route}: {b}");
        assert!(b["message"].as_str().unwrap().contains('`'), "{b}");
    }
    let (s, _) = create(
        &server,
        json!({"name": "ok-post", "route": "POST /exec/users/{id}", "source": "\"posted\""}),
    )
    .await;
    assert_eq!(s, 201);
    for bad in [
        "/users/x",
        "GET /exec/../x",
        "GET /exec/a/{*r}/b",
        "BAD METHOD /exec/x",
    ] {
        let (s, _) = create(&server, json!({"name": "bad", "route": bad, "source": "1"})).await;
        assert_eq!(s, 400, "{bad}");
    }

    // Traversal tricks never reach another route. Sent raw: an HTTP client
    // library would normalise some of them away before they left.
    for path in [
        "/exec/users/..%2Fadmin%2Fsecret",
        "/exec/users/%2e%2e/admin/secret",
        "/exec/users/../admin/secret",
        "/exec/files/..%2F..%2Fadmin",
        "/exec/files/a/%2E/b",
        "/exec/users/x%00",
        "/exec/users/a%5Cb",
    ] {
        let status = server.raw_status(&format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert_eq!(status, 400, "{path}");
    }
    // `..` in the raw path is resolved away by the client or refused, never routed elsewhere.
    let r = server
        .client
        .get(server.url("/exec/users/42/../../admin/secret"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.text().await.unwrap(), "secret\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_follows_the_allow_list_and_scripts_cannot_widen_it() {
    let server = Server::start(Db::Sqlite);
    let (s, _) = create(
        &server,
        json!({
            "name": "api", "route": "POST /exec/api", "cors_origins": ["https://app.example.test"],
            "source": "response(200, \"hi\", #{ \"access-control-allow-origin\": \"*\" })"
        }),
    )
    .await;
    assert_eq!(s, 201);
    let preflight = |origin: &'static str| {
        server
            .client
            .request(Method::OPTIONS, server.url("/exec/api"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://app.example.test").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.test"
    );
    assert_eq!(r.headers()["access-control-allow-methods"], "POST");
    assert_eq!(
        preflight("https://evil.example.test")
            .await
            .unwrap()
            .status(),
        403
    );

    let r = server
        .client
        .post(server.url("/exec/api"))
        .header("origin", "https://evil.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers().contains_key("access-control-allow-origin"),
        "script-set CORS header leaked"
    );
    let r = server
        .client
        .post(server.url("/exec/api"))
        .header("origin", "https://app.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.test"
    );
}

async fn versions_and_rollback(db: Db) {
    let server = Server::start(db);
    let id = server.deploy("v", "\"one\"").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = server
        .admin(Method::PUT, "/api/admin/scripts/v")
        .json(&json!({"source": "\"two\""}));
    assert_eq!(put.send().await.unwrap().status(), 200);
    assert_eq!(
        server
            .client
            .get(server.execute(&id))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "two"
    );

    let history: Value = server
        .admin(Method::GET, "/api/admin/scripts/v/versions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["current"], 2);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    let v1: Value = server
        .admin(Method::GET, &format!("/api/admin/scripts/{id}/versions/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["source"], "\"one\"");
    assert_eq!(v1["content_hash"], history["versions"][0]["content_hash"]);
    assert_eq!(
        server
            .admin(Method::GET, "/api/admin/scripts/v/versions/9")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        server
            .admin(Method::GET, "/api/admin/scripts/v/versions/x")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    let r = server
        .admin(Method::POST, "/api/admin/scripts/v/rollback")
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 3);
    assert_eq!(
        server
            .client
            .get(server.execute(&id))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "one"
    );
    let history: Value = server
        .admin(Method::GET, "/api/admin/scripts/v/versions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["versions"][2]["restored_from"], 1);
    assert_eq!(
        history["versions"][2]["content_hash"],
        history["versions"][0]["content_hash"]
    );
    let r = server
        .admin(Method::POST, "/api/admin/scripts/v/rollback")
        .json(&json!({"version": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_rollback_on_sqlite() {
    versions_and_rollback(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_rollback_on_postgres() {
    versions_and_rollback(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_script_removes_its_route_at_once() {
    let server = Server::start(Db::Sqlite);
    let (s, _) = create(
        &server,
        json!({"name": "gone", "route": "GET /exec/gone", "source": "\"here\""}),
    )
    .await;
    assert_eq!(s, 201);
    let r = server
        .client
        .get(server.url("/exec/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let invocation = r.headers()["x-picloud-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = server
        .admin(Method::DELETE, "/api/admin/scripts/gone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Its records stay until retention removes them (written in batches: poll).
    let record = format!("/api/admin/invocations/{invocation}");
    let mut kept = false;
    for _ in 0..50 {
        if server
            .admin(Method::GET, &record)
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            kept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(kept, "the record of a deleted script's invocation is gone");
    assert_eq!(
        server
            .client
            .get(server.url("/exec/gone"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The route is free again.
    let (s, _) = create(
        &server,
        json!({"name": "again", "route": "GET /exec/gone", "source": "1"}),
    )
    .await;
    assert_eq!(s, 201);
}

/// Calls `id` three times at once; each call holds its worker until its
/// 800 ms wall budget ends it. Returns how many were turned away (503).
async fn turned_away(server: &Server, id: &str) -> usize {
    let calls = (0..3).map(|_| server.client.get(server.execute(id)).send());
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 503 || *s == 504),
        "{statuses:?}"
    );
    statuses.iter().filter(|s| **s == 503).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripts_own_concurrency_cap_is_stored_and_enforced() {
    let server = Server::start_with(common::Options {
        env: vec![
            ("PICLOUD_WORKERS".into(), "4".into()),
            ("PICLOUD_QUEUE_TIMEOUT_MS".into(), "200".into()),
        ],
        ..common::Options::default()
    });
    let spin = json!({ "name": "spin", "source": "loop {}", "limits": { "wall_time_ms": 800, "operations": 1_000_000_000 } });
    let (s, body) = create(&server, spin).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // Default cap: half of 4 workers, so two run and one is turned away.
    assert_eq!(turned_away(&server, &id).await, 1);

    let r = server
        .admin(Method::PUT, "/api/admin/scripts/spin")
        .json(&json!({ "concurrency": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["concurrency"], 1);
    assert_eq!(turned_away(&server, &id).await, 2);

    // `null` goes back to the default.
    let r = server
        .admin(Method::PUT, "/api/admin/scripts/spin")
        .json(&json!({ "concurrency": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(turned_away(&server, &id).await, 1);
    for bad in [json!(0), json!(5000), json!(-1)] {
        let r = server
            .admin(Method::PUT, "/api/admin/scripts/spin")
            .json(&json!({ "concurrency": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}
