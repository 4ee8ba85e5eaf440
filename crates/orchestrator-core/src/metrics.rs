//! What every finished invocation leaves behind besides its record: the
//! numbers (through the `metrics` facade, rendered by whoever installed a
//! recorder; without one they cost a few atomic loads) and one structured
//! `tracing` event.
//!
//! Invariant: nothing here blocks, allocates per label beyond the script's
//! name, or can fail the request.

use shared::{InvocationRecord, ScriptRef};

/// Invocations by `script` and `outcome`.
pub const INVOCATIONS: &str = "picloud_invocations_total";
/// Histograms by `script`.
pub const WALL_SECONDS: &str = "picloud_invocation_wall_seconds";
pub const CPU_SECONDS: &str = "picloud_invocation_cpu_seconds";
pub const PEAK_HEAP_BYTES: &str = "picloud_invocation_peak_heap_bytes";
/// Time spent waiting for a worker, all scripts together.
pub const QUEUE_WAIT_SECONDS: &str = "picloud_invocation_queue_wait_seconds";

/// Counts and measures one finished invocation and logs it as one event.
pub fn observe(script: &ScriptRef, record: &InvocationRecord) {
    let name = script.script.name.clone();
    let s = &record.stats;
    metrics::counter!(INVOCATIONS, "script" => name.clone(), "outcome" => record.outcome.kind())
        .increment(1);
    metrics::histogram!(WALL_SECONDS, "script" => name.clone()).record(seconds(s.wall_us));
    metrics::histogram!(CPU_SECONDS, "script" => name.clone()).record(seconds(s.cpu_us));
    metrics::histogram!(PEAK_HEAP_BYTES, "script" => name).record(sample(s.peak_heap_bytes));
    metrics::histogram!(QUEUE_WAIT_SECONDS).record(seconds(s.queue_wait_us));

    let script_name = script.script.name.as_str();
    if record.outcome.is_error() {
        tracing::warn!(
            invocation = %record.id, script = script_name, script_id = %record.script_id,
            version = record.script_version, outcome = %record.outcome, status = record.status,
            wall_us = s.wall_us, cpu_us = s.cpu_us, queue_us = s.queue_wait_us,
            ops = s.operations, peak_heap = s.peak_heap_bytes, worker = s.worker_pid,
            error = record.error.as_deref().unwrap_or(""),
            "invocation failed"
        );
    } else {
        tracing::info!(
            invocation = %record.id, script = script_name, script_id = %record.script_id,
            version = record.script_version, outcome = %record.outcome, status = record.status,
            wall_us = s.wall_us, cpu_us = s.cpu_us, queue_us = s.queue_wait_us,
            ops = s.operations, peak_heap = s.peak_heap_bytes, worker = s.worker_pid,
            "invocation"
        );
    }
}

fn seconds(us: u64) -> f64 {
    sample(us) / 1_000_000.0
}

#[allow(clippy::cast_precision_loss, reason = "histogram samples are f64")]
fn sample(v: u64) -> f64 {
    v as f64
}
