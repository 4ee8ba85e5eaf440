//! Every command-line sub-command against a real server.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::process::{Command, Output};

use common::{Db, Server, TOKEN, workspace};
use serde_json::Value;

fn picloud(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(args)
        .env_clear()
        .env("PICLOUD_URL", &server.base)
        .env("PICLOUD_ADMIN_TOKEN", TOKEN)
        .current_dir(workspace())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("picloud: "), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sub_command_against_a_real_server() {
    let server = Server::start(Db::Sqlite);

    let out = ok(&picloud(
        &server,
        &[
            "deploy",
            "examples/hello.rhai",
            "--route",
            "GET /exec/hello",
        ],
    ));
    assert!(out.contains("created hello version 1"), "{out}");
    assert!(out.contains("/exec/hello"), "{out}");
    let out = ok(&picloud(
        &server,
        &[
            "deploy",
            "examples/json-echo.rhai",
            "--name",
            "echo",
            "--json",
        ],
    ));
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["name"], "echo");

    let out = ok(&picloud(&server, &["list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hello") && l.contains("GET /exec/hello")),
        "{out}"
    );
    let listed: Value = serde_json::from_str(&ok(&picloud(&server, &["list", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let out = ok(&picloud(&server, &["show", "hello"]));
    assert!(out.contains("request.query"), "{out}");

    let out = ok(&picloud(
        &server,
        &["invoke", "hello", "-X", "GET", "--query", "name=Ada"],
    ));
    assert_eq!(out.trim(), r#"{"hello":"Ada"}"#);
    let payload = workspace().join("tests/fixtures/payloads/git-push-event.json");
    let out = ok(&picloud(
        &server,
        &[
            "invoke",
            "echo",
            "--data",
            &format!("@{}", payload.display()),
            "-H",
            "content-type: application/json",
            "--json",
        ],
    ));
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"], 200);
    assert!(answer["body"].as_str().unwrap().contains("acme/inventory"));

    // A second deploy of the same file is an update.
    let out = ok(&picloud(&server, &["deploy", "examples/hello.rhai"]));
    assert!(out.contains("updated hello version 2"), "{out}");
    let out = ok(&picloud(&server, &["versions", "hello"]));
    assert!(out.lines().any(|l| l.starts_with("2 *")), "{out}");
    let out = ok(&picloud(&server, &["rollback", "hello", "1"]));
    assert!(out.contains("version 3"), "{out}");
    let history: Value =
        serde_json::from_str(&ok(&picloud(&server, &["versions", "hello", "--json"]))).unwrap();
    assert_eq!(history["versions"][2]["restored_from"], 1);

    let out = ok(&picloud(&server, &["rm", "echo"]));
    assert!(out.contains("deleted echo"));

    // Errors: one clear line and a non-zero exit.
    assert!(one_line_error(&picloud(&server, &["show", "echo"])).contains("404"));
    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), "let x = ;").unwrap();
    let err = one_line_error(&picloud(
        &server,
        &[
            "deploy",
            broken.path().to_str().unwrap(),
            "--name",
            "broken",
        ],
    ));
    assert!(
        err.contains("compile_error") && err.contains("line 1"),
        "{err}"
    );
    let spin = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spin.path(), "loop {}").unwrap();
    ok(&picloud(
        &server,
        &["deploy", spin.path().to_str().unwrap(), "--name", "spin"],
    ));
    let err = one_line_error(&picloud(&server, &["invoke", "spin"]));
    assert!(err.contains("operation_limit"), "{err}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["list"])
        .env_clear()
        .env("PICLOUD_URL", "http://127.0.0.1:9")
        .env("PICLOUD_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(one_line_error(&unreachable).contains("cannot reach"));
    let wrong = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["list"])
        .env_clear()
        .env("PICLOUD_URL", &server.base)
        .env("PICLOUD_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(one_line_error(&wrong).contains("401"));
}

#[test]
fn completions_and_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("picloud"));
    let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "serve", "deploy", "list", "show", "invoke", "logs", "versions", "rollback", "rm", "admin",
        "sandbox",
    ] {
        assert!(help.contains(sub), "{sub} missing from --help");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_token_invalidates_the_old_one_on_a_running_server() {
    let server = Server::start_with(common::Options {
        token: None,
        ..common::Options::default()
    });
    let old = std::fs::read_to_string(server.data_dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let list = |token: &str| {
        server
            .client
            .get(server.url("/api/admin/scripts"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(list(&old).await.unwrap().status(), 200);
    let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["admin", "reset-token"])
        .env_clear()
        .env("PICLOUD_DATA_DIR", &server.data_dir)
        .output()
        .unwrap();
    ok(&out);
    let new = std::fs::read_to_string(server.data_dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(old, new);
    // The server re-reads the hash every two seconds.
    let mut switched = false;
    for _ in 0..50 {
        if list(&new).await.unwrap().status() == 200 {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(switched, "the new token never worked");
    assert_eq!(list(&old).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_prints_records_and_follows_new_ones() {
    use std::io::{BufRead as _, BufReader};

    let server = Server::start(Db::Sqlite);
    ok(&picloud(&server, &["deploy", "examples/invoice-paid.rhai"]));
    let payload = workspace().join("tests/fixtures/payloads/payment-succeeded-event.json");
    let invoke = || {
        ok(&picloud(
            &server,
            &[
                "invoke",
                "invoice-paid",
                "--data",
                &format!("@{}", payload.display()),
                "-H",
                "content-type: application/json",
            ],
        ))
    };
    invoke();
    // Records are written in batches off the request path: poll briefly.
    let mut printed = String::new();
    for _ in 0..50 {
        printed = ok(&picloud(&server, &["logs", "invoice-paid"]));
        if printed.contains("paid by cus_R2d2C3po") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(printed.contains(" 200 ok "), "{printed}");
    // Which version ran, and for what request; no trailing blanks.
    assert!(printed.contains("  v1  POST /api/execute/"), "{printed}");
    assert!(printed.lines().all(|l| l == l.trim_end()), "{printed:?}");
    assert!(
        printed.contains("invoice in_0Q3xT6pLr9cc22dd paid by cus_R2d2C3po"),
        "{printed}"
    );

    // --follow prints a record made after it started.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["logs", "invoice-paid", "--follow", "--json", "--limit", "1"])
        .env_clear()
        .env("PICLOUD_URL", &server.base)
        .env("PICLOUD_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    invoke();
    let next: Value =
        serde_json::from_str(&rx.recv_timeout(std::time::Duration::from_secs(15)).unwrap())
            .unwrap();
    assert_ne!(next["id"], first["id"]);
    assert_eq!(next["outcome"], "ok");
    let _ = follower.kill();
    let _ = follower.wait();
}

/// `picloud serve` against a data directory another server is using, or
/// on an address in use: a clear one-line refusal, before anything in the
/// directory is created or changed.
#[test]
fn a_second_server_on_the_same_data_directory_or_address_is_refused() {
    let first = Server::start(Db::Sqlite);
    let serve = |data_dir: &std::path::Path, bind: &str| {
        Command::new(env!("CARGO_BIN_EXE_picloud"))
            .arg("serve")
            .env_clear()
            .env("PICLOUD_DATA_DIR", data_dir)
            .env("PICLOUD_BIND", bind)
            .env("PICLOUD_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    };

    let out = serve(&first.data_dir, "127.0.0.1:0");
    let err = one_line_error(&out);
    assert!(err.contains("already using the data directory"), "{err}");
    assert!(err.contains(&first.pid().to_string()), "{err}");

    let other = tempfile::tempdir().unwrap();
    let taken = first.base.trim_start_matches("http://");
    let err = one_line_error(&serve(other.path(), taken));
    assert!(err.contains(taken) && err.contains("PICLOUD_BIND"), "{err}");
    // Refused before the database or an admin token was made.
    assert!(!other.path().join("picloud.db").exists());
    assert!(!other.path().join("admin-token").exists());
    assert!(first.stop().success());
}

/// Logs written to a file or a pipe carry no terminal colour codes.
#[test]
fn server_logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead as _, BufReader, Read as _};
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_logging_to_a_pipe(dir.path(), std::process::Stdio::piped());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "picloud exited");
    }
    sigterm(&child);
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "{logs}");
}

/// SIGTERM while the server is still starting (here: right after its
/// database is open, before it listens) is a graceful stop, not a kill by
/// the signal's default action.
#[test]
fn sigterm_during_start_up_is_a_graceful_stop() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_logging_to_a_pipe(dir.path(), std::process::Stdio::null());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("database ready") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "picloud exited");
    }
    sigterm(&child);
    // Drain the rest of the log so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `picloud serve` on a fresh data directory with its log (level info) on a pipe.
fn serve_logging_to_a_pipe(
    data_dir: &std::path::Path,
    stdout: std::process::Stdio,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_picloud"))
        .arg("serve")
        .env_clear()
        .env("PICLOUD_DATA_DIR", data_dir)
        .env("PICLOUD_BIND", "127.0.0.1:0")
        .env("PICLOUD_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &std::process::Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signals the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
