//! `docs/limits.md` holds the one limits table and the one outcome table.
//! They are generated from `limits::SPECS` and `Outcome::ALL`; this test
//! fails when the document and the code disagree. Regenerate with
//! `PICLOUD_BLESS=1 cargo test -p shared --test limits_doc`.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

use std::fmt::Write as _;
use std::path::Path;

use shared::Outcome;
use shared::limits::SPECS;

const LIMITS_BEGIN: &str = "<!-- limits-table:begin -->";
const LIMITS_END: &str = "<!-- limits-table:end -->";
const OUTCOMES_BEGIN: &str = "<!-- outcome-table:begin -->";
const OUTCOMES_END: &str = "<!-- outcome-table:end -->";

fn limits_table() -> String {
    let mut t = String::from(
        "| limit | default | operator maximum | unit | environment variable | what it bounds |\n|---|---:|---:|---|---|---|\n",
    );
    for s in SPECS {
        writeln!(
            t,
            "| `{}` | {} | {} | {} | `{}` | {} |",
            s.name, s.default, s.max, s.unit, s.env, s.doc
        )
        .unwrap();
    }
    t
}

fn outcomes_table() -> String {
    let mut t =
        String::from("| outcome | HTTP status | `error` kind | meaning |\n|---|---:|---|---|\n");
    for o in Outcome::ALL {
        let status = if *o == Outcome::Ok {
            "the script's (200 by default)".to_owned()
        } else {
            o.http_status().to_string()
        };
        let kind = if *o == Outcome::Ok {
            "—".to_owned()
        } else {
            format!("`{}`", o.kind())
        };
        writeln!(
            t,
            "| {} | {} | {} | {} |",
            o.kind(),
            status,
            kind,
            o.describe()
        )
        .unwrap();
    }
    t
}

fn splice(doc: &str, begin: &str, end: &str, table: &str) -> String {
    let start = doc.find(begin).unwrap_or_else(|| panic!("{begin} missing")) + begin.len();
    let stop = doc.find(end).unwrap_or_else(|| panic!("{end} missing"));
    format!("{}\n{}{}", &doc[..start], table, &doc[stop..])
}

#[test]
fn docs_limits_md_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/limits.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let expected = splice(&doc, LIMITS_BEGIN, LIMITS_END, &limits_table());
    let expected = splice(&expected, OUTCOMES_BEGIN, OUTCOMES_END, &outcomes_table());
    if std::env::var_os("PICLOUD_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    assert!(
        doc == expected,
        "docs/limits.md is out of date with the code; run PICLOUD_BLESS=1 cargo test -p shared --test limits_doc"
    );
}
