//! The soak's load driver: a mixed, open-loop load against one running
//! `picloud`, and what the server process looked like before, during and
//! after it.
//!
//! Mostly normal requests (the examples with their payload fixtures, each
//! answer checked), some hostile scripts from `tests/fixtures/hostile/`
//! (each answer must be one of the error kinds the fixture is allowed).
//! Request `i` is due at `start + i / rate` whether or not earlier ones were
//! answered (as in `bench/loadgen`), so a slow server meets the same load.
//! Every second the server's RSS, open descriptors and process tree are
//! sampled; at the end the invocation records the server wrote are counted
//! through the admin API and compared with the invocations the driver saw.
//!
//! Compiled into `crates/picloud/tests/soak.rs` (which starts the server);
//! `bench/soak/run` runs that test in release mode for longer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::Mac as _;
use serde_json::{Value, json};

use crate::procfs;
use crate::stats::Samples;

/// How hard and how long.
#[derive(Debug, Clone)]
pub struct Config {
    pub duration: Duration,
    /// Requests per second offered, all kinds together.
    pub rate: u32,
    /// One request in this many is hostile.
    pub hostile_every: u64,
    /// Measurements before this point are the warm-up.
    pub warmup: Duration,
    /// Requests in flight at most; more are skipped (and counted).
    pub max_outstanding: usize,
}

/// The server under load.
pub struct Target {
    pub base: String,
    pub token: String,
    pub pid: u32,
}

/// One kind of request in the mix.
struct Kind {
    name: &'static str,
    id: String,
    make: fn(&reqwest::Client, &str, u64) -> reqwest::RequestBuilder,
    check: Check,
}

/// Whether an answer is right.
#[derive(Clone, Copy)]
enum Check {
    /// A normal script's status and body, for request `i`.
    Normal(fn(u16, &str, u64) -> bool),
    /// A hostile script's error kinds besides `overloaded` (the script's
    /// concurrency cap turning a call away, by design), and whether a 200
    /// is allowed too.
    Hostile(&'static [&'static str], bool),
}

impl Kind {
    fn hostile(&self) -> bool {
        matches!(self.check, Check::Hostile(..))
    }

    fn right(&self, status: u16, body: &str, i: u64) -> bool {
        match self.check {
            Check::Normal(check) => check(status, body, i),
            Check::Hostile(kinds, ok_too) => {
                (ok_too && status == 200)
                    || (status >= 500
                        && error_kind(body)
                            .as_deref()
                            .is_some_and(|k| k == "overloaded" || kinds.contains(&k)))
            }
        }
    }
}

/// The server process at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Snapshot {
    pub at_secs: f64,
    pub rss_kib: u64,
    pub fds: u64,
    /// Every process below the server (zygote, workers).
    pub descendants: u64,
    pub zombies: u64,
}

impl Snapshot {
    fn take(pid: u32, since: Instant) -> Snapshot {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = procfs::kib_fields(&status)
            .get("VmRSS")
            .copied()
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        let tree = descendants(pid);
        let zombies = tree.iter().filter(|p| state(**p) == Some('Z')).count() as u64;
        Snapshot {
            at_secs: since.elapsed().as_secs_f64(),
            rss_kib,
            fds,
            descendants: tree.len() as u64,
            zombies,
        }
    }
}

/// Every process below `pid`, depth first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for child in procfs::children_of(p) {
            out.push(child);
            todo.push(child);
        }
    }
    out
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, …).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// What a soak found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub duration_secs: u64,
    pub rate: u32,
    pub requests: u64,
    pub skipped: u64,
    pub normal: u64,
    pub normal_failures: u64,
    /// A few failed normal answers, for the log.
    pub normal_failure_samples: Vec<String>,
    pub hostile: u64,
    pub hostile_unexpected: u64,
    pub hostile_unexpected_samples: Vec<String>,
    /// Normal requests' latency, microseconds (`n`, `p50`, `p90`, `p99`, `max`).
    pub normal_latency_us: Value,
    /// Answers per status, all kinds.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers carrying an invocation id: each should have one record.
    pub invocations: u64,
    /// Records the server holds for the soak's scripts, after the writer caught up.
    pub records: u64,
    /// Records the pipeline reports as shed or dropped.
    pub records_dropped: Value,
    pub start: Snapshot,
    pub after_warmup: Snapshot,
    pub end: Snapshot,
    pub max_zombies_seen: u64,
    pub max_descendants_seen: u64,
}

impl Report {
    /// One line per fact, for people.
    pub fn summary(&self) -> String {
        let l = &self.normal_latency_us;
        format!(
            "duration {} s at {} req/s offered\n\
             requests {} (skipped by the driver: {})\n\
             normal {} failures {}\n\
             hostile {} unexpected answers {}\n\
             normal latency p50 {} us, p99 {} us, max {} us\n\
             statuses {:?}\n\
             invocations {} records {} (dropped/shed: {})\n\
             server RSS KiB start {} after warm-up {} end {}\n\
             server fds start {} after warm-up {} end {}\n\
             processes below the server: end {} (max {}); zombies end {} (max seen {})",
            self.duration_secs,
            self.rate,
            self.requests,
            self.skipped,
            self.normal,
            self.normal_failures,
            self.hostile,
            self.hostile_unexpected,
            l["p50"],
            l["p99"],
            l["max"],
            self.statuses,
            self.invocations,
            self.records,
            self.records_dropped,
            self.start.rss_kib,
            self.after_warmup.rss_kib,
            self.end.rss_kib,
            self.start.fds,
            self.after_warmup.fds,
            self.end.fds,
            self.end.descendants,
            self.max_descendants_seen,
            self.end.zombies,
            self.max_zombies_seen,
        )
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    normal: u64,
    normal_failures: u64,
    normal_failure_samples: Vec<String>,
    hostile: u64,
    hostile_unexpected: u64,
    hostile_unexpected_samples: Vec<String>,
    invocations: u64,
    latencies: Vec<Duration>,
}

const SAMPLES_KEPT: usize = 10;
/// The secret in `examples/signed-webhook.rhai`.
const WEBHOOK_SECRET: &[u8] = b"change-me";

fn read(workspace: &Path, path: &str) -> String {
    std::fs::read_to_string(workspace.join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn signature(body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of a `json-echo` request `i`.
fn echo_body(i: u64) -> String {
    json!({ "n": i, "tags": ["a", "é", "😀"], "nested": { "ok": true } }).to_string()
}

fn webhook_body(i: u64) -> String {
    json!({ "event": format!("ping-{i}") }).to_string()
}

fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: String,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", content_type)
        .body(body)
}

/// A POST of `tests/fixtures/payloads/<file>`.
fn payload(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    file: &str,
) -> reqwest::RequestBuilder {
    let body = read(
        crate::common::workspace(),
        &format!("tests/fixtures/payloads/{file}"),
    );
    post(client, url, content_type, body)
}

fn error_kind(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_owned)
}

/// One normal script of the mix: name, source path, how to call it, how to
/// check the answer.
type Entry = (
    &'static str,
    &'static str,
    fn(&reqwest::Client, &str, u64) -> reqwest::RequestBuilder,
    fn(u16, &str, u64) -> bool,
);

type HostileEntry = (
    &'static str,
    &'static str,
    Option<u64>,
    &'static [&'static str],
    bool,
);

/// The hostile part of the mix: name, fixture, wall-clock limit (ms), the
/// error kinds allowed (see [`Check::Hostile`]), and whether a 200 is too.
const HOSTILE: &[HostileEntry] = &[
    (
        "soak-spin",
        "01-spin-forever.rhai",
        Some(1000),
        &["operation_limit", "timeout"],
        false,
    ),
    (
        "soak-string-doubling",
        "04-string-doubling.rhai",
        None,
        &["memory_limit"],
        false,
    ),
    (
        "soak-array-bomb",
        "05-nested-array-bomb.rhai",
        None,
        &["memory_limit"],
        false,
    ),
    (
        "soak-recursion",
        "06-deep-recursion.rhai",
        None,
        &["script_error"],
        false,
    ),
    ("soak-log-flood", "07-log-flood.rhai", None, &[], true),
    (
        "soak-header-injection",
        "12-header-injection.rhai",
        None,
        &["script_error"],
        false,
    ),
    (
        "soak-map-keys",
        "24-mem-map-keys.rhai",
        None,
        &["memory_limit"],
        false,
    ),
    (
        "soak-huge-body",
        "33-out-huge-body.rhai",
        None,
        &["output_limit"],
        false,
    ),
];

/// The normal part of the mix: the six examples.
#[allow(clippy::too_many_lines, reason = "a table")]
fn normal_mix() -> Vec<Entry> {
    vec![
        (
            "soak-hello",
            "examples/hello.rhai",
            |c, url, i| c.get(format!("{url}?name=soak-{i}")),
            |s, b, i| s == 200 && b == format!("{{\"hello\":\"soak-{i}\"}}"),
        ),
        (
            "soak-json-echo",
            "examples/json-echo.rhai",
            |c, url, i| post(c, url, "application/json", echo_body(i)),
            |s, b, i| {
                s == 200
                    && serde_json::from_str::<Value>(b).is_ok_and(|v| {
                        v["method"] == "POST"
                            && v["received"]
                                == serde_json::from_str::<Value>(&echo_body(i)).unwrap_or_default()
                    })
            },
        ),
        (
            "soak-git-push",
            "examples/git-push-summary.rhai",
            |c, url, _| payload(c, url, "application/json", "git-push-event.json"),
            |s, b, _| s == 200 && b.contains("\"commits\":2"),
        ),
        (
            "soak-invoice",
            "examples/invoice-paid.rhai",
            |c, url, _| payload(c, url, "application/json", "payment-succeeded-event.json"),
            |s, b, _| s == 200 && b.contains("\"invoice\":"),
        ),
        (
            "soak-slash",
            "examples/slash-command.rhai",
            |c, url, _| {
                payload(
                    c,
                    url,
                    "application/x-www-form-urlencoded",
                    "slash-command.form",
                )
            },
            |s, b, _| s == 200 && b.contains("\"response_type\":\"ephemeral\""),
        ),
        (
            "soak-webhook",
            "examples/signed-webhook.rhai",
            |c, url, i| {
                let body = webhook_body(i);
                post(c, url, "application/json", body.clone())
                    .header("x-signature", signature(&body))
            },
            |s, b, i| s == 200 && b == format!("{{\"accepted\":true,\"event\":\"ping-{i}\"}}"),
        ),
    ]
}

/// Sends request `i` of a kind: the status, whether it carried an
/// invocation id, and the body.
async fn send(
    kind: &Kind,
    client: &reqwest::Client,
    url: &str,
    i: u64,
) -> Result<(u16, bool, String), String> {
    let r = (kind.make)(client, url, i)
        .send()
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = r.status().as_u16();
    let invoked = r.headers().contains_key("x-picloud-invocation-id");
    let body = r
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok((status, invoked, body))
}

impl Tally {
    fn count(
        &mut self,
        kind: &Kind,
        i: u64,
        answer: &Result<(u16, bool, String), String>,
        took: Duration,
    ) {
        let (right, what) = match answer {
            Ok((status, invoked, body)) => {
                *self.statuses.entry(*status).or_default() += 1;
                if *invoked {
                    self.invocations += 1;
                }
                (
                    kind.right(*status, body, i),
                    format!(
                        "{} #{i}: {status} {}",
                        kind.name,
                        body.chars().take(200).collect::<String>()
                    ),
                )
            }
            Err(e) => (false, format!("{} #{i}: {e}", kind.name)),
        };
        if kind.hostile() {
            self.hostile += 1;
            if !right {
                self.hostile_unexpected += 1;
                if self.hostile_unexpected_samples.len() < SAMPLES_KEPT {
                    self.hostile_unexpected_samples.push(what);
                }
            }
        } else {
            self.normal += 1;
            self.latencies.push(took);
            if !right {
                self.normal_failures += 1;
                if self.normal_failure_samples.len() < SAMPLES_KEPT {
                    self.normal_failure_samples.push(what);
                }
            }
        }
    }
}

/// Deploys the mix's scripts and returns them with how to call and check each.
async fn deploy_mix(client: &reqwest::Client, target: &Target, workspace: &Path) -> Vec<Kind> {
    let normal = normal_mix()
        .into_iter()
        .map(|(name, path, make, check)| (name, path.to_owned(), None, make, Check::Normal(check)));
    let hostile = HOSTILE.iter().map(|&(name, file, wall, kinds, ok_too)| {
        let get: fn(&reqwest::Client, &str, u64) -> reqwest::RequestBuilder =
            |c, url, _| c.get(url);
        (
            name,
            format!("tests/fixtures/hostile/{file}"),
            wall,
            get,
            Check::Hostile(kinds, ok_too),
        )
    });
    let mut kinds = Vec::new();
    for (name, path, wall, make, check) in normal.chain(hostile) {
        let mut body = json!({ "name": name, "source": read(workspace, &path) });
        if let Some(ms) = wall {
            body["limits"] = json!({ "wall_time_ms": ms });
        }
        let r = client
            .post(format!("{}/api/admin/scripts", target.base))
            .bearer_auth(&target.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
        let status = r.status();
        let created: Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 201, "deploying {name}: {created}");
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        kinds.push(Kind {
            name,
            id,
            make,
            check,
        });
    }
    kinds
}

/// A snapshot, taken off the async threads.
async fn snapshot(pid: u32, since: Instant) -> Snapshot {
    tokio::task::spawn_blocking(move || Snapshot::take(pid, since))
        .await
        .unwrap_or_default()
}

async fn sample_every_second(pid: u32, since: Instant, into: Arc<Mutex<Vec<Snapshot>>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = snapshot(pid, since).await;
        into.lock().unwrap_or_else(PoisonError::into_inner).push(s);
    }
}

/// Runs the soak and reports. Panics only when it cannot run at all.
pub async fn run(target: &Target, config: &Config) -> Report {
    let workspace = crate::common::workspace();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(config.max_outstanding)
        .build()
        .unwrap_or_else(|e| panic!("building the HTTP client: {e}"));
    let kinds = Arc::new(deploy_mix(&client, target, workspace).await);
    let normal: Vec<usize> = (0..kinds.len()).filter(|k| !kinds[*k].hostile()).collect();
    let hostile: Vec<usize> = (0..kinds.len()).filter(|k| kinds[*k].hostile()).collect();

    let since = Instant::now();
    let start = Snapshot::take(target.pid, since);
    let snapshots = Arc::new(Mutex::new(vec![start]));
    let sampling = tokio::spawn(sample_every_second(
        target.pid,
        since,
        Arc::clone(&snapshots),
    ));

    let tally = Arc::new(Mutex::new(Tally::default()));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(config.max_outstanding));
    let total = u64::from(config.rate) * config.duration.as_secs();
    let period = Duration::from_secs(1) / config.rate.max(1);
    let mut skipped = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut after_warmup = None;
    let load_start = tokio::time::Instant::now();
    for i in 0..total {
        let due = load_start + period * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        if after_warmup.is_none() && load_start.elapsed() >= config.warmup {
            after_warmup = Some(snapshot(target.pid, since).await);
        }
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let k = if config.hostile_every > 0 && i % config.hostile_every == config.hostile_every - 1
        {
            hostile[usize::try_from(i / config.hostile_every).unwrap_or(0) % hostile.len()]
        } else {
            normal[usize::try_from(i).unwrap_or(0) % normal.len()]
        };
        let kinds = Arc::clone(&kinds);
        let tally = Arc::clone(&tally);
        let client = client.clone();
        let url = format!("{}/api/execute/{}", target.base, kinds[k].id);
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = send(&kinds[k], &client, &url, i).await;
            let took = sent.elapsed();
            drop(permit);
            tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .count(&kinds[k], i, &answer, took);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}

    // Let the pool replace and reap what the last hostile requests killed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampling.abort();
    let end = snapshot(target.pid, since).await;
    let (records, records_dropped) = wait_for_records(&client, target, &kinds, &tally).await;

    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    let snapshots = snapshots.lock().unwrap_or_else(PoisonError::into_inner);
    Report {
        duration_secs: config.duration.as_secs(),
        rate: config.rate,
        requests: total - skipped,
        skipped,
        normal: t.normal,
        normal_failures: t.normal_failures,
        normal_failure_samples: t.normal_failure_samples,
        hostile: t.hostile,
        hostile_unexpected: t.hostile_unexpected,
        hostile_unexpected_samples: t.hostile_unexpected_samples,
        normal_latency_us: Samples::from_durations(t.latencies).summary(),
        statuses: t.statuses,
        invocations: t.invocations,
        records,
        records_dropped,
        start,
        after_warmup: after_warmup.unwrap_or(start),
        end,
        max_zombies_seen: snapshots.iter().map(|s| s.zombies).max().unwrap_or(0),
        max_descendants_seen: snapshots.iter().map(|s| s.descendants).max().unwrap_or(0),
    }
}

/// Sums the soak scripts' record counts until they reach the invocations
/// seen, or stop growing for 10 s (at most a minute).
async fn wait_for_records(
    client: &reqwest::Client,
    target: &Target,
    kinds: &[Kind],
    tally: &Mutex<Tally>,
) -> (u64, Value) {
    let want = tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .invocations;
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut last = (0, Instant::now());
    loop {
        let mut count = 0;
        let mut dropped = serde_json::Map::new();
        for kind in kinds {
            let stats: Value = match client
                .get(format!(
                    "{}/api/admin/scripts/{}/stats?window=1d",
                    target.base, kind.id
                ))
                .bearer_auth(&target.token)
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => Value::Null,
            };
            count += stats["count"].as_u64().unwrap_or(0);
            if let Some(records) = stats["records"].as_object() {
                for (k, v) in records {
                    let sum = dropped.get(k).and_then(Value::as_u64).unwrap_or(0)
                        + v.as_u64().unwrap_or(0);
                    dropped.insert(k.clone(), sum.into());
                }
            }
        }
        if count != last.0 {
            last = (count, Instant::now());
        }
        if count >= want || last.1.elapsed() > Duration::from_secs(10) || Instant::now() > deadline
        {
            return (count, Value::Object(dropped));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
