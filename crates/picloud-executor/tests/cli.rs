//! The split binary answers `--help` and refuses to pretend to serve.

use std::process::Command;

#[test]
fn answers_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_picloud-executor"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cluster mode"));
}

#[test]
fn without_arguments_exits_nonzero_with_one_honest_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_picloud-executor"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cluster mode is not available yet"));
}
