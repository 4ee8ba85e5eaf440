//! `picloud-manager`: the control plane (script storage, admin API, invocation records) as its own process, for cluster mode.
//!
//! Cluster mode needs network implementations of the `shared` traits, which
//! do not exist yet. Until they do, this binary says so and exits non-zero
//! rather than pretending to serve.

use std::process::ExitCode;

use clap::Parser;

/// PiCloud's manager for cluster mode: the control plane (script storage, admin API, invocation records).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    eprintln!(
        "picloud-manager: cluster mode is not available yet; run `picloud` for the all-in-one server"
    );
    ExitCode::FAILURE
}
