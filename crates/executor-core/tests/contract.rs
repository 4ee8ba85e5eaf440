//! The script contract: `request`, response shapes, logs, the SDK, errors.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use common::{failure, fixture, header, ok_body, query, run, run_with};
use executor_core::ScriptRuntime;
use shared::{Limits, Outcome, ScriptRequest};

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

fn eval_text(source: &str) -> String {
    ok_body(&run(source))
}

fn json_body(source: &str) -> serde_json::Value {
    let out = run(source);
    assert_eq!(header(&out, "content-type"), Some(JSON));
    serde_json::from_str(&ok_body(&out)).unwrap()
}

// ---- response shapes ------------------------------------------------------

#[test]
fn a_string_is_plain_text() {
    let out = run(r#""hello""#);
    assert_eq!(ok_body(&out), "hello");
    let response = out.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(header(&out, "content-type"), Some(TEXT));
    assert_eq!(out.stats.response_bytes, 5);
}

#[test]
fn maps_and_arrays_are_json() {
    assert_eq!(
        json_body(r#"#{ b: [1, 2.5, "x", true, ()], a: #{} }"#),
        serde_json::json!({"a": {}, "b": [1, 2.5, "x", true, null]})
    );
    assert_eq!(json_body("[1, 2]"), serde_json::json!([1, 2]));
}

#[test]
fn unit_is_204_without_body() {
    let out = run("let x = 1;");
    assert_eq!(out.outcome, Outcome::Ok);
    let response = out.response.unwrap();
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty() && response.headers.is_empty());
}

#[test]
fn scalars_are_their_text() {
    for (source, text) in [("42", "42"), ("1.5", "1.5"), ("true", "true"), ("'c'", "c")] {
        let out = run(source);
        assert_eq!(ok_body(&out), text);
        assert_eq!(header(&out, "content-type"), Some(TEXT));
    }
}

#[test]
fn a_blob_is_raw_bytes() {
    let out = run("let b = blob(3, 0xff); b");
    let response = out.response.as_ref().unwrap();
    assert_eq!(response.body, [0xff, 0xff, 0xff]);
    assert_eq!(
        header(&out, "content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn response_gives_full_control() {
    let out = run(r#"response(201, "made", #{ "X-Id": "7", "Content-Type": "text/html" })"#);
    let response = out.response.as_ref().unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.body, b"made");
    assert_eq!(header(&out, "x-id"), Some("7"));
    assert_eq!(header(&out, "content-type"), Some("text/html"));
    assert_eq!(response.headers.len(), 2);

    let out = run("response(404, #{ error: \"nope\" })");
    assert_eq!(out.response.as_ref().unwrap().status, 404);
    assert_eq!(header(&out, "content-type"), Some(JSON));
    assert_eq!(ok_body(&out), r#"{"error":"nope"}"#);

    let out = run("response(500, ())");
    let response = out.response.unwrap();
    assert!(response.body.is_empty() && response.headers.is_empty());
}

#[test]
fn no_content_statuses_drop_the_body() {
    for status in [204, 304] {
        let out = run(&format!(r#"response({status}, "ignored")"#));
        let response = out.response.unwrap();
        assert_eq!(response.status, status);
        assert!(response.body.is_empty() && response.headers.is_empty());
    }
}

#[test]
fn unconvertible_results_are_script_errors() {
    let message = failure(&run("|x| x"), Outcome::ScriptError);
    assert!(message.contains("cannot be a response body"), "{message}");
    let message = failure(&run("#{ f: |x| x }"), Outcome::ScriptError);
    assert!(message.contains("cannot be converted to JSON"), "{message}");
}

#[test]
fn exit_ends_with_a_value() {
    assert_eq!(eval_text(r#"exit("early"); "late""#), "early");
}

#[test]
fn exit_inside_native_callbacks_still_ends_with_its_value() {
    // Rhai wraps the exit in "error in call to function 'map'" when it
    // unwinds through a native function calling a closure back.
    assert_eq!(
        eval_text(r#"[1, 2].map(|x| exit("from map")); "late""#),
        "from map"
    );
    assert_eq!(
        eval_text(
            r#"[3, 1].map(|x| [x, 2].reduce(|a, b| { if b == 2 { exit(`deep ${x}`); } a + b }, 0)); "late""#
        ),
        "deep 3"
    );
    assert_eq!(
        eval_text(r#"fn f(x) { [x].filter(|y| exit(y * 2)) } f(21); "late""#),
        "42"
    );
}

// ---- request ----------------------------------------------------------------

#[test]
fn request_fields_are_visible() {
    let request = ScriptRequest {
        method: "POST".into(),
        path: "/hooks/42".into(),
        params: vec![("id".into(), "42".into())],
        query: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        headers: vec![("x-signature".into(), "abc".into())],
        body: r#"{"n": [1, 2, {"deep": true}]}"#.into(),
        body_is_json: true,
    };
    let source = r#"
        #{
            method: request.method, path: request.path, id: request.params.id,
            a: request.query.a, sig: request.headers["x-signature"],
            n: request.json.n[2].deep, body_len: request.body.len(),
        }
    "#;
    let out = run_with(source, &request, &Limits::DEFAULTS);
    let value: serde_json::Value = serde_json::from_str(&ok_body(&out)).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "method": "POST", "path": "/hooks/42", "id": "42", "a": "2",
            "sig": "abc", "n": true, "body_len": 29
        })
    );
}

#[test]
fn json_is_unit_for_other_bodies() {
    let request = ScriptRequest {
        body: "[1]".into(),
        ..ScriptRequest::default()
    };
    let out = run_with("type_of(request.json)", &request, &Limits::DEFAULTS);
    assert_eq!(ok_body(&out), "()");
}

// ---- logs ---------------------------------------------------------------------

#[test]
fn print_debug_and_log_are_captured() {
    let out = run(r#"print("p"); debug("d"); log("l"); log("WARN", 5); log(#{a: 1}); 1"#);
    assert_eq!(
        out.logs,
        ["p", "[debug] \"d\"", "l", "[warn] 5", "#{\"a\": 1}"]
    );
    assert!(!out.logs_truncated);
    assert_eq!(
        out.stats.log_bytes,
        out.logs.iter().map(|l| l.len() as u64).sum::<u64>()
    );
}

#[test]
fn an_unknown_log_level_is_an_error() {
    let message = failure(&run(r#"log("loud", "x")"#), Outcome::ScriptError);
    assert!(message.contains("unknown level"), "{message}");
}

#[test]
fn logs_are_capped_with_a_marker() {
    let limits = Limits {
        log_bytes: 10,
        ..Limits::DEFAULTS
    };
    let out = run_with(
        r#"for i in 0..5 { print("abcd") } 1"#,
        &ScriptRequest::default(),
        &limits,
    );
    assert_eq!(ok_body(&out), "1");
    assert!(out.logs_truncated);
    assert_eq!(
        out.logs,
        ["abcd", "abcd", "ab", "[log truncated: 10 bytes dropped]"]
    );
    assert_eq!(out.stats.log_bytes, 10);
}

// ---- SDK ------------------------------------------------------------------------

#[test]
fn sha256_and_hmac_match_known_vectors() {
    assert_eq!(
        eval_text(r#"sha256("abc")"#),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        eval_text("sha256(blob())"),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // RFC 4231 test case 2 (string key) and test case 1 (binary key).
    assert_eq!(
        eval_text(r#"hmac_sha256("Jefe", "what do ya want for nothing?")"#),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        eval_text(r#"hmac_sha256(blob(20, 0x0b), "Hi There")"#),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    let message = failure(&run("sha256(42)"), Outcome::ScriptError);
    assert!(message.contains("expected a string or BLOB"), "{message}");
}

#[test]
fn base64_encodes_and_decodes() {
    assert_eq!(eval_text(r#"base64_encode("hello")"#), "aGVsbG8=");
    assert_eq!(eval_text(r#"base64_decode("aGVsbG8=")"#), "hello");
    assert_eq!(eval_text(r#"base64_decode("aGVsbG8")"#), "hello");
    let blob = "let b = blob(2); b[0] = 0xfb; b[1] = 0xff; b";
    assert_eq!(eval_text(&format!("base64url_encode({{ {blob} }})")), "-_8");
    assert_eq!(eval_text(&format!("base64_encode({{ {blob} }})")), "+/8=");
    assert_eq!(eval_text(r#"base64url_decode_blob("-_8").len()"#), "2");
    let message = failure(&run(r#"base64_decode("!!!")"#), Outcome::ScriptError);
    assert!(message.contains("invalid base64"), "{message}");
    let message = failure(&run(r#"base64_decode("/w==")"#), Outcome::ScriptError);
    assert!(message.contains("not valid UTF-8"), "{message}");
    assert_eq!(eval_text(r#"base64_decode_blob("/w==")[0]"#), "255");
}

#[test]
fn hex_encodes_and_decodes() {
    assert_eq!(eval_text(r#"hex_encode("hi")"#), "6869");
    assert_eq!(eval_text(r#"hex_decode("6869")"#), "hi");
    assert_eq!(eval_text(r#"hex_decode_blob("00FF")[1]"#), "255");
    let message = failure(&run(r#"hex_decode("zz")"#), Outcome::ScriptError);
    assert!(message.contains("invalid hex"), "{message}");
}

#[test]
fn url_and_form_functions() {
    assert_eq!(
        eval_text(r#"url_encode("a b&c/é~")"#),
        "a%20b%26c%2F%C3%A9~"
    );
    assert_eq!(eval_text(r#"url_decode("a%20b%2B+")"#), "a b++");
    let message = failure(&run(r#"url_decode("%FF")"#), Outcome::ScriptError);
    assert!(message.contains("not valid UTF-8"), "{message}");
    assert_eq!(
        json_body(r#"form_decode("a=1&b=x+y&a=3&c=%C3%A9&empty=")"#),
        serde_json::json!({"a": "3", "b": "x y", "c": "é", "empty": ""})
    );
}

#[test]
fn json_functions_round_trip_safely() {
    assert_eq!(
        json_body(r#"json_parse(`{"a": [1, 2.5, null, "x"], "b": {"c": false}}`)"#),
        serde_json::json!({"a": [1, 2.5, null, "x"], "b": {"c": false}})
    );
    assert_eq!(
        eval_text(r#"json_stringify(#{ b: [1, ()], a: "q\"" })"#),
        r#"{"a":"q\"","b":[1,null]}"#
    );
    assert_eq!(eval_text("#{ k: 1 }.to_json()"), r#"{"k":1}"#);
    let message = failure(&run(r##"json_parse("#{a: 1 + 1}")"##), Outcome::ScriptError);
    assert!(message.contains("json_parse: invalid JSON"), "{message}");
    // Deeper than the JSON depth bound: an error, not a stack overflow.
    let message = failure(
        &run("let a = 1; for i in 0..200 { a = [a]; } json_stringify(a)"),
        Outcome::ScriptError,
    );
    assert!(message.contains("nested deeper"), "{message}");
}

#[test]
fn now_and_uuid() {
    let now: i64 = eval_text("now()").parse().unwrap();
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    assert!((now - system).abs() <= 5, "{now} vs {system}");

    let value = json_body("[uuid(), uuid()]");
    let (a, b) = (value[0].as_str().unwrap(), value[1].as_str().unwrap());
    assert_ne!(a, b);
    for id in [a, b] {
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    }
}

#[test]
fn unavailable_functions_say_so() {
    for (source, expected) in [
        ("sleep(1)", "sleep is not available"),
        ("sleep(0.5)", "sleep is not available"),
        (r#"parse_json("{}")"#, "use json_parse"),
        ("timestamp()", "Function not found"),
    ] {
        let message = failure(&run(source), Outcome::ScriptError);
        assert!(message.contains(expected), "{source}: {message}");
    }
}

// ---- compile ----------------------------------------------------------------------

#[test]
fn compile_errors_carry_line_and_column() {
    let mut runtime = ScriptRuntime::new();
    let err = runtime
        .compile("let x = 1;\nlet y = ;", &Limits::DEFAULTS)
        .unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), Some(9)), "{err:?}");
    assert!(!err.message.is_empty());
}

#[test]
fn eval_and_import_fail_at_compile_time() {
    let mut runtime = ScriptRuntime::new();
    for source in [r#"eval("1")"#, r#"import "fs" as fs; 1"#] {
        let err = runtime.compile(source, &Limits::DEFAULTS).unwrap_err();
        assert_eq!(
            (err.line, err.column),
            (Some(1), Some(1)),
            "{source}: {err:?}"
        );
    }
}

#[test]
fn oversized_source_is_refused_before_parsing() {
    let limits = Limits {
        source_bytes: 10,
        ..Limits::DEFAULTS
    };
    let err = ScriptRuntime::new()
        .compile("1 + 1 + 1 + 1", &limits)
        .unwrap_err();
    assert!(err.message.contains("above the limit"), "{err:?}");
    assert_eq!(err.line, None);
}

#[test]
fn runtime_errors_name_the_position() {
    let message = failure(&run("let a = [1];\na[5]"), Outcome::ScriptError);
    assert!(message.contains("line 2"), "{message}");
    let message = failure(&run("throw \"boom\""), Outcome::ScriptError);
    assert!(message.contains("boom"), "{message}");
}

// ---- isolation ----------------------------------------------------------------------

#[test]
fn nothing_leaks_between_invocations() {
    common::on_big_stack(|| {
        let mut runtime = ScriptRuntime::new();
        let limits = Limits::DEFAULTS;
        let first = runtime
            .compile(r#"let secret = "s"; print(secret); secret"#, &limits)
            .unwrap();
        let second = runtime.compile("secret", &limits).unwrap();
        let out = runtime.run(&first, &ScriptRequest::default(), &limits);
        assert_eq!(ok_body(&out), "s");
        let out = runtime.run(&second, &ScriptRequest::default(), &limits);
        assert_eq!(out.outcome, Outcome::ScriptError);
        assert!(out.logs.is_empty());
    });
}

#[test]
fn a_compiled_script_can_run_many_times() {
    common::on_big_stack(|| {
        let mut runtime = ScriptRuntime::new();
        runtime.warm_up();
        let limits = Limits::DEFAULTS;
        let script = runtime.compile("request.query.n + \"!\"", &limits).unwrap();
        for n in ["1", "2", "3"] {
            let out = runtime.run(&script, &query(&[("n", n)]), &limits);
            assert_eq!(ok_body(&out), format!("{n}!"));
        }
    });
}

// ---- hostile fixtures with a 200 or a clean error --------------------------------------

#[test]
fn fixture_00_control_answers_ok() {
    assert_eq!(ok_body(&run(&fixture("00-control.rhai"))), "ok");
}

#[test]
fn fixture_08_integer_edges_give_200_with_one_line_per_probe() {
    let out = run(&fixture("08-integer-edges.rhai"));
    let lines: Vec<String> = serde_json::from_str(&ok_body(&out)).unwrap();
    assert_eq!(lines.len(), 23);
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("{i}: ")), "{line}");
    }
}

#[test]
fn fixture_09_unicode_edges_give_valid_utf8_json() {
    let out = run(&fixture("09-unicode-edges.rhai"));
    // `ok_body` checked the body is UTF-8; it must also be a JSON array.
    let items: Vec<serde_json::Value> = serde_json::from_str(&ok_body(&out)).unwrap();
    assert!(items.len() > 60);
    // `crop` works in place and returns `()`, which the fixture pushes too.
    assert!(items.iter().all(|v| v.is_string() || v.is_null()));
}

#[test]
fn fixture_10_bad_comparators_never_crash() {
    let source = fixture("10-bad-sort-comparator.rhai");
    for variant in ["inconsistent", "throws", "string"] {
        let out = run_with(&source, &query(&[("v", variant)]), &Limits::DEFAULTS);
        match out.outcome {
            Outcome::Ok => assert_eq!(ok_body(&out), "2000", "{variant}"),
            Outcome::ScriptError => {}
            other => panic!("{variant}: {other:?} {:?}", out.error),
        }
    }
}

#[test]
fn fixture_11_every_host_probe_is_missing() {
    let out = run(&fixture("11-probe-host-functions.rhai"));
    let lines: Vec<String> = serde_json::from_str(&ok_body(&out)).unwrap();
    assert_eq!(lines.len(), 12);
    for line in lines {
        assert!(line.ends_with(": missing"), "{line}");
    }
}

#[test]
fn fixture_12_header_injection_is_an_invalid_header_error() {
    let message = failure(
        &run(&fixture("12-header-injection.rhai")),
        Outcome::ScriptError,
    );
    assert!(message.contains("invalid response header"), "{message}");
}

#[test]
fn fixture_13_statuses_are_checked() {
    let source = fixture("13-bad-status.rhai");
    // The fixture's cases, by index.
    let valid = [(4, 204), (5, 304), (6, 555), (7, 599)];
    for case in 0..17 {
        let case_text = case.to_string();
        let out = run_with(&source, &query(&[("case", &case_text)]), &Limits::DEFAULTS);
        if let Some((_, status)) = valid.iter().find(|(i, _)| *i == case) {
            assert_eq!(out.outcome, Outcome::Ok, "case {case}: {:?}", out.error);
            let response = out.response.unwrap();
            assert_eq!(response.status, *status);
            if *status == 204 || *status == 304 {
                assert!(response.body.is_empty());
            } else {
                assert_eq!(response.body, format!("case {case}").as_bytes());
            }
        } else {
            let message = failure(&out, Outcome::ScriptError);
            assert!(message.contains("invalid status"), "case {case}: {message}");
        }
    }
    // Without `case` the fixture uses 65736, which must not wrap to 200.
    let message = failure(&run(&source), Outcome::ScriptError);
    assert!(message.contains("invalid status 65736"), "{message}");
}
