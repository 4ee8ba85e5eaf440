//! The command line: `picloud [serve]` runs the server; the other
//! sub-commands talk to a server's admin API (`PICLOUD_URL`,
//! `PICLOUD_ADMIN_TOKEN`) or act on the local installation.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::Connection;
use crate::commands;

/// PiCloud: upload Rhai scripts, get HTTP endpoints. Every invocation runs in
/// a pre-forked, confined worker process with hard budgets.
/// The highest `PICLOUD_MAX_HEADERS`: what a worker decodes at most.
const MAX_HEADERS_CEILING: u64 = 4096;
const _: () = assert!(MAX_HEADERS_CEILING == shared::invocation::MAX_DECODED_PAIRS as u64);

#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Create or update a script from a file.
    Deploy {
        #[command(flatten)]
        args: commands::DeployArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// List scripts.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one script with its source.
    Show {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Call a script and print its response.
    Invoke {
        #[command(flatten)]
        args: commands::InvokeArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a script's recent invocations and their log lines.
    Logs {
        name: String,
        /// Keep printing new invocations as they happen.
        #[arg(short, long)]
        follow: bool,
        /// How many recent invocations to print first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// List a script's versions.
    Versions {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Make an older version current again (as a new version).
    Rollback {
        name: String,
        version: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a script and its route.
    Rm {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Operator tasks on the local installation.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The worker sandbox on this machine.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Issue a new admin token and invalidate the old one (a running server
    /// picks it up within seconds).
    ResetToken {
        /// Directory of the installation (where the new token is written).
        #[arg(long, env = "PICLOUD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long, env = "PICLOUD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Run every escape probe in a fresh confined child, per layer, and print a table.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Server settings; each also reads its environment variable.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PICLOUD_BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,
    /// Directory for the embedded database and the generated admin token.
    #[arg(long, env = "PICLOUD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "PICLOUD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The admin token; generated at first start when unset.
    #[arg(long, env = "PICLOUD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Send per-invocation stats in an `X-PiCloud-Stats` header.
    #[arg(long, env = "PICLOUD_EXPOSE_STATS", value_parser = parse_flag, default_value = "0")]
    pub expose_stats: bool,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges, comma-separated).
    #[arg(long, env = "PICLOUD_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: shared::TrustedProxies,
    /// Log format: `text` or `json`.
    #[arg(long, env = "PICLOUD_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    /// Serve the admin API and the dashboard only on this address, not on `--bind`.
    #[arg(long, env = "PICLOUD_ADMIN_BIND")]
    pub admin_bind: Option<SocketAddr>,
    /// Also serve `/metrics` without the admin token on this address (a private network).
    #[arg(long, env = "PICLOUD_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Keep invocation records (`0` keeps none; metrics and the per-invocation log event remain).
    #[arg(long, env = "PICLOUD_RECORDS", value_parser = parse_flag, default_value = "1")]
    pub records: bool,
    /// Invocation records kept per script (the newest).
    #[arg(long, env = "PICLOUD_RECORDS_KEEP", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..))]
    pub records_keep: u32,
    /// Days an invocation record is kept.
    #[arg(long, env = "PICLOUD_RECORDS_KEEP_DAYS", default_value = "7", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub records_keep_days: u32,
    /// Memory for records waiting to be written, in bytes (half stats rows, half log lines).
    #[arg(long, env = "PICLOUD_RECORDS_BUFFER_BYTES", default_value = "67108864", value_parser = clap::value_parser!(u64).range(65536..=17_179_869_184))]
    pub records_buffer_bytes: u64,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, env = "PICLOUD_SHUTDOWN_GRACE_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_grace_secs: u64,
    /// Milliseconds a client has to send a request's headers, counted from
    /// the connection's start or its previous response (so it also closes
    /// idle keep-alive connections).
    #[arg(long, env = "PICLOUD_HEADER_READ_TIMEOUT_MS", default_value = "10000", value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client has to send a request's whole body, counted from
    /// the first time the server waits for it.
    #[arg(long, env = "PICLOUD_BODY_READ_TIMEOUT_MS", default_value = "30000", value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub body_read_timeout_ms: u64,
    /// Headers one request may carry (`431` past it). At most
    /// `shared::invocation::MAX_DECODED_PAIRS`: a worker refuses a request
    /// with more header pairs than that.
    #[arg(long, env = "PICLOUD_MAX_HEADERS", default_value = "100", value_parser = clap::value_parser!(u64).range(8..=MAX_HEADERS_CEILING))]
    pub max_headers: u64,
    /// Bytes of a request's head, request line included (`431` past it).
    #[arg(long, env = "PICLOUD_MAX_HEADER_BYTES", default_value = "65536", value_parser = clap::value_parser!(u64).range(1024..=262_144))]
    pub max_header_bytes: u64,
    /// Open connections per listener; past it new ones get `503` and are closed.
    #[arg(long, env = "PICLOUD_MAX_CONNECTIONS", default_value = "1024", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Milliseconds a response write may make no progress (a client that
    /// stopped reading) before the connection is closed.
    #[arg(long, env = "PICLOUD_WRITE_TIMEOUT_MS", default_value = "30000", value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub write_timeout_ms: u64,
    /// Invocations in flight at once on the data plane; past it `503`.
    #[arg(long, env = "PICLOUD_MAX_IN_FLIGHT", default_value = "512", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_in_flight: u64,
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected 1 or 0, got `{other}`")),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        None => return crate::serve::run(cli.serve),
        Some(Command::Serve(args)) => return crate::serve::run(args),
        Some(Command::Sandbox(SandboxCommand::Check { json })) => return sandbox_check(json),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "picloud", &mut std::io::stdout());
            return Ok(());
        }
        Some(other) => other,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Deploy { args, conn } => commands::deploy(&conn, args).await,
            Command::List { conn } => commands::list(&conn).await,
            Command::Show { name, conn } => commands::show(&conn, &name).await,
            Command::Invoke { args, conn } => commands::invoke(&conn, args).await,
            Command::Logs {
                name,
                follow,
                limit,
                conn,
            } => commands::logs(&conn, &name, follow, limit).await,
            Command::Versions { name, conn } => commands::versions(&conn, &name).await,
            Command::Rollback {
                name,
                version,
                conn,
            } => commands::rollback(&conn, &name, version).await,
            Command::Rm { name, conn } => commands::remove(&conn, &name).await,
            Command::Admin(AdminCommand::ResetToken {
                data_dir,
                database_url,
            }) => reset_token(data_dir, database_url).await,
            Command::Serve(_) | Command::Sandbox(_) | Command::Completions { .. } => {
                unreachable!("handled above")
            }
        }
    })
}

async fn reset_token(data_dir: PathBuf, database_url: Option<String>) -> anyhow::Result<()> {
    let repo = manager_core::store::ScriptRepository::connect(&manager_core::store::DbConfig {
        data_dir: data_dir.clone(),
        database_url,
    })
    .await?;
    let (_, path) = manager_core::api::AdminToken::issue(&repo, &data_dir).await?;
    repo.close().await;
    println!(
        "new admin token written to {} (mode 0600); the old one no longer works",
        path.display()
    );
    if std::env::var_os("PICLOUD_ADMIN_TOKEN").is_some() {
        eprintln!(
            "note: PICLOUD_ADMIN_TOKEN is set; a server started with it keeps using that token"
        );
    }
    Ok(())
}

fn sandbox_check(json: bool) -> anyhow::Result<()> {
    let table = sandbox::confine::check();
    if json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print!("{table}");
    }
    if table.fully_blocked() {
        Ok(())
    } else {
        anyhow::bail!("the sandbox does not block every probe on this machine")
    }
}
