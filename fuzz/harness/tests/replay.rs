//! Replays every kept fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the targets' own functions, so a
//! plain `cargo test` keeps every fixed crash fixed without libFuzzer.
//!
//! Tests run one at a time (a lock): the `ipc_frames` target measures the
//! process-wide heap counter, which another test's allocations would blur.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot proceed should panic"
)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use picloud_fuzz_harness as harness;

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every kept input of `target`: its corpus, then its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
            .collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out
}

/// Runs `run` on every kept input of `target`, naming the input that fails.
fn replay(target: &str, minimum: usize, run: impl Fn(&[u8])) {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    executor_core::heap::enable_counting(harness::script::hard_cap(&harness::input::FUZZ_LIMITS));
    let inputs = inputs(target);
    assert!(
        inputs.len() >= minimum,
        "{target}: only {} kept inputs (expected at least {minimum})",
        inputs.len()
    );
    for (path, bytes) in &inputs {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes)));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn ipc_frames() {
    replay("ipc_frames", 10, harness::ipc::frames);
}

#[test]
fn ipc_seed_frames() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for frame in harness::ipc::seed_frames() {
        harness::ipc::frames(&frame);
    }
}

#[test]
fn script() {
    replay("script", 10, harness::script::run);
}

#[test]
fn http() {
    replay("http", 5, harness::http::run);
}

#[test]
fn routes() {
    replay("routes", 5, harness::routes::run);
}

#[test]
fn admin_body() {
    replay("admin_body", 5, harness::admin::run);
}

#[test]
fn pool() {
    let target =
        harness::pool::PoolTarget::start(PathBuf::from(env!("CARGO_BIN_EXE_picloud-fuzz-zygote")));
    replay("pool", 1, |bytes| target.run(bytes));
    target.shutdown();
}

/// Writes the `ipc_frames` seeds (real encoded messages) into the corpus.
#[test]
#[ignore = "regenerates seed files; run by hand"]
fn write_ipc_seeds() {
    let dir = fuzz_dir().join("corpus/ipc_frames");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, frame) in harness::ipc::seed_frames().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), frame).unwrap();
    }
}
