//! The sandbox gate at start-up: say which confinement layers workers will
//! get, loudly, and refuse to run untrusted code with fewer than all of them
//! unless the operator opted out with `PICLOUD_ALLOW_WEAK_SANDBOX=1`.

use anyhow::bail;
use sandbox::PoolConfig;
use sandbox::confine::{ConfinementPlan, LayerStatus, PlanOptions, sandbox_report};
use serde_json::{Value, json};

/// The fd a worker's socket sits on; the plan needs it, the prediction does not depend on it.
const WORKER_SOCKET_FD: i32 = 3;

/// Checks the sandbox before the pool starts; the report is served at `/api/admin/sandbox`.
pub fn check(pool: &PoolConfig) -> anyhow::Result<Value> {
    if !pool.confine {
        if !pool.allow_weak_sandbox {
            bail!(
                "worker confinement is off (PICLOUD_CONFINE=0); refusing to run untrusted code. \
                 Set PICLOUD_ALLOW_WEAK_SANDBOX=1 to run anyway"
            );
        }
        tracing::warn!("WORKER CONFINEMENT IS OFF: scripts run with this server's privileges");
        return Ok(json!({ "confined": false, "weak": true, "layers": [] }));
    }
    let options = PlanOptions::from_lookup(|k| std::env::var(k).ok());
    let plan = ConfinementPlan::new(WORKER_SOCKET_FD, &options)?;
    let report = sandbox_report(&plan);
    for layer in &report.layers {
        let detail = layer.detail.as_deref().unwrap_or("");
        if layer.status == LayerStatus::Applied {
            tracing::info!(layer = %layer.layer, detail, "sandbox layer in force");
        } else {
            tracing::warn!(layer = %layer.layer, status = ?layer.status, detail, "SANDBOX LAYER NOT IN FORCE");
        }
    }
    if report.weak {
        if !pool.allow_weak_sandbox {
            bail!(
                "the kernel cannot give every sandbox layer (see the log above); refusing to run \
                 untrusted code. Set PICLOUD_ALLOW_WEAK_SANDBOX=1 to run anyway"
            );
        }
        tracing::warn!("running with a WEAK SANDBOX because PICLOUD_ALLOW_WEAK_SANDBOX=1");
    }
    let mut value = serde_json::to_value(&report)?;
    value["confined"] = json!(true);
    Ok(value)
}
