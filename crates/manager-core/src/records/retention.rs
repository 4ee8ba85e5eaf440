//! Retention: keep the newest N records per script and nothing older than
//! D days (and nothing of a deleted script), pruned in the background.
//!
//! Invariant: pruning runs off the request path, in chunked deletes (see
//! [`ScriptRepository::prune_invocations`]), once soon after start and then
//! every `prune_every`; a failed pass is logged, counted and tried again at
//! the next tick, never retried in a tight loop.

use std::time::Duration;

use tokio::sync::watch;

use super::{RecordsConfig, metric};
use crate::store::ScriptRepository;

/// The first pass waits this long, so start-up (and a restart loop) is not slowed by a big prune.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(30);

pub(super) async fn run(
    repo: ScriptRepository,
    config: RecordsConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST_PASS_AFTER.min(config.prune_every);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        wait = config.prune_every;
        prune_once(&repo, &config).await;
    }
}

/// One retention pass.
pub(super) async fn prune_once(repo: &ScriptRepository, config: &RecordsConfig) {
    let max_age = chrono::Duration::from_std(config.keep_for).unwrap_or(chrono::Duration::MAX);
    let older_than = chrono::Utc::now()
        .checked_sub_signed(max_age)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    match repo
        .prune_invocations(config.keep_per_script.max(1), older_than)
        .await
    {
        Ok(report) => {
            if report.total() > 0 {
                tracing::info!(
                    expired = report.expired,
                    excess = report.excess,
                    orphaned = report.orphaned,
                    "pruned invocation records"
                );
                metrics::counter!(metric::PRUNED).increment(report.total());
            }
        }
        Err(err) => {
            metrics::counter!(metric::DATABASE_ERRORS, "operation" => "prune_invocations")
                .increment(1);
            tracing::warn!(error = %err, "pruning invocation records failed; will retry");
        }
    }
}
