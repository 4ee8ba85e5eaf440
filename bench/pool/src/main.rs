//! `picloud-bench`: the executor-pool benchmark's own processes. Driven by
//! `bench/pool/run`; every sub-command is usable on its own.
//!
//! - `serve-in-process`: the baseline, scripts on threads of one process.
//! - `serve-fork-exec`: one process per request (`run-once`), CGI style.
//! - `probe`: fork-to-ready, the IPC round trip and idle worker memory of
//!   the real pool, printed as one JSON object.
//!
//! The binary hosts the pool's zygote, so it installs the counting allocator
//! like `picloud` does (off in every multi-threaded process, on in workers).

mod http;
mod once;
mod probe;
mod procfs;
mod stats;
mod workload;

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The in-process baseline: axum and a cached AST on script threads.
    ServeInProcess {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Script threads (the pool's worker count, for a fair comparison).
        #[arg(long, default_value_t = NonZeroUsize::MIN.saturating_add(1))]
        threads: NonZeroUsize,
        #[arg(long, value_enum, default_value = "minimal")]
        kind: http::Baseline,
    },
    /// One re-executed process per request.
    ServeForkExec {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Each child confines itself as a pool worker is confined (every
        /// layer) before it compiles and runs the script.
        #[arg(long)]
        confine: bool,
    },
    /// One request in a fresh process (the fork+exec server's child).
    #[command(hide = true)]
    RunOnce {
        workload: String,
        #[arg(long)]
        confine: bool,
    },
    /// The pool's fork-to-ready time, IPC round trip and worker memory.
    Probe(probe::ProbeArgs),
}

fn main() -> anyhow::Result<()> {
    // Before anything else: this process may be the pool's zygote.
    sandbox::run_zygote_if_requested();
    let cli = Cli::parse();
    if let Command::RunOnce { workload, confine } = &cli.command {
        return once::run(workload, *confine);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::ServeInProcess {
                bind,
                threads,
                kind,
            } => http::serve_in_process(bind, threads, kind).await,
            Command::ServeForkExec { bind, confine } => http::serve_fork_exec(bind, confine).await,
            Command::RunOnce { .. } => unreachable!("handled above"),
            Command::Probe(args) => {
                let report = probe::run(&args).await?;
                println!("{report}");
                Ok(())
            }
        }
    })
}
