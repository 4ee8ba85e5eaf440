//! The HTTP front against the real binary over real TCP: slow and oversized
//! requests, the connection and in-flight caps, body caps per route, script
//! response headers that must never reach the wire, and hostile request
//! input. Every bound on time here is for liveness, never speed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom and panic when they cannot proceed"
)]

mod common;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Options, Server};
use serde_json::{Value, json};

/// Long enough for a loaded machine; a server that never cuts a client off
/// fails the test after it.
const LIVENESS: Duration = Duration::from_secs(30);

fn start(env: &[(&str, &str)]) -> Server {
    let mut all = vec![("PICLOUD_WORKERS".to_owned(), "2".to_owned())];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Server::start_with(Options {
        env: all,
        ..Options::default()
    })
}

async fn deploy(server: &Server, body: Value) -> String {
    let r = server
        .admin(reqwest::Method::POST, "/api/admin/scripts")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(LIVENESS)).unwrap();
    stream
}

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// The status line and headers, as sent.
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response: the head, then `content-length` bytes, or up to the
/// end of the connection without one. `None` if the server closed first.
fn read_response(stream: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf.split_off(head_end);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    match raw
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
        }
        None => {
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
    }
    raw.body = body;
    Some(raw)
}

/// Sends `request` on a fresh connection and reads the answer.
fn exchange(server: &Server, request: &[u8]) -> Raw {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_response(&mut stream).expect("the server answers")
}

/// Whether the server closes `stream` within `bound` (anything it sends
/// first is returned too).
fn closed_within(stream: &mut TcpStream, bound: Duration) -> (bool, Vec<u8>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < bound {
        match stream.read(&mut chunk) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, got),
        }
    }
    (false, got)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_while_other_clients_are_served() {
    let server = start(&[("PICLOUD_HEADER_READ_TIMEOUT_MS", "1000")]);
    let id = deploy(&server, json!({ "name": "echo", "source": "request.body" })).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Each sends a request head one header line every 200 ms, never ending it.
    let slow: Vec<_> = (0..12)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let started = Instant::now();
                let mut got = Vec::new();
                let mut chunk = [0u8; 1024];
                if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                    .is_err()
                {
                    return (true, got);
                }
                while started.elapsed() < LIVENESS {
                    if s.write_all(b"x-slow: 1\r\n").is_err() {
                        return (true, got);
                    }
                    match s.read(&mut chunk) {
                        Ok(0) => return (true, got),
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return (true, got),
                    }
                }
                (false, got)
            })
        })
        .collect();

    // Meanwhile, ordinary clients are served.
    let mut answered = 0;
    while !slow.iter().all(std::thread::JoinHandle::is_finished) {
        let r = server
            .client
            .post(server.execute(&id))
            .body("fine")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "fine");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered > 0);
    for handle in slow {
        let (cut, got) = handle.join().unwrap();
        assert!(cut, "a slow request head was never cut off");
        assert!(
            !String::from_utf8_lossy(&got).contains(" 200 "),
            "an unfinished head was answered: {}",
            String::from_utf8_lossy(&got)
        );
    }

    // The same bound closes an idle keep-alive connection.
    let mut idle = connect(&server);
    idle.write_all(&get("/healthz")).unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let (closed, got) = closed_within(&mut idle, LIVENESS);
    assert!(closed && got.is_empty(), "idle connection kept open");

    assert_eq!(exchange(&server, &get("/healthz")).status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_or_dripping_body_is_cut_off() {
    let server = start(&[("PICLOUD_BODY_READ_TIMEOUT_MS", "1000")]);
    let id = deploy(&server, json!({ "name": "echo", "source": "request.body" })).await;
    let path = format!("/api/execute/{id}");

    // A body that stops half-way.
    let mut stalled = connect(&server);
    stalled
        .write_all(
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
                .as_bytes(),
        )
        .unwrap();
    let r = read_response(&mut stalled).expect("a stalled body is answered");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.json()["error"], "request_timeout");
    assert!(
        closed_within(&mut stalled, LIVENESS).0,
        "connection kept open"
    );

    // A body that keeps dripping a byte at a time is cut off all the same:
    // the bound is on the whole body, not the gap between bytes.
    let mut dripping = connect(&server);
    dripping
        .write_all(
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 10000\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut writer = dripping.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < LIVENESS {
            if writer.write_all(b"a").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let r = read_response(&mut dripping).expect("a dripping body is answered");
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        closed_within(&mut dripping, LIVENESS).0,
        "connection kept open"
    );
    assert!(drip.join().unwrap(), "the server kept reading the drip");

    // The admin API's bodies are bounded too.
    let mut admin = connect(&server);
    admin
        .write_all(
            format!(
                "POST /api/admin/scripts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"na",
                common::TOKEN
            )
            .as_bytes(),
        )
        .unwrap();
    let (closed, got) = closed_within(&mut admin, LIVENESS);
    assert!(closed, "admin connection with a stalled body kept open");
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got}");

    let r = server
        .client
        .post(server.execute(&id))
        .body("whole")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_its_response_is_cut_off() {
    const MIB: u64 = 1024 * 1024;
    let server = start(&[("PICLOUD_WRITE_TIMEOUT_MS", "1000")]);
    // More than the kernel buffers of a connection whose reader never reads.
    let id = deploy(
        &server,
        json!({ "name": "big", "source": "let s = \"\"; s.pad(parse_int(request.query.n), \"a\"); s",
                "limits": { "string_bytes": 16 * MIB, "response_bytes": 16 * MIB,
                            "memory_bytes": 256 * MIB, "wall_time_ms": 60_000 } }),
    )
    .await;
    let mut stream = connect(&server);
    stream
        .write_all(&get(&format!("/api/execute/{id}?n={}", 12 * MIB)))
        .unwrap();
    // The response has begun; stop reading for long past the write
    // timeout, then read what was sent before it.
    let mut chunk = vec![0u8; 1 << 16];
    let mut received = stream.read(&mut chunk).unwrap() as u64;
    assert!(String::from_utf8_lossy(&chunk[..12]).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_secs(4));
    let started = Instant::now();
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n as u64,
        }
        assert!(
            started.elapsed() < LIVENESS,
            "the stalled response never ended"
        );
    }
    assert!(
        received < 12 * MIB,
        "the whole response waited for a client that did not read ({received} bytes)"
    );

    // A client that reads gets all of it.
    let r = server
        .client
        .get(format!("{}?n={MIB}", server.execute(&id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len() as u64, MIB);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_get_431() {
    let mut server = start(&[
        ("PICLOUD_MAX_HEADERS", "20"),
        ("PICLOUD_MAX_HEADER_BYTES", "4096"),
    ]);
    let headers = |n: usize, size: usize| {
        let mut req = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
        for i in 0..n {
            let _ = write!(req, "x-h{i}: {}\r\n", "v".repeat(size));
        }
        req.push_str("\r\n");
        req.into_bytes()
    };
    assert_eq!(exchange(&server, &headers(10, 10)).status, 200);
    assert_eq!(exchange(&server, &headers(30, 10)).status, 431, "too many");
    assert_eq!(
        exchange(&server, &headers(3, 2000)).status,
        431,
        "too large"
    );
    assert_eq!(
        exchange(&server, &headers(1, 5000)).status,
        431,
        "one too large"
    );
    let long_uri = format!("/api/execute/x?q={}", "a".repeat(8000));
    let status = exchange(&server, &get(&long_uri)).status;
    assert!(status == 431 || status == 414, "long URI: {status}");
    assert!(server.alive());
    assert_eq!(exchange(&server, &headers(19, 100)).status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_cap_clients_get_503_with_retry_after() {
    let mut server = start(&[
        ("PICLOUD_MAX_CONNECTIONS", "4"),
        ("PICLOUD_HEADER_READ_TIMEOUT_MS", "60000"),
    ]);
    // Four keep-alive connections, each served once and then held open.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(&get("/healthz")).unwrap();
            assert_eq!(read_response(&mut s).unwrap().status, 200);
            s
        })
        .collect();

    for _ in 0..3 {
        let r = exchange(&server, &get("/healthz"));
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("1"));
        let body = r.json();
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(body["message"].as_str().unwrap().contains("connection"));
    }
    // A request with a body is answered too, not reset.
    let mut post = format!(
        "POST /api/execute/x HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        256 * 1024
    )
    .into_bytes();
    post.extend(std::iter::repeat_n(b'a', 256 * 1024));
    let r = exchange(&server, &post);
    assert_eq!(r.status, 503, "{r:?}");
    // The held connections are still served.
    for s in &mut held {
        s.write_all(&get("/healthz")).unwrap();
        assert_eq!(read_response(s).unwrap().status, 200);
    }

    // Closing one frees its place (once the server notices the close).
    drop(held.pop());
    a_place_comes_back(&server, "the freed place never came back").await;
    drop(held);
    assert!(server.alive());
    a_place_comes_back(&server, "the closed connections' places never came back").await;
    let metrics = server
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("picloud_http_rejected_total{reason=\"connections\"}")),
        "{metrics}"
    );
}

/// Waits until a new connection is served again: the server frees a place
/// when it notices a close, which may come after the next connect.
async fn a_place_comes_back(server: &Server, what: &str) {
    let started = Instant::now();
    loop {
        let r = exchange(server, &get("/healthz"));
        if r.status == 200 {
            return;
        }
        assert_eq!(r.status, 503);
        assert!(started.elapsed() < LIVENESS, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_in_flight_cap_invocations_get_503_while_others_run() {
    let server = start(&[("PICLOUD_WORKERS", "4"), ("PICLOUD_MAX_IN_FLIGHT", "2")]);
    let spin = deploy(
        &server,
        json!({ "name": "spin", "source": "loop {}", "concurrency": 4,
                "limits": { "wall_time_ms": 4000, "operations": 1_000_000_000 } }),
    )
    .await;
    let quick = deploy(&server, json!({ "name": "quick", "source": "\"quick\"" })).await;

    // Two spins take both places; quick calls meanwhile are turned away. A
    // quick call can win a place before a spin on a loaded machine (then
    // that spin is the one turned away), so this may take a few rounds.
    let mut turned_away = None;
    for _ in 0..5 {
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let client = server.client.clone();
                let url = server.execute(&spin);
                tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        while turned_away.is_none() && !busy.iter().all(tokio::task::JoinHandle::is_finished) {
            let r = server
                .client
                .get(server.execute(&quick))
                .send()
                .await
                .unwrap();
            if r.status() == 503 {
                let retry = r.headers().get("retry-after").cloned();
                let body: Value = r.json().await.unwrap();
                turned_away = Some((retry, body));
            } else {
                assert_eq!(r.status(), 200);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Health checks are not invocations and are never turned away.
        let r = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for b in busy {
            let status = b.await.unwrap();
            assert!(
                matches!(status, 500 | 503 | 504),
                "spin ended with {status}"
            );
        }
        if turned_away.is_some() {
            break;
        }
    }
    let (retry, body) = turned_away.expect("an invocation past the cap was turned away");
    assert_eq!(retry.unwrap(), "1");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("in flight"),
        "{body}"
    );
    let metrics = server
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("picloud_http_rejected_total{reason=\"in_flight\"}")),
        "{metrics}"
    );
    let r = server
        .client
        .get(server.execute(&quick))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "quick");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_route_has_its_body_cap_up_to_the_operators_maximum() {
    const MIB: usize = 1024 * 1024;
    let server = start(&[("PICLOUD_LIMIT_REQUEST_BODY_BYTES_MAX", "4194304")]);
    let size = "request.body.len()";
    deploy(
        &server,
        json!({ "name": "big", "route": "POST /exec/big", "source": size,
                "limits": { "request_body_bytes": 3 * MIB, "string_bytes": 4 * MIB } }),
    )
    .await;
    deploy(
        &server,
        json!({ "name": "small", "route": "POST /exec/small", "source": size,
                "limits": { "request_body_bytes": 1024 } }),
    )
    .await;
    let post = |path: &'static str, n: usize| {
        server
            .client
            .post(server.url(path))
            .body(vec![b'a'; n])
            .send()
    };
    let r = post("/exec/big", 2 * MIB).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (2 * MIB).to_string());
    for (path, n) in [("/exec/big", 3 * MIB + 1), ("/exec/small", 2048)] {
        let r = post(path, n).await.unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large", "{body}");
    }
    let r = post("/exec/small", 1000).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "1000");

    // Refused on its announced length, the body is left unread and the
    // connection closes; the answer says so, so a client does not reuse it.
    let raw_post = |n: usize| {
        let mut req =
            format!("POST /exec/small HTTP/1.1\r\nhost: x\r\ncontent-length: {n}\r\n\r\n")
                .into_bytes();
        req.extend(std::iter::repeat_n(b'a', n));
        req
    };
    let mut conn = connect(&server);
    conn.write_all(&raw_post(1000)).unwrap();
    let r = read_response(&mut conn).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), None, "{r:?}");
    conn.write_all(&raw_post(2048)).unwrap();
    let r = read_response(&mut conn).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(closed_within(&mut conn, LIVENESS).0);

    // A client still sending a large body it announced gets the 413, not a
    // reset: the closing connection keeps reading for a moment.
    let mut conn = connect(&server);
    conn.write_all(
        format!(
            "POST /exec/small HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            8 * MIB
        )
        .as_bytes(),
    )
    .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        (0..128).try_for_each(|_| writer.write_all(&chunk))
    });
    let r = read_response(&mut conn).expect("the 413 arrives");
    assert_eq!(r.status, 413, "{r:?}");
    sender
        .join()
        .unwrap()
        .expect("the body was cut off with a reset");

    // Above the operator's maximum is refused at deploy time.
    let r = server
        .admin(reqwest::Method::POST, "/api/admin/scripts")
        .json(&json!({ "name": "greedy", "source": size,
                       "limits": { "request_body_bytes": 8 * MIB } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("request_body_bytes"),
        "{body}"
    );
}

/// Each case sets one bad status or header; the marker must never reach the wire.
const BAD_RESPONSES: &str = r#"
let m = "picloud-marker";
switch request.query.kind {
    "ok" => response(200, "fine", #{ "x-good": m }),
    "crlf" => response(200, "x", #{ "x-a": "ok\r\nx-injected: " + m }),
    "lf" => response(200, "x", #{ "x-a": "ok\nx-injected: " + m }),
    "cr" => response(200, "x", #{ "x-a": "ok\rx-injected: " + m }),
    "nul" => response(200, "x", #{ "x-a": m + "\x00" }),
    "ctl" => response(200, "x", #{ "x-a": m + "\x01" }),
    "esc" => response(200, "x", #{ "x-a": m + "\x1b[2J" }),
    "del" => response(200, "x", #{ "x-a": m + "\x7f" }),
    "name-space" => response(200, "x", #{ "x injected": m }),
    "name-colon" => response(200, "x", #{ "x-injected:": m }),
    "name-crlf" => response(200, "x", #{ "x-a\r\nx-injected": m }),
    "name-empty" => response(200, "x", #{ "": m }),
    "name-utf8" => response(200, "x", #{ "x-ü": m }),
    "connection" => response(200, "x", #{ "connection": m }),
    "keep-alive" => response(200, "x", #{ "Keep-Alive": m }),
    "transfer-encoding" => response(200, "x", #{ "Transfer-Encoding": m }),
    "te" => response(200, "x", #{ "te": m }),
    "trailer" => response(200, "x", #{ "trailer": m }),
    "upgrade" => response(200, "x", #{ "upgrade": m }),
    "proxy-authenticate" => response(200, "x", #{ "proxy-authenticate": m }),
    "proxy-connection" => response(200, "x", #{ "proxy-connection": m }),
    "content-length" => response(200, "x", #{ "content-length": "999" }),
    "s99" => response(99, m),
    "s100" => response(100, m),
    "s101" => response(101, m),
    "s199" => response(199, m),
    "s600" => response(600, m),
    "s65736" => response(65736, m),
    "s4294967496" => response(4294967496, m),
    "negative" => response(-200, m),
    "string" => response("200", m),
    "float" => response(200.0, m),
    _ => "unknown case"
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn bad_script_statuses_and_headers_are_script_errors_never_sent() {
    let server = start(&[]);
    let id = deploy(
        &server,
        json!({ "name": "bad-responses", "source": BAD_RESPONSES }),
    )
    .await;
    let path = format!("/api/execute/{id}");

    let ok = exchange(&server, &get(&format!("{path}?kind=ok")));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-good"), Some("picloud-marker"));
    for case in [
        "crlf",
        "lf",
        "cr",
        "nul",
        "ctl",
        "esc",
        "del",
        "name-space",
        "name-colon",
        "name-crlf",
        "name-empty",
        "name-utf8",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-connection",
        "content-length",
        "s99",
        "s100",
        "s101",
        "s199",
        "s600",
        "s65736",
        "s4294967496",
        "negative",
        "string",
        "float",
    ] {
        let r = exchange(&server, &get(&format!("{path}?kind={case}")));
        assert_eq!(r.status, 500, "{case}: {r:?}");
        assert!(!r.head.contains("picloud-marker"), "{case}: {}", r.head);
        assert!(
            !r.head.to_ascii_lowercase().contains("x-injected"),
            "{case}: {}",
            r.head
        );
        assert_ne!(r.header("content-length"), Some("999"), "{case}");
        let body = r.json();
        assert_eq!(body["error"], "script_error", "{case}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("status") || message.contains("header"),
            "{case}: {message}"
        );
    }
    // The connection still works for the next request (nothing was smuggled).
    let mut s = connect(&server);
    s.write_all(&get(&format!("{path}?kind=crlf"))).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 500);
    s.write_all(&get(&format!("{path}?kind=ok"))).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_request_input_gets_a_clear_400() {
    let mut server = start(&[]);
    let id = deploy(
        &server,
        json!({ "name": "mirror", "source": "#{ q: request.query.len(), agent: request.headers[\"x-agent\"] }" }),
    )
    .await;
    deploy(
        &server,
        json!({ "name": "routed", "route": "GET /exec/items/{id}", "source": "request.params.id" }),
    )
    .await;
    let path = format!("/api/execute/{id}");
    let bad = |raw: Raw, what: &str| {
        assert_eq!(raw.status, 400, "{what}: {raw:?}");
        let body = raw.json();
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
    };

    // Query strings.
    let many = vec!["a=1"; 513].join("&");
    bad(
        exchange(&server, &get(&format!("{path}?{many}"))),
        "513 pairs",
    );
    for q in ["x=%C3", "x=%C3%28", "x=%E2%82", "%FF%FE=1", "x=%ED%A0%80"] {
        bad(exchange(&server, &get(&format!("{path}?{q}"))), q);
    }
    let r = exchange(
        &server,
        &get(&format!("{path}?{}", vec!["a=1"; 512].join("&"))),
    );
    assert_eq!(r.status, 200, "512 pairs: {r:?}");
    let r = exchange(
        &server,
        &get(&format!("{path}?big={}", "%41".repeat(15_000))),
    );
    assert_eq!(r.status, 200, "a long value: {r:?}");
    // A lone or malformed escape is kept as it is, as browsers do.
    let r = exchange(&server, &get(&format!("{path}?p=100%&q=%zz")));
    assert_eq!(r.status, 200, "{r:?}");

    // Paths of custom routes that do not decode.
    for p in ["/exec/items/%C3%28", "/exec/items/%FF", "/exec/items/%00"] {
        bad(exchange(&server, &get(p)), p);
    }
    // Bytes that are not a request target at all: hyper's own 400.
    let r = exchange(&server, b"GET /exec/items/\xff HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(r.status, 400, "{r:?}");

    // Bodies.
    let post = |ct: &str, body: &[u8]| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: [(&str, &[u8], &str); 6] = [
        ("text/plain", b"ok \xc3\x28", "non-UTF-8 body"),
        ("text/plain", b"\xed\xa0\x80", "a surrogate"),
        ("application/json", b"{\"a\": ", "cut JSON"),
        ("application/problem+json", b"nope", "+json"),
        ("application/json", "\u{feff}{}".as_bytes(), "BOM"),
        (
            "application/json",
            deep.as_bytes(),
            "nested past the parser's depth",
        ),
    ];
    for (ct, body, what) in bodies {
        bad(exchange(&server, &post(ct, body)), what);
    }
    let r = exchange(&server, &post("application/json", b"  "));
    assert_eq!(r.status, 200, "blank JSON body: {r:?}");

    // Header values that are not UTF-8 reach the script replaced, not as a 500.
    let r = exchange(
        &server,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nx-agent: caf")
            .as_bytes()
            .iter()
            .chain(b"\xe9\r\n\r\n")
            .copied()
            .collect::<Vec<u8>>()
            .as_slice(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["agent"], "caf\u{fffd}");

    assert!(server.alive());
    let r = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_sent_connections_do_not_hold_shutdown_open() {
    let server = start(&[("PICLOUD_HEADER_READ_TIMEOUT_MS", "2000")]);
    // One connection that never sent a byte, one served and idle, one
    // half-way through its request head.
    let mut silent = connect(&server);
    let mut idle = connect(&server);
    idle.write_all(&get("/healthz")).unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let mut half = connect(&server);
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .unwrap();

    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(
        status.success(),
        "a graceful stop exits 0 in time: {status:?}"
    );
    for s in [&mut silent, &mut idle, &mut half] {
        let (closed, got) = closed_within(s, LIVENESS);
        assert!(closed, "a connection outlived the server");
        assert!(
            !String::from_utf8_lossy(&got).contains(" 200 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
}
