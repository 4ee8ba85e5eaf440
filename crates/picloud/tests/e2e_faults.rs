//! Processes of the pool die under load, over real HTTP: workers and then the
//! zygote are killed (`SIGKILL`) while several clients keep invoking. Only the
//! invocations that were on a killed process fail, each with a clean JSON
//! `502 worker_crashed`; every other call succeeds, and the pool heals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Options, Server, children_named, proc_stat};
use reqwest::Method;
use serde_json::Value;

const WORKERS: usize = 3;
const CLIENTS: usize = 5;

/// Busy for a few milliseconds, so workers are caught running; the body
/// names the call it answers.
const BUSY: &str = r#"
let x = 0;
for i in 0..20000 { x += i; }
#{ n: request.query["n"], x: x }
"#;

/// One call a client made.
struct Call {
    n: String,
    status: u16,
    body: String,
    invocation: Option<String>,
}

/// Invokes `url` in a loop until `stop`, each call with its own `n`.
async fn invoke_until(
    client: reqwest::Client,
    url: String,
    client_no: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let n = format!("{client_no}-{i}");
        i += 1;
        let r = client
            .get(format!("{url}?n={n}"))
            .timeout(Duration::from_mins(1))
            .send()
            .await
            .unwrap_or_else(|e| panic!("call {n} got no HTTP answer: {e}"));
        let status = r.status().as_u16();
        let invocation = r
            .headers()
            .get("x-picloud-invocation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.text().await.unwrap();
        calls.push(Call {
            n,
            status,
            body,
            invocation,
        });
    }
    calls
}

/// A worker of `zygote` in state `R`: busy with an invocation.
fn running_worker(zygote: u32) -> Option<u32> {
    children_named(zygote, "picloud-worker")
        .into_iter()
        .find(|&pid| proc_stat(pid).is_some_and(|(_, state, _)| state == 'R'))
}

fn the_zygote(server: u32) -> Option<u32> {
    let zygotes = children_named(server, "picloud-zygote");
    (zygotes.len() == 1).then(|| zygotes[0])
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Waits (up to 30 s) for a zygote other than `old` with all its workers up.
async fn wait_for_healed_pool(server: &Server, old: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server.admin_json("/api/admin/pool").await;
        if let Some(zygote) = the_zygote(server.pid())
            && zygote != old
            && status["ready"] == true
            && children_named(zygote, "picloud-worker").len() == WORKERS
        {
            return zygote;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not heal within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored record of an invocation, once written (up to 20 s).
async fn record(server: &Server, invocation: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = server
            .admin(Method::GET, &format!("/api/admin/invocations/{invocation}"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no record of invocation {invocation}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_and_zygote_fail_only_their_own_invocations() {
    let server = Server::start_with(Options {
        env: vec![
            ("PICLOUD_WORKERS".into(), WORKERS.to_string()),
            ("PICLOUD_SCRIPT_CONCURRENCY".into(), WORKERS.to_string()),
        ],
        ..Options::default()
    });
    let id = server.deploy("busy", BUSY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = server.execute(&id);
    let first = server
        .client
        .get(format!("{url}?n=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let zygote = the_zygote(server.pid()).expect("the server runs one zygote");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(invoke_until(
                server.client.clone(),
                url.clone(),
                c,
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Three workers, one after the other, each caught running a script.
    let mut killed: HashSet<u32> = HashSet::new();
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let victim = loop {
            if let Some(pid) = running_worker(zygote) {
                break pid;
            }
            assert!(Instant::now() < deadline, "no worker was ever busy");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        signal(victim, libc::SIGKILL);
        killed.insert(victim);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let workers_killed = killed.len();

    // Then the zygote: its workers die with it.
    // (A child forked a moment ago may still bear the zygote's name.)
    let mut orphans = children_named(zygote, "picloud-worker");
    orphans.extend(children_named(zygote, "picloud-zygote"));
    signal(zygote, libc::SIGKILL);
    killed.extend(orphans.iter().copied());
    let new_zygote = wait_for_healed_pool(&server, zygote).await;
    assert_ne!(new_zygote, zygote);
    // Load on the healed pool for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = Vec::new();
    for client in clients {
        calls.extend(client.await.unwrap());
    }

    let mut failed = Vec::new();
    for call in &calls {
        match call.status {
            200 => {
                let body: Value = serde_json::from_str(&call.body).unwrap();
                assert_eq!(body["n"], call.n.as_str(), "a call got another's answer");
            }
            502 => {
                let body: Value = serde_json::from_str(&call.body)
                    .unwrap_or_else(|_| panic!("a 502 that is not JSON: {}", call.body));
                assert_eq!(body["error"], "worker_crashed", "{body}");
                let message = body["message"].as_str().unwrap();
                assert!(!message.is_empty() && !message.contains('/'), "{body}");
                failed.push(call);
            }
            other => panic!("call {} answered {other}: {}", call.n, call.body),
        }
    }
    let ok = calls.len() - failed.len();
    assert!(ok > 20, "too little load to show anything: {ok} calls");
    // A worker killed while running fails that one call, and a zygote's
    // death fails at most what its workers were running.
    assert!(
        !failed.is_empty(),
        "killing busy workers failed nothing ({} calls)",
        calls.len()
    );
    assert!(
        failed.len() <= workers_killed + orphans.len(),
        "{} calls failed for {workers_killed} workers and a zygote with {} workers",
        failed.len(),
        orphans.len()
    );
    // Each failure was on a process the test killed, as its record says.
    for call in &failed {
        let invocation = call.invocation.as_deref().expect("an invocation id");
        let record = record(&server, invocation).await;
        assert_eq!(record["outcome"], "worker_crashed", "{record}");
        let pid = u32::try_from(record["stats"]["worker_pid"].as_u64().unwrap()).unwrap();
        assert!(
            killed.contains(&pid),
            "call {} failed on worker {pid}, which nobody killed: {record}",
            call.n
        );
    }

    // The pool is whole again and serves every call.
    let status = server.admin_json("/api/admin/pool").await;
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["workers"], WORKERS, "{status}");
    for n in 0..20 {
        let r = server
            .client
            .get(format!("{url}?n=after-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every killed process was reaped: no zombies under the server or the new zygote.
    let zombies = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&pid| {
                proc_stat(pid).is_some_and(|(_, state, parent)| {
                    state == 'Z' && (parent == server.pid() || parent == new_zygote)
                })
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !zombies().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(zombies(), Vec::<u32>::new(), "zombie processes");
}
