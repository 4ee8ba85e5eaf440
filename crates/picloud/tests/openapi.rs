//! The admin API's OpenAPI document, and schemathesis run against a live
//! server with it: no 5xx, and every answer matches the document.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Db, Server, TOKEN, workspace};
use serde_json::Value;

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("PICLOUD_SCHEMATHESIS").map_or_else(
        || workspace().join("target/venv/bin/schemathesis"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "schemathesis is not installed at {}; scripts/test installs it (scripts/lib/ensure-schemathesis)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_behind_the_token() {
    let server = Server::start(Db::Sqlite);
    let url = server.url("/api/admin/openapi.json");
    assert_eq!(server.client.get(&url).send().await.unwrap().status(), 401);
    let doc: Value = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/admin/scripts"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let server = Server::start(Db::Sqlite);
    // Something to find, so the operations on one script get exercised too.
    server.deploy("seed", "#{ seeded: true }").await;
    let out = Command::new(schemathesis())
        .args(["run", &server.url("/api/admin/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Bounded for CI; a deeper run is `--max-examples 200` by hand.
        .args(["--max-examples", "15", "--seed", "1"])
        // The live stream never ends by design.
        .args(["--exclude-path-regex", "/stream$"])
        .args(["--no-color"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
