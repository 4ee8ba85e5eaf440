//! `picloud`: the all-in-one server (manager, orchestrator and executor in
//! one process) and its command line.

mod cli;
mod client;
mod commands;
mod dashboard;
mod data_dir;
mod front;
mod sandbox_gate;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

// The probes expose host calls to scripts; they exist for tests only.
#[cfg(all(feature = "probes", not(debug_assertions)))]
compile_error!("the `probes` feature is for tests only and must never be in a release build");

/// Counts heap bytes in workers (off, one predictable branch, in the server).
#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

fn main() -> ExitCode {
    // Before anything else: this process may be the pool's zygote.
    sandbox::run_zygote_if_requested();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}
