//! PostgreSQL goes away under load and comes back, over real HTTP, on a
//! throwaway cluster each test makes with `initdb` on a free port of its own
//! (never the machine's shared server). While the database is away the data
//! plane keeps serving the scripts it holds in memory, admin requests fail
//! with a clear `503` and `Retry-After`, and invocation records wait in the
//! bounded buffer; once it is back, admin writes work again and every record
//! is written, or, past the buffer's bound, counted as dropped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Options, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// A PostgreSQL cluster of the test's own, removed with this value.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// Runs the server's programs when the test runs as root (initdb refuses root).
    owner: Option<String>,
    dir: tempfile::TempDir,
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else
/// the newest of Debian's `/usr/lib/postgresql/<version>/bin`.
fn postgres_bindir() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).expect(
        "PostgreSQL's server programs (initdb, pg_ctl) are needed: install postgresql \
         (scripts/test does)",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn create() -> Self {
        let bin = postgres_bindir();
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let owner = root.then(|| {
            let exists = |user: &str| {
                Command::new("id")
                    .arg("-u")
                    .arg(user)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if exists("postgres") {
                "postgres".to_owned()
            } else {
                "nobody".to_owned()
            }
        });
        if let Some(owner) = &owner {
            let mut chown = Command::new("chown");
            chown.arg(owner).arg(dir.path());
            run(chown, "chown of the cluster's directory");
        }
        let cluster = Self {
            bin,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            port: free_port(),
            owner,
            dir,
        };
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]);
        run(initdb, "initdb");
        cluster.start();
        cluster
    }

    /// One of the server's programs, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.owner {
            Some(owner) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", owner, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                self.port,
                self.dir.path().display()
            ))
            .arg("start");
        run(pg_ctl, "pg_ctl start");
    }

    /// Stops the server: `fast` as an operator restarting it would (sessions
    /// are cut off, in-flight transactions roll back), `immediate` as a crash.
    fn stop(&self, mode: &str) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        run(pg_ctl, "pg_ctl stop");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = pg_ctl.output();
    }
}

/// Invokes `url` in a loop until `stop`; returns how many calls answered
/// `200` with their own `n`, and every other answer.
async fn invoke_until(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let (mut ok, mut other) = (0, Vec::new());
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let r = client
            .get(format!("{url}?n={n}"))
            .timeout(Duration::from_mins(1))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        if status == 200 && body == n.to_string() {
            ok += 1;
        } else {
            other.push(format!("{status}: {body}"));
        }
    }
    (ok, other)
}

/// Load from `clients` concurrent callers, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(server: &Server, url: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                tokio::spawn(invoke_until(
                    server.client.clone(),
                    url.to_owned(),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the load; every call must have succeeded. Returns their number.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = 0;
        for task in self.tasks {
            let (ok, other) = task.await.unwrap();
            assert!(other.is_empty(), "calls failed: {other:?}");
            total += ok;
        }
        total
    }
}

/// Asserts the answer is the admin API's `503`: JSON, `unavailable`, `Retry-After`.
async fn assert_unavailable(r: reqwest::Response, what: &str) {
    let status = r.status();
    let retry_after = r.headers().get("retry-after").cloned();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{what} while the database is away: {body}");
    assert!(retry_after.is_some(), "{what}: a 503 without Retry-After");
    let body: Value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("{what}: a 503 that is not JSON: {body}"));
    assert_eq!(body["error"], "unavailable", "{what}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("database"), "{what}: {body}");
    assert!(
        !message.contains("127.0.0.1"),
        "{what} names the host: {body}"
    );
}

/// Creates `name` as soon as the database takes writes again (up to 60 s);
/// until then every attempt must be a clean `503`.
async fn create_when_back(server: &Server, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let r = server
            .admin(Method::POST, "/api/admin/scripts")
            .json(&json!({ "name": name, "source": "\"back\"" }))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            return r.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "admin writes never came back");
        assert_unavailable(r, "creating a script").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sum of a counter over all its label sets in `/metrics`.
async fn metric(server: &Server, name: &str) -> u64 {
    let text = server
        .admin(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "counters are whole and small"
            )]
            let v = v as u64;
            v
        })
        .sum()
}

/// The script's stats once its records add up to `expected` with the
/// dropped ones (up to 60 s): `(written, dropped)`.
async fn wait_for_records(server: &Server, script: &str, expected: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let stats = server
            .admin_json(&format!("/api/admin/scripts/{script}/stats?window=1h"))
            .await;
        let written = stats["count"].as_u64().unwrap_or(0);
        let dropped = stats["records"]["records_dropped"].as_u64().unwrap_or(0);
        if written + dropped >= expected {
            return (written, dropped);
        }
        assert!(
            Instant::now() < deadline,
            "{written} records written and {dropped} dropped of {expected}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn server_on(cluster: &Cluster, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("PICLOUD_DATABASE_URL".to_owned(), cluster.url())];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Server::start_with(Options {
        env,
        ..Options::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_away_scripts_run_admin_writes_get_503_and_records_wait() {
    let cluster = Cluster::create();
    let server = server_on(&cluster, &[]);
    let id = server.deploy("steady", r#"request.query["n"]"#).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load = Load::start(&server, &server.execute(&id), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.stop("fast");
    let down = Instant::now();
    // Each admin request waits for a connection (bounded: 3 s) before its
    // 503: make them at once, and check the bound (a loaded machine gets
    // slack; sqlx's default of 10 s would not fit).
    let answered_in_time = |what: &str| {
        let waited = down.elapsed();
        assert!(
            waited < Duration::from_secs(7),
            "{what}: the 503 took {waited:?} while the database was away"
        );
    };
    let create = async {
        let r = server
            .admin(Method::POST, "/api/admin/scripts")
            .json(&json!({ "name": "during", "source": "1" }))
            .send()
            .await
            .unwrap();
        assert_unavailable(r, "creating a script").await;
        answered_in_time("creating a script");
    };
    let update = async {
        let r = server
            .admin(Method::PUT, &format!("/api/admin/scripts/{id}"))
            .json(&json!({ "source": "2" }))
            .send()
            .await
            .unwrap();
        assert_unavailable(r, "updating a script").await;
        answered_in_time("updating a script");
    };
    let list = async {
        let r = server
            .admin(Method::GET, "/api/admin/scripts")
            .send()
            .await
            .unwrap();
        assert_unavailable(r, "listing scripts").await;
        answered_in_time("listing scripts");
    };
    // Records of the calls made meanwhile wait in the buffer, and the
    // backlog shows in `picloud_records_buffered`.
    let backlog = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&server, "picloud_records_buffered").await < 300 {
            assert!(
                Instant::now() < deadline,
                "picloud_records_buffered does not show the backlog"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // Readiness says so (the data plane still serves, but writes cannot land).
    let ready = async {
        let r = server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
    };
    tokio::join!(create, update, list, backlog, ready);
    if let Some(rest) = Duration::from_secs(2).checked_sub(down.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    cluster.start();
    create_when_back(&server, "after").await;
    let r = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The failed writes changed nothing; the script is still version 1.
    let steady = server.admin_json("/api/admin/scripts/steady").await;
    assert_eq!(steady["version"], 1, "{steady}");
    let names: Vec<Value> = server
        .admin_json("/api/admin/scripts")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("after"), json!("steady")]);
    let r = server
        .admin(Method::PUT, &format!("/api/admin/scripts/{id}"))
        .json(&json!({ "source": r#"request.query["n"]"# }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = load.finish().await;
    assert!(
        calls > 50,
        "too little load to show anything: {calls} calls"
    );

    let (written, dropped) = wait_for_records(&server, "steady", calls).await;
    assert_eq!(
        (written, dropped),
        (calls, 0),
        "every call's record is written once"
    );
    assert_eq!(metric(&server, "picloud_records_dropped_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_the_buffer_bound_are_dropped_and_counted() {
    let cluster = Cluster::create();
    // The smallest buffer there is: 32 KiB of stats rows.
    let server = server_on(&cluster, &[("PICLOUD_RECORDS_BUFFER_BYTES", "65536")]);
    let id = server.deploy("steady", r#"request.query["n"]"#).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load = Load::start(&server, &server.execute(&id), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // This time the server crashes (`-m immediate`: no goodbye to clients,
    // crash recovery at the next start).
    cluster.stop("immediate");
    // Keep calling until the buffer overflowed.
    let deadline = Instant::now() + Duration::from_mins(1);
    while metric(&server, "picloud_records_dropped_total").await == 0 {
        assert!(Instant::now() < deadline, "the buffer never filled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.start();
    create_when_back(&server, "after").await;
    let calls = load.finish().await;

    let (written, dropped) = wait_for_records(&server, "steady", calls).await;
    assert_eq!(written + dropped, calls, "each record written or counted");
    assert!(
        dropped > 0 && written > 0,
        "{written} written, {dropped} dropped"
    );
    assert_eq!(
        metric(&server, "picloud_records_dropped_total").await,
        dropped
    );
}
