//! The environment variable table in `docs/operations.md` against the code,
//! so neither can drift: every `PICLOUD_*` variable the code reads has a
//! row, every row names a variable the code reads, and the defaults the
//! table states are the code's.
//!
//! Where the names come from:
//! - the command line: `picloud <command> --help` for every command (clap
//!   prints each option's `[env: NAME]` and `[default: VALUE]`), so a new
//!   `serve` option with `env = "PICLOUD_..."` is picked up by itself;
//! - the worker pool: the names `sandbox::PoolConfig::from_lookup` asks for;
//! - the limits: the names `shared::LimitsConfig::from_lookup` asks for
//!   (one row covers them all; `docs/limits.md`, generated from the same
//!   table, lists each);
//! - and, to catch a variable read any other way, every `"PICLOUD_..."`
//!   string literal in the crates' sources.
//!
//! Also: the packaging files (Dockerfile, compose, `.env.example`, the
//! systemd unit, the Caddyfiles) name no variable that nothing reads, and
//! the image's `HEALTHCHECK` command works against a real server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one row that stands for every `PICLOUD_LIMIT_*` variable.
const LIMITS_ROW: &str = "PICLOUD_LIMIT_<NAME>";
const LIMITS_PREFIX: &str = "PICLOUD_LIMIT_";

/// A row of the table: the variable and its default cell.
#[derive(Debug)]
struct Row {
    default: String,
}

/// The rows of the table under `## Environment variables`.
fn doc_rows() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(common::workspace().join("docs/operations.md")).unwrap();
    let section = text
        .split("\n## Environment variables")
        .nth(1)
        .expect("docs/operations.md has a `## Environment variables` section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(
            cells.len(),
            3,
            "a row has variable | default | meaning: {line}"
        );
        let names: Vec<&str> = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.starts_with("PICLOUD_"))
            .collect();
        let name = match names.as_slice() {
            [one] => (*one).to_owned(),
            [a, b] if *a == LIMITS_ROW && *b == format!("{LIMITS_ROW}_MAX") => LIMITS_ROW.into(),
            _ => panic!("one variable per row (only the limits row has two): {line}"),
        };
        let previous = rows.insert(
            name.clone(),
            Row {
                default: cells[1].to_owned(),
            },
        );
        assert!(previous.is_none(), "{name} has two rows");
    }
    assert!(!rows.is_empty(), "the environment variable table is empty");
    rows
}

/// `picloud <args> --help`, with no `PICLOUD_*` in the environment (clap
/// would print their values).
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "picloud {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Every `[env: NAME]` of every command's help, with its `[default: V]` if any.
fn cli_variables() -> BTreeMap<String, Option<String>> {
    let mut found = BTreeMap::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        for rest in text.split("[env: ").skip(1) {
            let name = rest.split(['=', ']']).next().unwrap().to_owned();
            let after = rest.split_once(']').map_or("", |(_, a)| a);
            let default = after
                .strip_prefix(" [default: ")
                .and_then(|d| d.split_once(']'))
                .map(|(d, _)| d.to_owned());
            if let Some(earlier) = found.insert(name.clone(), default.clone()) {
                assert_eq!(
                    earlier, default,
                    "{name} has two defaults on the command line"
                );
            }
        }
        if let Some(commands) = text.split("\nCommands:\n").nth(1) {
            for line in commands.lines().take_while(|l| l.starts_with("  ")) {
                let command = line.split_whitespace().next().unwrap();
                if command != "help" {
                    let mut sub = path.clone();
                    sub.push(command.to_owned());
                    pending.push(sub);
                }
            }
        }
    }
    assert!(
        found.contains_key("PICLOUD_BIND"),
        "the help output changed shape: {found:?}"
    );
    found
}

/// The names `lookup`-style readers ask for.
fn asked_for(read: impl FnOnce(&dyn Fn(&str) -> Option<String>)) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    read(&|name: &str| {
        asked.borrow_mut().insert(name.to_owned());
        None
    });
    asked.into_inner()
}

fn pool_config(pairs: &[(&str, &str)]) -> sandbox::PoolConfig {
    sandbox::PoolConfig::from_lookup(PathBuf::from("picloud"), |k| {
        pairs
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

/// The `PICLOUD_*` names in `text`; with `quoted`, only whole string
/// literals (`"PICLOUD_LIMIT_"`, a prefix the limits table completes, is
/// none). A bare prefix (`PICLOUD_*` in prose) is never a name.
fn picloud_names(text: &str, quoted: bool) -> Vec<String> {
    let marker = if quoted { "\"PICLOUD_" } else { "PICLOUD_" };
    text.split(marker)
        .skip(1)
        .filter_map(|rest| {
            let tail: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let whole = !quoted || rest[tail.len()..].starts_with('"');
            (whole && !tail.is_empty() && !tail.ends_with('_')).then(|| format!("PICLOUD_{tail}"))
        })
        .collect()
}

/// Every `"PICLOUD_..."` literal in the sources of the crates that ship.
fn source_literals() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = common::workspace();
    let mut files = Vec::new();
    walk(&root.join("sandbox/src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        names.extend(picloud_names(&text, true));
    }
    names
}

#[test]
fn every_variable_the_code_reads_is_in_the_table_and_no_other() {
    let rows = doc_rows();
    let cli = cli_variables();
    let pool = asked_for(|lookup| {
        let _ = sandbox::PoolConfig::from_lookup(PathBuf::from("picloud"), lookup);
    });
    let limits = asked_for(|lookup| {
        let _ = shared::LimitsConfig::from_lookup(lookup);
    });
    assert!(!limits.is_empty() && !pool.is_empty());

    let mut code: BTreeSet<String> = cli.keys().cloned().collect();
    code.extend(pool.iter().cloned());
    code.extend(source_literals());
    // The limits are one row, and docs/limits.md lists each.
    let limits_doc = std::fs::read_to_string(common::workspace().join("docs/limits.md")).unwrap();
    for name in limits.iter().chain(code.iter()) {
        if name.starts_with(LIMITS_PREFIX) {
            assert!(
                limits_doc.contains(&format!("`{}`", name.trim_end_matches("_MAX"))),
                "{name} is not in docs/limits.md (regenerate it from shared::limits::SPECS)"
            );
        }
    }
    code.retain(|n| !n.starts_with(LIMITS_PREFIX));
    code.insert(LIMITS_ROW.into());

    let documented: BTreeSet<String> = rows.keys().cloned().collect();
    let missing: Vec<&String> = code.difference(&documented).collect();
    let extra: Vec<&String> = documented.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/operations.md's environment variable table is out of date:\n  \
         read by the code but not in the table: {missing:?}\n  \
         in the table but read nowhere: {extra:?}"
    );
}

/// A default cell that is exactly one `` `value` `` states a value the code must have.
fn literal(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

#[test]
fn the_defaults_in_the_table_are_the_code_s() {
    let rows = doc_rows();
    let mut checked = 0;

    // The command line's: what clap prints.
    for (name, default) in cli_variables() {
        let Some(row) = rows.get(&name) else { continue };
        match default.as_deref() {
            Some("\"\"") => assert!(
                row.default.starts_with("empty"),
                "{name}: the code's default is empty, the table says {}",
                row.default
            ),
            Some(value) => assert_eq!(
                literal(&row.default),
                Some(value),
                "{name}: the code's default is `{value}`, the table says {}",
                row.default
            ),
            None => assert!(
                literal(&row.default).is_none(),
                "{name} has no default in the code, the table says {}",
                row.default
            ),
        }
        checked += 1;
    }

    // The pool's: setting a variable to the default the table states
    // changes nothing.
    let pool = asked_for(|lookup| {
        let _ = sandbox::PoolConfig::from_lookup(PathBuf::from("picloud"), lookup);
    });
    let unset = pool_config(&[]);
    for name in pool.iter().filter(|n| !n.starts_with(LIMITS_PREFIX)) {
        let Some(value) = rows.get(name).and_then(|r| literal(&r.default)) else {
            continue;
        };
        assert_eq!(
            pool_config(&[(name, value)]),
            unset,
            "{name}={value} (the table's default) is not the pool's default"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} defaults were checked");
}

/// Names the packaging files use that only Caddy reads (its Caddyfiles'
/// `{$NAME}` placeholders); every other `PICLOUD_*` there is PiCloud's.
const CADDY_ONLY: [&str; 2] = ["PICLOUD_DOMAIN", "PICLOUD_UPSTREAM"];

/// A misspelt variable in the Dockerfile, the compose file, `.env.example`,
/// the systemd unit or a Caddyfile would be silently ignored: each one they
/// name must be in the table (or be one of Caddy's own).
#[test]
fn the_packaging_files_name_only_real_variables() {
    let rows = doc_rows();
    let root = common::workspace();
    let mut files: Vec<PathBuf> = [
        "docker/Dockerfile",
        "docker-compose.yml",
        ".env.example",
        "deploy/picloud.service",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    for entry in std::fs::read_dir(root.join("caddy")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let limits_doc = std::fs::read_to_string(root.join("docs/limits.md")).unwrap();
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in picloud_names(&text, false) {
            seen += 1;
            if name.starts_with(LIMITS_PREFIX) {
                assert!(
                    limits_doc.contains(&format!("`{}`", name.trim_end_matches("_MAX"))),
                    "{}: {name} is no limit",
                    file.display()
                );
            } else {
                assert!(
                    rows.contains_key(&name) || CADDY_ONLY.contains(&name.as_str()),
                    "{}: {name} is read by nothing",
                    file.display()
                );
            }
        }
    }
    assert!(seen > 20, "only {seen} names found");
}

/// The image's HEALTHCHECK command, run by bash as Docker would, against a
/// real server: healthy while it answers, unhealthy once it is gone.
#[test]
fn the_image_health_check_asks_the_server() {
    let dockerfile =
        std::fs::read_to_string(common::workspace().join("docker/Dockerfile")).unwrap();
    let exec_form = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.split_once("CMD "))
        .map(|(_, cmd)| cmd.lines().next().unwrap())
        .expect("the Dockerfile has a HEALTHCHECK ... CMD [...]");
    let argv: Vec<String> = serde_json::from_str(exec_form).unwrap();
    assert_eq!(argv[..2], ["bash", "-c"], "{argv:?}");

    let server = common::Server::start_with(common::Options::default());
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let check = || {
        Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PICLOUD_BIND", format!("0.0.0.0:{port}"))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(check(), "healthy while the server runs");
    let _ = server.stop();
    assert!(!check(), "unhealthy once it is gone");
}

/// Caddy drops an idle upstream connection before PiCloud's idle limit
/// (the header read timeout) would, or a request could meet a connection
/// that PiCloud is closing.
#[test]
fn caddy_s_upstream_keepalive_is_shorter_than_picloud_s_idle_limit() {
    let idle_ms: u64 = cli_variables()["PICLOUD_HEADER_READ_TIMEOUT_MS"]
        .as_deref()
        .expect("the header read timeout has a default")
        .parse()
        .unwrap();
    for file in ["caddy/Caddyfile", "caddy/Caddyfile.prod"] {
        let text = std::fs::read_to_string(common::workspace().join(file)).unwrap();
        let proxies = text.matches("reverse_proxy ").count();
        let keepalives: Vec<u64> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("keepalive "))
            .map(|v| {
                v.trim()
                    .strip_suffix('s')
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{file}: keepalive `{v}` is not whole seconds"))
            })
            .collect();
        assert_eq!(
            keepalives.len(),
            proxies,
            "{file}: a keepalive per reverse_proxy"
        );
        for seconds in keepalives {
            assert!(
                seconds * 1000 < idle_ms,
                "{file}: keepalive {seconds}s is not below PiCloud's {idle_ms} ms"
            );
        }
    }
}
