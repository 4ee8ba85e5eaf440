//! Every example in `examples/`, uploaded to a real `picloud` and called over
//! real HTTP with the realistic payloads, on SQLite and on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use common::{Db, Server, example, fixture};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

async fn deploy_all(server: &Server) -> std::collections::HashMap<&'static str, String> {
    let mut ids = std::collections::HashMap::new();
    for (name, file) in [
        ("hello", "hello.rhai"),
        ("json-echo", "json-echo.rhai"),
        ("git-push-summary", "git-push-summary.rhai"),
        ("invoice-paid", "invoice-paid.rhai"),
        ("slash-command", "slash-command.rhai"),
        ("signed-webhook", "signed-webhook.rhai"),
    ] {
        let body = server.deploy(name, &example(file)).await;
        assert_eq!(body["version"], 1);
        ids.insert(name, body["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn post_json(server: &Server, id: &str, body: String) -> (u16, Value) {
    let r = server
        .client
        .post(server.execute(id))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn examples_answer_correctly(db: Db) {
    let server = Server::start(db);
    let ids = deploy_all(&server).await;

    // hello
    let r = server
        .client
        .get(format!("{}?name=Ada%20L.", server.execute(&ids["hello"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("x-picloud-invocation-id"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "hello": "Ada L." })
    );

    // json-echo
    let (status, body) = post_json(
        &server,
        &ids["json-echo"],
        r#"{"a":[1,2,{"b":null}],"ü":"✓"}"#.into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "method": "POST", "received": { "a": [1, 2, { "b": null }], "ü": "✓" } })
    );
    let r = server
        .client
        .post(server.execute(&ids["json-echo"]))
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // git push webhook
    let (status, body) = post_json(
        &server,
        &ids["git-push-summary"],
        fixture("payloads/git-push-event.json"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repository"], "acme/inventory");
    assert_eq!(body["branch"], "main");
    assert_eq!(body["commits"], 2);
    assert_eq!(
        body["files"],
        json!({ "added": 1, "removed": 1, "modified": 4 })
    );
    assert!(body["pusher"].is_string());

    // payment webhook
    let (status, body) = post_json(
        &server,
        &ids["invoice-paid"],
        fixture("payloads/payment-succeeded-event.json"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invoice"], "in_0Q3xT6pLr9cc22dd");
    assert_eq!(body["customer"], "cus_R2d2C3po");
    assert_eq!(body["total_cents"], 4900);
    assert_eq!(body["total_eur"], "49.00");
    assert_eq!(body["lines"], 2);

    // slash command form
    let r = server
        .client
        .post(server.execute(&ids["slash-command"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(fixture("payloads/slash-command.form"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["command"], "/deploy");
    assert_eq!(body["args"], "inventory to staging & notify");
    assert_eq!(body["channel"], "ops");
    assert_eq!(body["user"], "jdoe");
    assert_eq!(
        body["response_url"],
        "https://hooks.example.test/commands/1234/5678"
    );
    assert_eq!(
        body["text"],
        "jdoe asked /deploy: inventory to staging & notify"
    );

    // signed webhook: right and wrong signature
    let payload = r#"{"event":"ping"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"change-me").unwrap();
    mac.update(payload.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let send = |sig: String| {
        server
            .client
            .post(server.execute(&ids["signed-webhook"]))
            .header("content-type", "application/json")
            .header("x-signature", sig)
            .body(payload)
            .send()
    };
    let r = send(sig).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "accepted": true, "event": "ping" })
    );
    assert_eq!(send("sha256=00".into()).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_on_sqlite() {
    examples_answer_correctly(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_on_postgres() {
    examples_answer_correctly(Db::Postgres).await;
}
