//! The script contract and the data plane's refusals, over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use common::{Db, Server};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn response_shapes_and_request_fields() {
    let server = Server::start(Db::Sqlite);
    let text = server.deploy("text", "\"plain\"").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unit = server.deploy("unit", "let x = 1;").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let custom = server
        .deploy("custom", r#"response(201, #{ made: true }, #{ "x-mine": "yes", "Content-Security-Policy": "none" })"#)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mirror = server
        .deploy("mirror", "#{ method: request.method, path: request.path, query: request.query, agent: request.headers[\"x-agent\"], body: request.body, json: request.json }")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = server
        .client
        .get(server.execute(&text))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "plain");

    let r = server
        .client
        .get(server.execute(&unit))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let r = server
        .client
        .get(server.execute(&custom))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-mine"], "yes");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "made": true }));

    let r = server
        .client
        .put(format!("{}?a=1&b=x%20y&a=2", server.execute(&mirror)))
        .header("x-agent", "t")
        .header("content-type", "application/json")
        .body(r#"{"k":[true,1.5]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["path"], format!("/api/execute/{mirror}"));
    assert_eq!(body["query"], json!({ "a": "2", "b": "x y" }));
    assert_eq!(body["agent"], "t");
    assert_eq!(body["json"], json!({ "k": [true, 1.5] }));
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_errors_are_clean() {
    let server = Server::start(Db::Sqlite);
    let id = server
        .deploy("boom", "let a = [1]; a[5] + undefined_fn()")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.client.get(server.execute(&id)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "script_error");
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("/src/") && !message.contains(".rs") && !message.contains("/home"),
        "{message}"
    );
    let spin = server.deploy("spin", "loop {}").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .client
        .get(server.execute(&spin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "operation_limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let server = Server::start(Db::Sqlite);
    let id = server.deploy("echo", "request.body").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = server.execute(&id);
    let check = |r: reqwest::Response, status: u16| async move {
        assert_eq!(r.status(), status);
        let b: Value = r.json().await.unwrap();
        assert!(b["error"].is_string() && b["message"].is_string(), "{b}");
    };
    let by_name = server
        .client
        .get(server.execute("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 400);
    let b: Value = by_name.json().await.unwrap();
    // A name where an id belongs: the message says what to use instead.
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("give it a route under /exec/"),
        "{b}"
    );
    check(
        server
            .client
            .get(server.execute(&uuid::Uuid::new_v4().to_string()))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    check(
        server
            .client
            .post(&url)
            .body(vec![0xff, 0xfe, 0x00])
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        server
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        server
            .client
            .get(format!("{url}?q=%FF"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let big = vec![b'a'; 1024 * 1024 + 1];
    check(
        server
            .client
            .post(&url)
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    // Without a Content-Length (chunked), the cap still holds.
    let stream = futures_stream(&big);
    check(
        server
            .client
            .post(&url)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    let r = server.client.post(&url).body("fine").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "fine");
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
    let r = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn futures_stream(
    data: &[u8],
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + use<> {
    futures_util::stream::iter(
        data.chunks(64 * 1024)
            .map(|c| Ok(c.to_vec()))
            .collect::<Vec<_>>(),
    )
}
