//! `picloud-executor`: the compute service (the pool of confined Rhai workers) as its own process, for cluster mode.
//!
//! Cluster mode needs network implementations of the `shared` traits, which
//! do not exist yet. Until they do, this binary says so and exits non-zero
//! rather than pretending to serve.

use std::process::ExitCode;

use clap::Parser;

/// PiCloud's executor for cluster mode: the compute service (the pool of confined Rhai workers).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    eprintln!(
        "picloud-executor: cluster mode is not available yet; run `picloud` for the all-in-one server"
    );
    ExitCode::FAILURE
}
