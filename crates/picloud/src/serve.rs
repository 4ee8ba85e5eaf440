//! `picloud serve`: wires the three services together in one process.
//!
//! The manager (repository, admin API), the orchestrator (catalog, data
//! plane) and the executor (the worker pool) meet only through the `shared`
//! traits; this function is the one place that knows all three.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use manager_core::api::{AdminState, AdminToken, AuthGuard, TokenSource};
use manager_core::records::{Records, RecordsConfig};
use manager_core::store::{DbConfig, ScriptRepository};
use orchestrator_core::{Orchestrator, OrchestratorConfig, ScriptCatalog};
use shared::{CatalogUpdates as _, ExecutorClient, InvocationSink, LimitsConfig};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::front;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    let pool_config = sandbox::PoolConfig::from_env().context("pool settings")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if pool_config.pin_workers {
        pin_async_threads(&mut runtime);
    }
    runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args, pool_config))
}

/// One async thread per usable CPU, each pinned to its own (the workers
/// are spread over the same CPUs by the zygote). A thread pins itself the
/// first time it goes idle: only the runtime's async threads park, so the
/// threads it starts for blocking work are left to float.
fn pin_async_threads(runtime: &mut tokio::runtime::Builder) {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    thread_local! {
        static PLACED: Cell<bool> = const { Cell::new(false) };
    }
    let cpus = sandbox::cpus::usable();
    if cpus.len() < 2 {
        return;
    }
    let placed = AtomicUsize::new(0);
    let threads = cpus.len();
    runtime.worker_threads(threads).on_thread_park(move || {
        if !PLACED.replace(true) {
            let index = placed.fetch_add(1, Ordering::Relaxed);
            if index < threads {
                sandbox::cpus::pin_current_thread(&cpus, index);
            }
        }
    });
}

async fn serve(args: ServeArgs, pool_config: sandbox::PoolConfig) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    let limits = LimitsConfig::from_lookup(|k| std::env::var(k).ok()).context("limits")?;
    // Refuse early, before anything is created or changed: a second server
    // on the same data directory, or an address in use.
    let _data_dir = crate::data_dir::lock(&args.data_dir)?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {} (PICLOUD_BIND or --bind)", args.bind))?;

    let repo = ScriptRepository::connect(&DbConfig {
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
    })
    .await
    .context("opening the database")?;
    tracing::info!(backend = repo.backend().as_str(), "database ready");

    let guard = admin_guard(&repo, &args).await?;

    let sandbox_report = crate::sandbox_gate::check(&pool_config)?;
    let pool = sandbox::Pool::start(pool_config)
        .await
        .context("starting the worker pool")?;
    let executor: Arc<dyn ExecutorClient> = pool.clone();

    let catalog = Arc::new(ScriptCatalog::new(limits));
    catalog.load_all(repo.list().await.context("loading scripts")?);
    tracing::info!(scripts = catalog.len(), "catalog loaded");

    let metrics = manager_core::api::metrics::install_recorder()
        .inspect_err(|e| tracing::error!(error = %e, "metrics are disabled"))
        .ok();
    let records = Records::start(repo.clone(), records_config(&args), Some(catalog.clone()));

    let orchestrator = Arc::new(Orchestrator {
        executor: Arc::clone(&executor),
        resolver: catalog.clone(),
        sink: record_sink(&records, args.records),
        health: vec![Arc::new(repo.clone())],
        config: OrchestratorConfig {
            expose_stats: args.expose_stats,
            trusted_proxies: args.trusted_proxies.clone(),
        },
        metrics: orchestrator_core::metrics::Handles::default(),
    });
    let admin = Arc::new(AdminState {
        repo: repo.clone(),
        executor,
        catalog,
        limits,
        route_writes: tokio::sync::Mutex::new(()),
        records: records.clone(),
        sandbox: sandbox_report,
        metrics,
    });
    let control_plane =
        manager_core::api::router(Arc::clone(&admin), guard).merge(crate::dashboard::router());
    let data_plane = front::limit_in_flight(
        orchestrator_core::router(orchestrator),
        usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
    );
    let front = front_config(&args);
    let listeners =
        1 + usize::from(args.admin_bind.is_some()) + usize::from(args.metrics_bind.is_some());
    front::ensure_descriptors(front.max_connections, listeners);

    // Set once SIGTERM/SIGINT arrives: every listener stops accepting.
    let (stopping, stop) = watch::channel(false);
    if let Some(bind) = args.metrics_bind {
        let metrics = manager_core::api::metrics::public_router(admin);
        serve_extra("metrics", bind, metrics, front, stop.clone()).await?;
    }
    // The admin API and dashboard on their own address, off the public one.
    let app = match args.admin_bind {
        Some(bind) => {
            serve_extra("admin", bind, control_plane, front, stop.clone()).await?;
            data_plane
        }
        None => data_plane.merge(control_plane),
    };

    let addr = listener.local_addr()?;
    announce(addr);
    let streams = records.clone();
    let serving = front::serve(listener, app, front, async move {
        signals.received().await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        // Live record streams never end by themselves; end them so the drain can.
        streams.close_streams();
        stopping.send_replace(true);
    });
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    tokio::select! {
        () = serving => {},
        () = grace_expired(stop, grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; stopping anyway");
        }
    }

    pool.shutdown().await;
    let flushed = records.shutdown().await;
    tracing::info!(
        written = flushed.written,
        lost = flushed.lost,
        "invocation records flushed"
    );
    repo.close().await;
    Ok(())
}

/// The admin token in force, behind the failure limiter; a token that is
/// not from the environment is re-read periodically, so a reset applies.
async fn admin_guard(repo: &ScriptRepository, args: &ServeArgs) -> anyhow::Result<Arc<AuthGuard>> {
    let (token, source) = AdminToken::bootstrap(repo, &args.data_dir, args.admin_token.as_deref())
        .await
        .context("setting up the admin token")?;
    let guard = Arc::new(AuthGuard::new(token, args.trusted_proxies.clone()));
    match &source {
        TokenSource::Environment => tracing::info!("admin token: from PICLOUD_ADMIN_TOKEN"),
        TokenSource::Stored => {
            tracing::info!("admin token: the one issued earlier (only its hash is stored)");
        }
        TokenSource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "admin token generated; it is in this file (mode 0600), and only its hash is stored"
        ),
    }
    if source != TokenSource::Environment {
        guard.follow_stored(repo.clone(), Duration::from_secs(2));
    }
    Ok(guard)
}

/// Serves `app` on a second address until shutdown begins, and announces
/// that address on stdout as `picloud <what> listening on http://...`.
async fn serve_extra(
    what: &'static str,
    bind: SocketAddr,
    app: axum::Router,
    front: front::FrontConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the {what} address {bind}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "picloud {what} listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, "{what} listening");
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        front::serve(listener, app, front, stopped).await;
    });
    Ok(())
}

fn front_config(args: &ServeArgs) -> front::FrontConfig {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    front::FrontConfig {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        max_headers: size(args.max_headers),
        max_header_bytes: size(args.max_header_bytes),
        max_connections: size(args.max_connections),
        write_timeout: Duration::from_millis(args.write_timeout_ms),
    }
}

fn records_config(args: &ServeArgs) -> RecordsConfig {
    RecordsConfig {
        buffer_bytes: usize::try_from(args.records_buffer_bytes).unwrap_or(usize::MAX),
        keep_per_script: args.records_keep,
        keep_for: Duration::from_secs(u64::from(args.records_keep_days) * 86_400),
        ..RecordsConfig::default()
    }
}

/// The pipeline's sink, or one that keeps nothing when records are off.
fn record_sink(records: &Records, keep: bool) -> Arc<dyn InvocationSink> {
    if keep {
        records.sink()
    } else {
        tracing::warn!("invocation records are off (PICLOUD_RECORDS=0)");
        Arc::new(manager_core::records::DiscardSink)
    }
}

/// Resolves `grace` after shutdown began: the bound on finishing in-flight work.
async fn grace_expired(mut stop: watch::Receiver<bool>, grace: Duration) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The server ended on its own; the select has its answer already.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

/// One line on stdout with the real address (the port may have been 0).
fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "picloud listening on http://{addr}");
    let _ = out.flush();
    tracing::info!(%addr, "listening");
}

/// SIGTERM and SIGINT, listened for from the start: a signal that arrives
/// before the server is ready must stop it gracefully too, not kill it with
/// the default action.
struct ShutdownSignals {
    term: Signal,
    int: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
