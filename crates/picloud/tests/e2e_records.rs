//! Invocation records, their API and the metrics, over the real binary:
//! nothing is lost across a graceful restart, paging and filters are exact,
//! stats add up, the live stream sees new records, `/metrics` is never
//! public, and a script flooding its log cannot crowd out another's records.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Db, Options, PgDatabase, Server, TOKEN};
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

/// Invokes `url` `n` times, `parallel` at a time, and returns the invocation ids.
async fn invoke_many(server: &Server, url: &str, n: usize, parallel: usize) -> Vec<String> {
    let results: Vec<String> = futures_util::stream::iter(0..n)
        .map(|_| {
            let request = server.client.get(url).send();
            async move {
                let r = request.await.unwrap();
                assert_eq!(r.status(), 200);
                r.headers()["x-picloud-invocation-id"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results
}

/// Every record of a script, walking the pages.
async fn all_records(server: &Server, script: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let cursor = before
            .as_ref()
            .map(|b| format!("&before={b}"))
            .unwrap_or_default();
        let path = format!("/api/admin/scripts/{script}/invocations?limit=500{query}{cursor}");
        let page: Value = server
            .admin(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["invocations"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_owned()),
            None => return out,
        }
    }
}

/// Waits (up to 20 s) until a script has `n` records.
async fn wait_for_records(server: &Server, script: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = all_records(server, script, "").await;
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A script that works for about a second and answers `done`, with a
/// generous wall limit so a slow machine cannot turn it into a timeout.
async fn deploy_slow(server: &Server) -> String {
    server
        .admin(Method::POST, "/api/admin/scripts")
        .json(&json!({
            "name": "slow",
            "source": "let n = 0; while n < 300000 { n += 1; } \"done\"",
            "limits": { "wall_time_ms": 60_000 },
        }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// 500 invocations and one still running at SIGTERM, then a restart: every
/// record is there, exactly once.
async fn nothing_is_lost_across_a_graceful_restart(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let pg = (db == Db::Postgres).then(PgDatabase::create);
    let options = || Options {
        data_dir: Some(dir.path().to_path_buf()),
        env: pg
            .iter()
            .map(|pg| ("PICLOUD_DATABASE_URL".to_owned(), pg.url.clone()))
            .collect(),
        ..Options::default()
    };
    let server = Server::start_with(options());
    let hello = server.deploy("hello", &common::example("hello.rhai")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let slow = deploy_slow(&server).await;

    let ids: HashSet<String> = invoke_many(&server, &server.execute(&hello), 500, 16)
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 500);

    // A live stream is open at SIGTERM: it must not hold the shutdown open.
    let stream = server
        .admin(Method::GET, "/api/admin/scripts/hello/invocations/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // One invocation is still running when SIGTERM arrives: it finishes.
    let in_flight = tokio::spawn(server.client.get(server.execute(&slow)).send());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let slow_id = response.headers()["x-picloud-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.text().await.unwrap(), "done");
    assert!(
        stopped.await.unwrap().success(),
        "a graceful stop exits 0, within 10 s"
    );
    // The stream ended with the server.
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.bytes()).await;
    assert!(rest.is_ok(), "the live stream closed at shutdown");

    let server = Server::start_with(options());
    let records = all_records(&server, "hello", "").await;
    let stored: HashSet<String> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(records.len(), 500, "exactly 500 records, no duplicates");
    assert_eq!(stored, ids);
    let slow_records = all_records(&server, "slow", "").await;
    assert_eq!(slow_records.len(), 1);
    assert_eq!(slow_records[0]["id"], slow_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_across_a_graceful_restart_sqlite() {
    nothing_is_lost_across_a_graceful_restart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_across_a_graceful_restart_postgres() {
    nothing_is_lost_across_a_graceful_restart(Db::Postgres).await;
}

/// Ctrl-C in a terminal sends SIGINT to the whole foreground process group,
/// not just to `picloud`: the zygote and its workers must not die of it, so
/// the invocation in flight still finishes within the shutdown grace.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_to_the_process_group_lets_in_flight_invocations_finish() {
    let server = Server::start_with(Options {
        own_process_group: true,
        ..Options::default()
    });
    let slow = deploy_slow(&server).await;
    let in_flight = tokio::spawn(server.client.get(server.execute(&slow)).send());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let group = i32::try_from(server.pid()).unwrap();
    // SAFETY: signals the process group this test created for the server.
    unsafe {
        libc::kill(-group, libc::SIGINT);
    }
    let response = in_flight.await.unwrap().unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "done"));
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    assert!(
        stopped.await.unwrap().success(),
        "SIGINT is a graceful stop"
    );
}

/// Ten invocations of a script that fails every third time (ids of the failed ones).
async fn flaky_script(server: &Server) -> (String, Vec<String>) {
    let id = server
        .deploy(
            "flaky",
            r#"print("start"); debug("detail"); if request.query["fail"] == "1" { throw "boom" } "fine""#,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut failed = Vec::new();
    for i in 0..10 {
        let fail = i % 3 == 0;
        let r = server
            .client
            .get(format!("{}?fail={}", server.execute(&id), u8::from(fail)))
            .header("x-forwarded-for", "198.51.100.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if fail { 500 } else { 200 });
        if fail {
            failed.push(
                r.headers()["x-picloud-invocation-id"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(wait_for_records(server, &id, 10).await.len(), 10);
    (id, failed)
}

async fn get_json(server: &Server, path: &str) -> Value {
    server
        .admin(Method::GET, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_page_newest_first_and_filter_exactly() {
    let server = Server::start(Db::Sqlite);
    let (id, failed) = flaky_script(&server).await;
    let all = all_records(&server, &id, "").await;

    // Pages of four, newest first, by name as well as by id.
    let mut paged = Vec::new();
    let mut path = "/api/admin/scripts/flaky/invocations?limit=4".to_owned();
    loop {
        let page = get_json(&server, &path).await;
        let items = page["invocations"].as_array().unwrap();
        assert!(items.len() <= 4);
        paged.extend(items.iter().cloned());
        let Some(next) = page["next_before"].as_str() else {
            break;
        };
        path = format!("/api/admin/scripts/flaky/invocations?limit=4&before={next}");
    }
    assert_eq!(paged, all);
    let times: Vec<&str> = paged
        .iter()
        .map(|r| r["started_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert!(
        paged
            .iter()
            .all(|r| r.get("logs").is_none() && r["log_lines"] == 2)
    );
    // The forwarding header is not believed from an untrusted peer.
    assert!(paged.iter().all(|r| r["client_addr"] == "127.0.0.1"));

    for filter in ["script_error", "error"] {
        let errors = all_records(&server, &id, &format!("&outcome={filter}")).await;
        let mut got: Vec<&str> = errors.iter().map(|r| r["id"].as_str().unwrap()).collect();
        got.sort_unstable();
        let mut want: Vec<&str> = failed.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(got, want, "outcome={filter}");
    }
    assert_eq!(all_records(&server, &id, "&outcome=ok").await.len(), 6);
    for bad in [
        "outcome=bogus",
        "before=garbage",
        "limit=0",
        "limit=501",
        "limit=x",
    ] {
        let r = server
            .admin(
                Method::GET,
                &format!("/api/admin/scripts/{id}/invocations?{bad}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_record_in_full_and_stats_that_add_up() {
    let server = Server::start(Db::Sqlite);
    let (_, failed) = flaky_script(&server).await;

    let one = get_json(&server, &format!("/api/admin/invocations/{}", failed[0])).await;
    assert_eq!(one["outcome"], "script_error");
    assert_eq!(one["status"], 500);
    assert!(one["error"].as_str().unwrap().contains("boom"), "{one}");
    assert_eq!(one["logs"].as_array().unwrap().len(), 2, "{one}");
    assert!(one["stats"]["wall_us"].as_u64().unwrap() > 0, "{one}");
    assert!(one["stats"]["operations"].as_u64().unwrap() > 0, "{one}");
    assert!(one["stats"]["worker_pid"].as_u64().is_some(), "{one}");
    let missing = server
        .admin(
            Method::GET,
            &format!("/api/admin/invocations/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let stats = get_json(
        &server,
        "/api/admin/scripts/flaky/stats?window=1h&buckets=12",
    )
    .await;
    assert_eq!(stats["count"], 10);
    assert_eq!(stats["errors"], 4);
    assert!((stats["error_rate"].as_f64().unwrap() - 0.4).abs() < 1e-9);
    assert_eq!(stats["outcomes"], json!({ "ok": 6, "script_error": 4 }));
    for measure in ["wall_us", "cpu_us", "operations", "peak_heap_bytes"] {
        let d = &stats[measure];
        let at = |p: &str| d[p].as_u64().unwrap();
        assert!(
            at("p50") <= at("p95") && at("p95") <= at("p99") && at("p99") <= at("max"),
            "{measure}: {d}"
        );
        assert!(at("max") > 0, "{measure}: {d}");
    }
    let buckets = stats["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 12);
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    assert_eq!(
        stats["records"],
        json!({ "records_dropped": 0, "log_lines_shed": 0 })
    );
    let bad = server
        .admin(Method::GET, "/api/admin/scripts/flaky/stats?window=1y")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_sees_a_new_record() {
    let server = Server::start(Db::Sqlite);
    let id = server.deploy("watched", r#"print("hi"); 1"#).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = server.deploy("other", "2").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = server
        .admin(Method::GET, "/api/admin/scripts/watched/invocations/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // Another script's record must not show up in this stream.
    server
        .client
        .get(server.execute(&other))
        .send()
        .await
        .unwrap();
    let r = server.client.get(server.execute(&id)).send().await.unwrap();
    let invocation = r.headers()["x-picloud-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let mut body = stream.bytes_stream();
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if let Some(event) = text.split("\n\n").find(|e| e.contains("event: invocation")) {
                return Some(event.to_owned());
            }
        }
        None
    })
    .await
    .expect("an event within 20 s")
    .expect("the stream stays open");
    let data = found
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let record: Value = serde_json::from_str(data).unwrap();
    assert_eq!(record["id"], invocation.as_str());
    assert_eq!(record["script_id"], id.as_str());
    assert_eq!(record["logs"], json!(["hi"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_token_or_the_private_address() {
    // A port that was free a moment ago, for the private metrics listener.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Server::start_with(Options {
        env: vec![("PICLOUD_METRICS_BIND".into(), metrics_addr.to_string())],
        ..Options::default()
    });
    let id = server.deploy("counted", "1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        server.client.get(server.execute(&id)).send().await.unwrap();
    }

    let anonymous = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let r = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for expected in [
        "picloud_invocations_total{script=\"counted\",outcome=\"ok\"} 3",
        "picloud_invocation_wall_seconds_bucket{script=\"counted\",le=",
        "picloud_invocation_cpu_seconds_count{script=\"counted\"} 3",
        "picloud_invocation_peak_heap_bytes_bucket{script=\"counted\",le=",
        "picloud_pool_workers ",
        "picloud_pool_busy_workers ",
        "picloud_pool_idle_workers ",
        "picloud_pool_queued_invocations ",
        "picloud_pool_worker_spawns_total ",
        "picloud_pool_worker_recycles_total{reason=\"max_invocations\"} ",
        "picloud_pool_worker_recycles_total{reason=\"rss\"} ",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }

    let private = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains("picloud_invocations_total")
    );
    let other = reqwest::get(format!("http://{metrics_addr}/api/admin/scripts"))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "only /metrics is on the private address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_script_cannot_push_out_another_scripts_records() {
    // A small buffer: 512 KiB for rows, 512 KiB for log lines. One flood
    // invocation logs ~400 KB, more than the half of the log pool a lone
    // script may fill, so its lines are shed however fast the writer is; the
    // rows have room for seconds of a stalled database.
    let server = Server::start_with(Options {
        env: vec![("PICLOUD_RECORDS_BUFFER_BYTES".into(), "1048576".into())],
        ..Options::default()
    });
    let line = "x".repeat(100);
    let r = server
        .admin(Method::POST, "/api/admin/scripts")
        .json(&json!({
            "name": "flood",
            "source": format!(r#"for i in 0..4000 {{ print("{line}"); }} "flooded""#),
            "limits": { "log_bytes": 1_048_576 },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let flood = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let quiet = server
        .deploy("quiet", r#"print("one"); print("two"); "calm""#)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let flooding = {
        let url = server.execute(&flood);
        let client = server.client.clone();
        tokio::spawn(async move {
            futures_util::stream::iter(0..60)
                .map(|_| client.get(&url).send())
                .buffer_unordered(4)
                .for_each(|r| async move {
                    assert_eq!(r.unwrap().status(), 200);
                })
                .await;
        })
    };
    let mut quiet_ids = Vec::new();
    for _ in 0..30 {
        let r = server
            .client
            .get(server.execute(&quiet))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        quiet_ids.push(
            r.headers()["x-picloud-invocation-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    flooding.await.unwrap();

    let quiet_records = wait_for_records(&server, &quiet, 30).await;
    assert_eq!(quiet_records.len(), 30, "every quiet record is kept");
    for id in &quiet_ids {
        let r: Value = server
            .admin(Method::GET, &format!("/api/admin/invocations/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["logs"], json!(["one", "two"]), "{r}");
        assert_eq!(r["logs_shed"], 0);
    }
    // The flood kept its rows but lost log lines, marked on each record and counted.
    let flood_records = wait_for_records(&server, &flood, 60).await;
    assert_eq!(flood_records.len(), 60);
    let shed: u64 = flood_records
        .iter()
        .map(|r| r["logs_shed"].as_u64().unwrap())
        .sum();
    assert!(shed > 0);
    let stats: Value = server
        .admin(Method::GET, "/api/admin/scripts/flood/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["records"]["log_lines_shed"], shed);
    assert_eq!(stats["records"]["records_dropped"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_client_in_the_record() {
    let server = Server::start_with(Options {
        env: vec![("PICLOUD_TRUSTED_PROXIES".into(), "127.0.0.1".into())],
        ..Options::default()
    });
    let id = server.deploy("proxied", "1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .client
        .get(server.execute(&id))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.23")
        .send()
        .await
        .unwrap();
    let invocation = r.headers()["x-picloud-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let records = wait_for_records(&server, &id, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], invocation.as_str());
    // The right-most address the trusted peer forwarded, not what the client claimed before it.
    assert_eq!(records[0]["client_addr"], "198.51.100.23");
}
