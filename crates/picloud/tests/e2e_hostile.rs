//! Every hostile script in `tests/fixtures/hostile/` against a real server:
//! the outcome its header asks for, the server still the same healthy
//! process, and the well-behaved control script answering `ok` promptly
//! while each hostile one runs.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests panic when they cannot proceed"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, Server, fixture};
use serde_json::Value;

/// What a hostile call must end with.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200, and the body passes a check.
    Ok(fn(&str) -> bool),
    /// An error answer with one of these `error` kinds.
    Error(&'static [&'static str]),
    /// Either a 200 passing the check or a `script_error`.
    OkOrScriptError(fn(&str) -> bool),
}

struct Case {
    file: &'static str,
    query: &'static str,
    expect: Expect,
    /// The longest it may take (the default wall budget is 5 s).
    within: Duration,
}

const LIMIT_KINDS: &[&str] = &["operation_limit", "timeout"];
const SIZE_KINDS: &[&str] = &["memory_limit", "script_error"];

fn cases() -> Vec<Case> {
    let secs = Duration::from_secs;
    let mut cases = vec![
        Case {
            file: "01-spin-forever.rhai",
            query: "",
            expect: Expect::Error(LIMIT_KINDS),
            within: secs(7),
        },
        Case {
            file: "02-spin-in-callbacks.rhai",
            query: "?v=map",
            expect: Expect::Error(LIMIT_KINDS),
            within: secs(7),
        },
        Case {
            file: "02-spin-in-callbacks.rhai",
            query: "?v=reduce",
            expect: Expect::Error(LIMIT_KINDS),
            within: secs(7),
        },
        Case {
            file: "02-spin-in-callbacks.rhai",
            query: "?v=sort",
            expect: Expect::Error(LIMIT_KINDS),
            within: secs(7),
        },
        Case {
            file: "03-one-huge-blob.rhai",
            query: "",
            expect: Expect::Error(SIZE_KINDS),
            within: secs(2),
        },
        Case {
            file: "04-string-doubling.rhai",
            query: "",
            expect: Expect::Error(SIZE_KINDS),
            within: secs(2),
        },
        Case {
            file: "05-nested-array-bomb.rhai",
            query: "",
            expect: Expect::Error(SIZE_KINDS),
            within: secs(2),
        },
        Case {
            file: "06-deep-recursion.rhai",
            query: "",
            expect: Expect::Error(&["script_error"]),
            within: secs(3),
        },
        Case {
            file: "07-log-flood.rhai",
            query: "",
            expect: Expect::Ok(|b| b == "1000"),
            within: secs(5),
        },
        Case {
            file: "08-integer-edges.rhai",
            query: "",
            expect: Expect::Ok(|b| b.contains("error")),
            within: secs(3),
        },
        Case {
            file: "09-unicode-edges.rhai",
            query: "",
            // Valid UTF-8 JSON; `crop` mutates in place and returns `()`, so one item is null.
            expect: Expect::Ok(|b| serde_json::from_str::<Vec<Option<String>>>(b).is_ok()),
            within: secs(3),
        },
        Case {
            file: "11-probe-host-functions.rhai",
            query: "",
            expect: Expect::Ok(|b| {
                let lines: Vec<String> = serde_json::from_str(b).unwrap_or_default();
                !lines.is_empty() && lines.iter().all(|l| l.ends_with("missing"))
            }),
            within: secs(3),
        },
        Case {
            file: "12-header-injection.rhai",
            query: "",
            expect: Expect::Error(&["script_error"]),
            within: secs(3),
        },
    ];
    for v in ["inconsistent", "throws", "string"] {
        cases.push(Case {
            file: "10-bad-sort-comparator.rhai",
            query: match v {
                "inconsistent" => "?v=inconsistent",
                "throws" => "?v=throws",
                _ => "?v=string",
            },
            expect: Expect::OkOrScriptError(|b| b == "2000"),
            within: secs(5),
        });
    }
    cases
}

async fn call(server: &Server, id: &str, query: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let r = server
        .client
        .get(format!("{}{query}", server.execute(id)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap(), started.elapsed())
}

/// The control script answers `ok` within a second, again and again, until `stop`.
async fn control_while(server: &Server, id: &str, stop: &tokio::sync::Notify) -> Vec<Duration> {
    let mut slowest = Vec::new();
    loop {
        let (status, body, took) = call(server, id, "").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "the control script failed"
        );
        slowest.push(took);
        tokio::select! {
            () = stop.notified() => return slowest,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_fixture_gets_its_outcome_and_the_platform_keeps_serving() {
    // Four workers: a hostile script is capped at half of them, so the control always has one.
    let mut server = Server::start_with(common::Options {
        env: vec![("PICLOUD_WORKERS".into(), "4".into())],
        ..common::Options::default()
    });
    let pid = server.pid();
    let control = server
        .deploy("control", &fixture("hostile/00-control.rhai"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut failures = Vec::new();
    for case in cases() {
        let name = case.file.trim_end_matches(".rhai").to_ascii_lowercase();
        let name = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        let id = match server
            .admin(reqwest::Method::GET, &format!("/api/admin/scripts/{name}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["id"]
            .as_str()
        {
            Some(id) => id.to_owned(),
            None => server
                .deploy(&name, &fixture(&format!("hostile/{}", case.file)))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let stop = tokio::sync::Notify::new();
        let (hostile, control_times) = tokio::join!(
            async {
                let out = call(&server, &id, case.query).await;
                stop.notify_one();
                out
            },
            control_while(&server, &control, &stop),
        );
        let (status, body, took) = hostile;
        let label = format!("{}{}", case.file, case.query);
        let kind = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        let as_expected = match case.expect {
            Expect::Ok(check) => status == 200 && check(&body),
            Expect::Error(kinds) => {
                status >= 500 && kind.as_deref().is_some_and(|k| kinds.contains(&k))
            }
            Expect::OkOrScriptError(check) => {
                (status == 200 && check(&body))
                    || (status == 500 && kind.as_deref() == Some("script_error"))
            }
        };
        if !as_expected {
            failures.push(format!(
                "{label}: got {status} {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        if took > case.within {
            failures.push(format!(
                "{label}: took {took:?}, more than {:?}",
                case.within
            ));
        }
        let slowest = control_times.iter().max().copied().unwrap_or_default();
        if slowest > Duration::from_secs(1) {
            failures.push(format!(
                "{label}: the control took {slowest:?} while it ran"
            ));
        }
        assert!(server.alive(), "the server died during {label}");
    }
    // The header-injection fixture must not have split the keep-alive stream:
    // the same client's next request is answered normally.
    let (status, body, _) = call(&server, &control, "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(server.pid(), pid);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_statuses_are_script_errors_and_valid_ones_pass() {
    let server = Server::start(Db::Sqlite);
    let id = server
        .deploy("bad-status", &fixture("hostile/13-bad-status.rhai"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // cases: [0, 99, 100, 101, 204, 304, 555, 599, 600, 999, 1000, -1, 65736, 4294967496, "200", 200.5, ()]
    let valid = [(4, 204), (5, 304), (6, 555), (7, 599)];
    for case in 0..17 {
        let (status, body, _) = call(&server, &id, &format!("?case={case}")).await;
        if let Some((_, want)) = valid.iter().find(|(c, _)| *c == case) {
            assert_eq!(status, *want, "case {case}: {body}");
            if matches!(want, 204 | 304) {
                assert!(body.is_empty(), "case {case} carries a body");
            }
        } else {
            assert_eq!(status, 500, "case {case}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], "script_error", "case {case}");
            assert!(
                v["message"].as_str().unwrap().contains("status"),
                "case {case}: {body}"
            );
        }
    }
}
