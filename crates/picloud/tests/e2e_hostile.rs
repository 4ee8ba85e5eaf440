//! Every hostile script in `tests/fixtures/hostile/` against a real server:
//! the outcome its header asks for, the server still the same healthy
//! process, and the well-behaved control script answering `ok` promptly
//! while each hostile one runs.
//!
//! Fixtures 00–13 (the shared set) have their expectations written out
//! below; from 14 on, each fixture states its own in an `// expect:` header
//! line (see the fixtures' README), and a fixture with neither fails the run.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "scenario tests panic when they cannot proceed"
)]

mod common;

use std::path::Path;
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

/// The tests here each load the machine on purpose; one at a time, so the
/// control's latency measures the platform, not the other test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_fixture_gets_its_outcome_and_the_platform_keeps_serving() {
    let _serial = ONE_AT_A_TIME.lock().await;
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
    let _serial = ONE_AT_A_TIME.lock().await;
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

// ---- fixtures that state their own expectation ------------------------------

/// One acceptable end of a fixture, from its `// expect:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// 200.
    Ok,
    /// The upload is refused with a `compile_error`.
    Refused,
    /// An error answer with this `error` kind.
    Error(String),
}

/// A fixture's header: `// expect: <a>|<b>… [body=<exact>] [has=<text>]
/// [lines=<n>] [all=<suffix>] [within=<n>s]`, and optionally `// build:
/// open=<s> mid=<s> close=<s> times=<n>` for sources too big to store (the
/// source is `open` × n, `mid`, `close` × n after the header).
#[derive(Debug)]
struct Spec {
    file: String,
    source: String,
    allowed: Vec<Allowed>,
    /// The 200 body, exactly.
    body: Option<String>,
    /// Text the answer (body or error message) contains.
    has: Option<String>,
    /// A 200 body is a JSON array of this many strings.
    lines: Option<usize>,
    /// ... each ending with this.
    all: Option<String>,
    within: Duration,
}

/// `key=value` fields split where a space is followed by `word=`.
fn fields(text: &str) -> Vec<(&str, &str)> {
    let mut cuts = vec![0];
    for (i, _) in text.match_indices(' ') {
        let rest = &text[i + 1..];
        let word = rest.split('=').next().unwrap_or_default();
        if rest.contains('=') && !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase()) {
            cuts.push(i + 1);
        }
    }
    cuts.push(text.len());
    cuts.windows(2)
        .map(|w| text[w[0]..w[1]].trim_end())
        .filter_map(|f| f.split_once('='))
        .collect()
}

fn parse_spec(file: &str, text: &str) -> Result<Spec, String> {
    let line = |prefix: &str| {
        text.lines()
            .take_while(|l| l.starts_with("//"))
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    };
    let expect = line("// expect:").ok_or_else(|| format!("{file}: no `// expect:` line"))?;
    let (outcomes, rest) = expect.split_once(' ').unwrap_or((expect, ""));
    let allowed = outcomes
        .split('|')
        .map(|o| match o {
            "ok" => Allowed::Ok,
            "refused" => Allowed::Refused,
            kind => Allowed::Error(kind.to_owned()),
        })
        .collect();
    let mut spec = Spec {
        file: file.to_owned(),
        source: text.to_owned(),
        allowed,
        body: None,
        has: None,
        lines: None,
        all: None,
        within: Duration::from_secs(5),
    };
    for (key, value) in fields(rest) {
        match key {
            "body" => spec.body = Some(value.to_owned()),
            "has" => spec.has = Some(value.to_owned()),
            "lines" => spec.lines = Some(value.parse().map_err(|e| format!("{file}: {e}"))?),
            "all" => spec.all = Some(value.to_owned()),
            "within" => {
                let secs = value.trim_end_matches('s');
                spec.within =
                    Duration::from_secs(secs.parse().map_err(|e| format!("{file}: {e}"))?);
            }
            other => return Err(format!("{file}: unknown expect field `{other}`")),
        }
    }
    if let Some(build) = line("// build:") {
        let f: std::collections::HashMap<&str, &str> = fields(build).into_iter().collect();
        let times: usize = f
            .get("times")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("{file}: `build:` needs times=<n>"))?;
        let part = |k: &str| f.get(k).copied().unwrap_or_default();
        spec.source.push_str(&part("open").repeat(times));
        spec.source.push_str(part("mid"));
        spec.source.push_str(&part("close").repeat(times));
    }
    Ok(spec)
}

/// The numbered fixtures from 14 on, in order.
fn own_fixtures() -> Vec<Spec> {
    let dir = common::workspace().join("tests/fixtures/hostile");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| Path::new(f).extension().is_some_and(|e| e == "rhai"))
        .filter(|f| {
            f.get(..2)
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 14)
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| parse_spec(f, &std::fs::read_to_string(dir.join(f)).unwrap()).unwrap())
        .collect()
}

/// What became of one fixture.
struct Ran {
    /// `None` when the upload was refused.
    status: Option<u16>,
    body: String,
    took: Duration,
}

async fn upload_and_call(server: &Server, spec: &Spec) -> Ran {
    let name = spec.file.trim_end_matches(".rhai");
    let started = Instant::now();
    let r = server
        .admin(reqwest::Method::POST, "/api/admin/scripts")
        .json(&serde_json::json!({ "name": name, "source": spec.source }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    if status != 201 {
        let refused = status == 422
            && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"] == "compile_error");
        return Ran {
            status: if refused { None } else { Some(status) },
            body,
            took: started.elapsed(),
        };
    }
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body, took) = call(server, &id, "").await;
    Ran {
        status: Some(status),
        body,
        took,
    }
}

/// Why `ran` is not what `spec` allows, if it is not.
fn verdict(spec: &Spec, ran: &Ran) -> Option<String> {
    let kind = serde_json::from_str::<Value>(&ran.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    let matched = spec.allowed.iter().find(|a| match (a, ran.status) {
        (Allowed::Refused, None) | (Allowed::Ok, Some(200)) => true,
        (Allowed::Error(k), Some(s)) => s >= 500 && kind.as_deref() == Some(k.as_str()),
        _ => false,
    });
    let got = format!(
        "got {} {}",
        ran.status
            .map_or_else(|| "refused".to_owned(), |s| s.to_string()),
        ran.body.chars().take(300).collect::<String>()
    );
    let Some(matched) = matched else {
        return Some(format!("expected one of {:?}, {got}", spec.allowed));
    };
    if let Some(has) = &spec.has
        && !ran.body.contains(has.as_str())
    {
        return Some(format!("expected the answer to contain {has:?}, {got}"));
    }
    if *matched != Allowed::Ok {
        return None;
    }
    if let Some(body) = &spec.body
        && ran.body != *body
    {
        return Some(format!("expected the body {body:?}, {got}"));
    }
    if spec.lines.is_some() || spec.all.is_some() {
        let Ok(lines) = serde_json::from_str::<Vec<String>>(&ran.body) else {
            return Some(format!("expected a JSON array of strings, {got}"));
        };
        if spec.lines.is_some_and(|n| n != lines.len()) {
            return Some(format!("expected {:?} lines, {got}", spec.lines));
        }
        if let Some(all) = &spec.all
            && !lines.iter().all(|l| l.ends_with(all.as_str()))
        {
            return Some(format!("expected every line to end with {all:?}, {got}"));
        }
    }
    None
}

#[test]
fn every_fixture_states_its_expectation() {
    let dir = common::workspace().join("tests/fixtures/hostile");
    let listed: Vec<&str> = cases().iter().map(|c| c.file).collect();
    let mut unexpected = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let is_script = Path::new(&file).extension().is_some_and(|e| e == "rhai");
        if !is_script || file.starts_with("00-") || file.starts_with("13-") {
            continue; // the control, and the status fixture with its own test
        }
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        if !listed.contains(&file.as_str()) && parse_spec(&file, &text).is_err() {
            unexpected.push(file);
        }
    }
    assert!(
        unexpected.is_empty(),
        "fixtures nobody checks: {unexpected:?}"
    );
    assert!(own_fixtures().len() >= 40);
    let spec = parse_spec(
        "x",
        "// expect: ok|script_error has=call depth lines=3 within=2s\n// build: open=( mid=1 close=) times=3\n",
    )
    .unwrap();
    assert_eq!(
        spec.allowed,
        [Allowed::Ok, Allowed::Error("script_error".into())]
    );
    assert_eq!(spec.has.as_deref(), Some("call depth"));
    assert_eq!((spec.lines, spec.within), (Some(3), Duration::from_secs(2)));
    assert!(spec.source.ends_with("\n(((1)))"));
}

#[tokio::test(flavor = "multi_thread")]
async fn fixtures_from_14_on_get_their_stated_outcome_while_the_control_keeps_answering() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Four workers, a shorter wall budget than the default so the runaway
    // fixtures end sooner; two hostile fixtures run at once, each capped at
    // half the workers, so the control always finds one free.
    let mut server = Server::start_with(common::Options {
        env: vec![
            ("PICLOUD_WORKERS".into(), "4".into()),
            ("PICLOUD_LIMIT_WALL_TIME_MS".into(), "4000".into()),
        ],
        ..common::Options::default()
    });
    let pid = server.pid();
    let control = server
        .deploy("control", &fixture("hostile/00-control.rhai"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let specs = own_fixtures();
    let mut failures = Vec::new();
    for pair in specs.chunks(2) {
        let stop = tokio::sync::Notify::new();
        let (ran, control_times) = tokio::join!(
            async {
                let ran = futures_util::future::join_all(
                    pair.iter().map(|spec| upload_and_call(&server, spec)),
                )
                .await;
                stop.notify_one();
                ran
            },
            control_while(&server, &control, &stop),
        );
        for (spec, ran) in pair.iter().zip(&ran) {
            if let Some(why) = verdict(spec, ran) {
                failures.push(format!("{}: {why}", spec.file));
            }
            if ran.took > spec.within {
                failures.push(format!(
                    "{}: took {:?}, more than {:?}",
                    spec.file, ran.took, spec.within
                ));
            }
        }
        let slowest = control_times.iter().max().copied().unwrap_or_default();
        let names: Vec<&str> = pair.iter().map(|s| s.file.as_str()).collect();
        if slowest > Duration::from_secs(2) {
            failures.push(format!("{names:?}: the control took {slowest:?} meanwhile"));
        }
        assert!(server.alive(), "the server died during {names:?}");
    }
    let (status, body, _) = call(&server, &control, "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(server.pid(), pid);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
