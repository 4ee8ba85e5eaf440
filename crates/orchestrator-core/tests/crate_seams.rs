//! The crate seams of the design, enforced from `cargo metadata`:
//! - `orchestrator-core` reaches the other services only through `shared`;
//! - only `manager-core` talks to a database;
//! - `executor-core` has no database and no network stack of its own.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

struct Graph {
    /// package id → (name, normal dependency ids)
    nodes: HashMap<String, (String, Vec<String>)>,
    by_name: HashMap<String, String>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names: HashMap<String, String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut nodes = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                // Only what ships: normal dependencies, not dev or build ones.
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        nodes.insert(id.clone(), (names[&id].clone(), deps));
    }
    let by_name = names.into_iter().map(|(id, name)| (name, id)).collect();
    Graph { nodes, by_name }
}

impl Graph {
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.by_name[name].clone()];
        while let Some(id) = stack.pop() {
            for dep in &self.nodes[&id].1 {
                if seen.insert(self.nodes[dep].0.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    }
}

#[test]
fn orchestrator_core_reaches_other_services_only_through_shared() {
    let deps = graph().closure("orchestrator-core");
    assert!(deps.contains("shared"));
    for forbidden in ["executor-core", "sandbox", "manager-core", "rhai", "sqlx"] {
        assert!(
            !deps.contains(forbidden),
            "orchestrator-core depends on {forbidden}"
        );
    }
}

#[test]
fn only_manager_core_talks_to_a_database() {
    let g = graph();
    for krate in ["shared", "executor-core", "orchestrator-core", "sandbox"] {
        let deps = g.closure(krate);
        for db in [
            "sqlx",
            "sqlx-core",
            "tokio-postgres",
            "rusqlite",
            "libsqlite3-sys",
        ] {
            assert!(!deps.contains(db), "{krate} depends on {db}");
        }
    }
    assert!(g.closure("manager-core").contains("sqlx"));
}

#[test]
fn executor_core_has_no_network_stack() {
    let deps = graph().closure("executor-core");
    for net in ["hyper", "axum", "reqwest"] {
        assert!(!deps.contains(net), "executor-core depends on {net}");
    }
}
