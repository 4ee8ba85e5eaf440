//! Escape attempts from a script inside a real confined worker, through the
//! real server. Needs the test-only `probes` feature:
//! `cargo test -p picloud --features probes --test e2e_probes`.

#![cfg(feature = "probes")]
#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::io::Read as _;
use std::net::TcpListener;
use std::time::Duration;

use common::{Db, Server};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn every_escape_attempt_is_stopped_by_the_sandbox_and_the_server_keeps_serving() {
    let server = Server::start(Db::Sqlite);
    let control = server.deploy("control", "\"ok\"").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let probes = [
        "read_passwd",
        "write_tmp",
        "list_root",
        "tcp_socket",
        "fork",
        "exec",
        "kill_parent",
        "ptrace",
        "raise_rlimit",
        "user_namespace",
        "exec_memory",
    ];
    let mut calls: Vec<(String, String)> = probes
        .iter()
        .map(|p| ((*p).to_owned(), format!("probe(\"{p}\")")))
        .collect();
    calls.push((
        "connect_loopback".into(),
        format!("probe(\"connect_loopback\", {port})"),
    ));

    for (name, source) in calls {
        let id = server.deploy(&name.replace('_', "-"), &source).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = server.client.get(server.execute(&id)).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        // Under every layer the first forbidden system call ends the worker
        // with SIGSYS: the intended mechanism is seccomp, reported as such.
        assert_eq!(status, 502, "{name}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "sandbox_violation", "{name}: {body}");
        // The next invocation is served by a fresh worker.
        let ok = server
            .client
            .get(server.execute(&control))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok", "after {name}");
    }
    // The loopback listener never saw a connection.
    std::thread::sleep(Duration::from_millis(100));
    match listener.accept() {
        Ok((mut s, _)) => {
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf);
            panic!("a confined worker reached the loopback listener");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
    // No file was written by a worker.
    assert!(std::fs::read_dir("/tmp").unwrap().flatten().all(|e| {
        !e.file_name()
            .to_string_lossy()
            .starts_with("picloud-probe-")
    }));
}
