//! Helpers shared by the pool integration tests: a pool hosted by the real
//! `picloud` binary, scripts and invocations.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]
#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox::{Isolation, Pool, PoolConfig};
use shared::{
    Invocation, InvocationId, InvocationOutput, Limits, Script, ScriptId, ScriptRef, ScriptRequest,
};

/// A pool configuration whose zygote is the `picloud` binary under test.
pub fn config(workers: usize, isolation: Isolation) -> PoolConfig {
    let mut c = PoolConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_picloud")));
    c.workers = workers;
    c.isolation = isolation;
    c.per_script_concurrency = workers;
    c
}

/// Starts a pool and waits until all its workers are ready.
pub async fn start(config: PoolConfig) -> Arc<Pool> {
    let pool = Pool::start(config).await.expect("the pool starts");
    assert!(
        pool.wait_until_full(Duration::from_secs(20)).await,
        "workers never became ready: {:?}",
        shared::ExecutorClient::status(&*pool)
    );
    pool
}

pub fn script(source: &str) -> Arc<ScriptRef> {
    script_with(source, |_| {})
}

pub fn script_with(source: &str, tune: impl FnOnce(&mut Limits)) -> Arc<ScriptRef> {
    let mut limits = Limits::DEFAULTS;
    tune(&mut limits);
    Arc::new(ScriptRef {
        script: Script {
            id: ScriptId::new(),
            name: "test".into(),
            version: 1,
            source: source.into(),
            ..Script::default()
        },
        limits,
    })
}

/// A hostile fixture shipped with the repository.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/hostile")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn invocation(script: &Arc<ScriptRef>, query: &[(&str, &str)]) -> Invocation {
    Invocation {
        id: InvocationId::new(),
        script: script.clone(),
        request: ScriptRequest {
            method: "GET".into(),
            path: "/test".into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ScriptRequest::default()
        },
    }
}

pub fn body(output: &InvocationOutput) -> String {
    let response = output
        .response
        .as_ref()
        .unwrap_or_else(|| panic!("no response: {output:?}"));
    String::from_utf8(response.body.clone()).unwrap()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Pids of zombie processes whose parent is `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim().to_owned()) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let parent_pid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if parent_pid == parent && state == "Z" {
            out.push(pid);
        }
    }
    out
}

/// Children of `parent` whose command name is `name`.
pub fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let parent_pid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if parent_pid == parent && comm == name {
            out.push(pid);
        }
    }
    out
}
