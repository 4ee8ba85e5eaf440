//! The admin API over real HTTP: auth, validation, versions, and that bad
//! input changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{Db, Server, TOKEN};
use reqwest::Method;
use serde_json::{Value, json};

async fn status_and_body(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_requires_the_token() {
    let server = Server::start(Db::Sqlite);
    let url = server.url("/api/admin/scripts");
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    for bad in ["Bearer wrong", "Bearer ", "Basic abc", TOKEN] {
        let r = server
            .client
            .get(&url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    let r = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Unknown admin paths are not a way around auth.
    let r = server
        .client
        .get(server.url("/api/admin/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_token_is_written_private_and_works() {
    let server = Server::start_with(common::Options {
        token: None,
        ..common::Options::default()
    });
    let path = server.data_dir.join("admin-token");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert!(token.len() >= 64);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = server
        .client
        .get(server.url("/api/admin/scripts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The token itself is not in the database file, only its hash.
    let db = std::fs::read(server.data_dir.join("picloud.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_and_validation() {
    let server = Server::start(Db::Sqlite);
    let create = |body: Value| server.admin(Method::POST, "/api/admin/scripts").json(&body);

    let (s, created) = status_and_body(create(json!({"name": "greet", "source": "\"hi\""}))).await;
    assert_eq!(s, 201);
    assert_eq!(created["version"], 1);
    assert_eq!(created["name"], "greet");
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    let id = created["id"].as_str().unwrap().to_owned();

    // Bad input: each is refused and stores nothing.
    let (s, b) = status_and_body(create(json!({"name": "broken", "source": "let x = ;\n"}))).await;
    assert_eq!(s, 422);
    assert_eq!(b["error"], "compile_error");
    assert_eq!(b["line"], 1);
    assert!(b["column"].as_u64().unwrap() > 0);
    assert!(b["message"].is_string());
    let (s, b) = status_and_body(create(json!({"name": "greet", "source": "1"}))).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("conflict")));
    for bad_name in ["", "Bad", "-x", "a b", &"x".repeat(65)] {
        let (s, _) = status_and_body(create(json!({"name": bad_name, "source": "1"}))).await;
        assert_eq!(s, 400, "{bad_name:?}");
    }
    let (s, b) = status_and_body(create(json!({"name": "nosource"}))).await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("source"));
    let (s, _) = status_and_body(
        server
            .admin(Method::POST, "/api/admin/scripts")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 400);
    let big = format!("\"{}\"", "x".repeat(256 * 1024 + 1));
    let (s, _) = status_and_body(create(json!({"name": "big", "source": big}))).await;
    assert_eq!(s, 413);
    // A body over the admin limit is refused before it is read.
    let head = format!(
        "POST /api/admin/scripts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        9 * 1024 * 1024
    );
    assert_eq!(server.raw_status(&head), 413);
    for limits in [
        json!({"operations": 0}),
        json!({"wall_time_ms": 60_001}),
        json!({"memory_bytes": -1}),
        json!({"nope": 1}),
    ] {
        let (s, _) = status_and_body(create(
            json!({"name": "lim", "source": "1", "limits": limits}),
        ))
        .await;
        assert_eq!(s, 400, "{limits}");
    }
    let (s, list) = status_and_body(server.admin(Method::GET, "/api/admin/scripts")).await;
    assert_eq!(s, 200);
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the valid script was stored: {list}"
    );
    assert!(list[0].get("source").is_none());

    // Read, update, limits.
    let (s, one) =
        status_and_body(server.admin(Method::GET, &format!("/api/admin/scripts/{id}"))).await;
    assert_eq!((s, one["source"].as_str()), (200, Some("\"hi\"")));
    let (s, _) =
        status_and_body(server.admin(Method::GET, "/api/admin/scripts/Not%20A%20UUID")).await;
    assert_eq!(s, 400);
    let (s, by_name) = status_and_body(server.admin(Method::GET, "/api/admin/scripts/greet")).await;
    assert_eq!((s, by_name["id"].as_str()), (200, Some(id.as_str())));
    let (s, _) =
        status_and_body(server.admin(Method::GET, "/api/admin/scripts/no-such-script")).await;
    assert_eq!(s, 404);
    let unknown = uuid::Uuid::new_v4();
    let (s, _) =
        status_and_body(server.admin(Method::GET, &format!("/api/admin/scripts/{unknown}"))).await;
    assert_eq!(s, 404);
    let put = |body: Value| {
        server
            .admin(Method::PUT, &format!("/api/admin/scripts/{id}"))
            .json(&body)
    };
    let (s, b) = status_and_body(put(
        json!({"source": "\"v2\"", "limits": {"wall_time_ms": 1000}}),
    ))
    .await;
    assert_eq!((s, b["version"].as_u64()), (200, Some(2)));
    assert_eq!(b["effective_limits"]["wall_time_ms"], 1000);
    assert_eq!(b["effective_limits"]["operations"], 10_000_000);
    let (s, _) = status_and_body(put(json!({"source": "fn ("}))).await;
    assert_eq!(s, 422);
    let (s, b) =
        status_and_body(server.admin(Method::GET, &format!("/api/admin/scripts/{id}"))).await;
    assert_eq!(
        (s, b["version"].as_u64(), b["source"].as_str()),
        (200, Some(2), Some("\"v2\""))
    );
    let r = server.client.get(server.execute(&id)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v2");

    // Delete.
    let (s, _) =
        status_and_body(server.admin(Method::DELETE, &format!("/api/admin/scripts/{id}"))).await;
    assert_eq!(s, 204);
    let (s, _) =
        status_and_body(server.admin(Method::DELETE, &format!("/api/admin/scripts/{id}"))).await;
    assert_eq!(s, 404);
    assert_eq!(
        server
            .client
            .get(server.execute(&id))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || common::Options {
        data_dir: Some(dir.path().to_path_buf()),
        ..common::Options::default()
    };
    let server = Server::start_with(opts());
    let id = server.deploy("keep", "\"kept\"").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.stop().success());
    let server = Server::start_with(opts());
    let r = server.client.get(server.execute(&id)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tokens_are_rate_limited_per_client() {
    let server = Server::start(Db::Sqlite);
    let url = server.url("/api/admin/scripts");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let r = server
            .client
            .get(&url)
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right token waits out the window from a client that has been guessing.
    let r = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The data plane stays public and unaffected.
    let r = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_origin_browser_requests_are_refused() {
    let server = Server::start(Db::Sqlite);
    let url = server.url("/api/admin/scripts");
    let host = server.base.trim_start_matches("http://").to_owned();
    let r = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_bind_moves_the_admin_api_off_the_public_address() {
    let server = Server::start_with(common::Options {
        env: vec![("PICLOUD_ADMIN_BIND".into(), "127.0.0.1:0".into())],
        ..common::Options::default()
    });
    let admin = server
        .extra
        .get("admin")
        .expect("the admin listener is announced")
        .clone();
    let public = server
        .client
        .get(server.url("/api/admin/scripts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let private = server
        .client
        .get(format!("{admin}/api/admin/scripts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    // The data plane stays on the public address.
    assert_eq!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
