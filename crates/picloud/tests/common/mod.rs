//! Test harness: the real `picloud` binary on a free port, a fresh data
//! directory, and (optionally) a fresh PostgreSQL database of its own.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The admin token every test server is started with.
pub const TOKEN: &str = "picloud_test_token_0123456789abcdef0123456789abcdef";

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A throwaway PostgreSQL database, dropped with this value.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

fn pg_admin_url() -> String {
    std::env::var("PICLOUD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl PgDatabase {
    pub fn create() -> Self {
        let admin_url = pg_admin_url();
        let name = format!("picloud_e2e_{}", uuid::Uuid::new_v4().simple());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url.rsplit_once('/').expect("URL has a path").0;
        Self {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one statement on its own thread and runtime, so it works from
/// sync code, async tests and `Drop` alike.
fn psql(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || psql_blocking(&url, &sql))
        .join()
        .unwrap();
}

fn psql_blocking(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection as _, Executor as _};
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is needed for this test (PICLOUD_TEST_PG_URL={url}): {e}")
        });
        // The statements are built from a random name this harness made.
        conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .unwrap();
    });
}

/// A running `picloud`.
pub struct Server {
    pub base: String,
    /// Other listeners by name (`admin`, `metrics`), when configured.
    pub extra: std::collections::HashMap<String, String>,
    pub data_dir: PathBuf,
    child: Child,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
    pub client: reqwest::Client,
}

/// How to start a server.
pub struct Options {
    pub db: Db,
    pub env: Vec<(String, String)>,
    /// Reuse this data directory (restart tests).
    pub data_dir: Option<PathBuf>,
    pub token: Option<String>,
    /// Start the server in a process group of its own, as a shell does with
    /// a foreground job, so a test can signal the whole group like Ctrl-C.
    pub own_process_group: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            env: Vec::new(),
            data_dir: None,
            token: Some(TOKEN.to_owned()),
            own_process_group: false,
        }
    }
}

impl Server {
    pub fn start(db: Db) -> Self {
        Self::start_with(Options {
            db,
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Self {
        let (dir, data_dir) = if let Some(d) = opts.data_dir {
            (None, d)
        } else {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            (Some(dir), path)
        };
        let pg = (opts.db == Db::Postgres).then(PgDatabase::create);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PICLOUD_BIND", "127.0.0.1:0")
            .env("PICLOUD_DATA_DIR", &data_dir)
            .env(
                "RUST_LOG",
                std::env::var("PICLOUD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = &opts.token {
            cmd.env("PICLOUD_ADMIN_TOKEN", token);
        }
        if let Some(pg) = &pg {
            cmd.env("PICLOUD_DATABASE_URL", &pg.url);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if opts.own_process_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let mut child = cmd.spawn().expect("picloud starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                // `picloud listening on URL`, `picloud admin listening on URL`, ...
                if let Some((what, url)) = line
                    .strip_prefix("picloud ")
                    .and_then(|l| l.split_once("listening on "))
                {
                    let _ = tx.send((what.trim().to_owned(), url.to_owned()));
                }
            }
        });
        let mut extra = std::collections::HashMap::new();
        let base = loop {
            let (what, url) = rx
                .recv_timeout(Duration::from_mins(1))
                .expect("picloud announces its address within 60 s");
            if what.is_empty() {
                break url;
            }
            extra.insert(what, url);
        };
        Self {
            base,
            extra,
            data_dir,
            child,
            _dir: dir,
            _pg: pg,
            client: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    /// `GET` an admin path with the token and its JSON body, whatever the status.
    pub async fn admin_json(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Uploads a script; panics unless the server answers 201.
    pub async fn deploy(&self, name: &str, source: &str) -> Value {
        let r = self
            .admin(reqwest::Method::POST, "/api/admin/scripts")
            .json(&serde_json::json!({ "name": name, "source": source }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "deploying {name}: {body}");
        body
    }

    pub fn execute(&self, id: &str) -> String {
        self.url(&format!("/api/execute/{id}"))
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and reaps it.
    /// Its data directory and PostgreSQL database go with `self` unless the
    /// test owns them (`Options::data_dir`, `PICLOUD_DATABASE_URL` in `env`).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// `examples/<name>` from the workspace root.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(workspace().join("examples").join(name)).unwrap()
}

/// `tests/fixtures/<path>` from the workspace root.
pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(workspace().join("tests/fixtures").join(path)).unwrap()
}

pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

impl Server {
    /// Sends `head` (request line and headers, no body) over a fresh TCP
    /// connection and returns the status the server answers with. For
    /// limits enforced before the body is read.
    pub fn raw_status(&self, head: &str) -> u16 {
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Children of `parent` whose command name (`/proc/<pid>/comm`) is `name`,
/// e.g. the server's `picloud-zygote` and the zygote's `picloud-worker`s.
pub fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some((comm, state, parent_pid)) = proc_stat(pid) else {
            continue;
        };
        if parent_pid == parent && comm == name && state != 'Z' {
            out.push(pid);
        }
    }
    out
}

/// `(command name, state, parent pid)` of a process, if it exists.
pub fn proc_stat(pid: u32) -> Option<(String, char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((comm, state, parent))
}
