//! The benchmark's servers and probe, run as the run script runs them: the
//! real binary, real sockets, real worker processes.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_picloud-bench");

/// A server child, killed when the test ends however it ends.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the bench binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the announce line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected announce line {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    /// GETs `path` and returns the status and body.
    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, "")
    }

    /// POSTs a JSON body to `path` and returns the status and body.
    fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        self.request("POST", path, body)
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SUM: &str = r#"{"sum":333283335000}"#;
const PUSH: &str = include_str!("../../../tests/fixtures/payloads/git-push-event.json");
const SUMMARY: &str = r#"{"branch":"main","commits":2,"files":{"added":1,"modified":4,"removed":1},"pusher":"jdoe","repository":"acme/inventory"}"#;

#[test]
fn in_process_baseline_runs_both_workloads() {
    let server = Server::start(&["serve-in-process", "--threads", "2"]);
    assert_eq!(
        server.get("/run/hello?name=ada"),
        (200, r#"{"hello":"ada"}"#.to_owned())
    );
    assert_eq!(server.get("/run/cpu"), (200, SUM.to_owned()));
    assert_eq!(
        server.post_json("/run/json", PUSH),
        (200, SUMMARY.to_owned())
    );
    assert_eq!(server.get("/run/nope").0, 404);
}

#[test]
fn orchestrator_baseline_serves_the_fixed_ids() {
    let server = Server::start(&["serve-in-process", "--kind", "orchestrator"]);
    let (status, body) = server.get("/api/execute/00000000-0000-4000-8000-000000000001?name=ada");
    assert_eq!((status, body.as_str()), (200, r#"{"hello":"ada"}"#));
    let (status, body) = server.get("/api/execute/00000000-0000-4000-8000-000000000002");
    assert_eq!((status, body.as_str()), (200, SUM));
}

#[test]
fn fork_exec_server_runs_a_process_per_request() {
    let server = Server::start(&["serve-fork-exec"]);
    assert_eq!(
        server.get("/run/hello?name=ada%20l"),
        (200, r#"{"hello":"ada l"}"#.to_owned())
    );
    assert_eq!(server.get("/run/cpu"), (200, SUM.to_owned()));
    assert_eq!(
        server.post_json("/run/json", PUSH),
        (200, SUMMARY.to_owned())
    );
    assert_eq!(server.get("/run/nope").0, 404);
}

#[test]
fn probe_measures_a_real_pool() {
    let output = Command::new(BIN)
        .args([
            "probe",
            "--fork-samples",
            "5",
            "--ipc-samples",
            "20",
            "--memory-invocations",
            "5",
        ])
        .output()
        .expect("the probe runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let spawn = &report["fork_to_ready_us"]["spawn"];
    assert_eq!(spawn["n"], 5);
    assert!(spawn["p50"].as_u64().expect("p50") > 0);
    assert_eq!(report["ipc"]["pool_invoke_us"]["n"], 20);
    let fresh = &report["memory"]["fresh_idle"];
    assert_eq!(fresh["processes"], 2);
    assert!(fresh["pss_kib"].as_u64().expect("pss") > 0);
    assert!(fresh["rss_kib"].as_u64() >= fresh["pss_kib"].as_u64());
}
