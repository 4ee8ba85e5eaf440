//! The simplest [`InvocationSink`]: one structured `tracing` event per
//! finished invocation. The manager's batching store replaces it where
//! records are kept; the event is useful on its own in logs.

use shared::{InvocationRecord, InvocationSink};

/// Logs each record as one `tracing` event at `info` (errors at `warn`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl InvocationSink for TracingSink {
    fn record(&self, r: InvocationRecord) {
        let s = &r.stats;
        if r.outcome.is_error() {
            tracing::warn!(
                invocation = %r.id, script = %r.script_id, version = r.script_version,
                outcome = %r.outcome, status = r.status, wall_us = s.wall_us, cpu_us = s.cpu_us,
                queue_us = s.queue_wait_us, ops = s.operations, peak_heap = s.peak_heap_bytes,
                worker = s.worker_pid, error = r.error.as_deref().unwrap_or(""),
                "invocation failed"
            );
        } else {
            tracing::info!(
                invocation = %r.id, script = %r.script_id, version = r.script_version,
                outcome = %r.outcome, status = r.status, wall_us = s.wall_us, cpu_us = s.cpu_us,
                queue_us = s.queue_wait_us, ops = s.operations, peak_heap = s.peak_heap_bytes,
                worker = s.worker_pid, "invocation"
            );
        }
    }
}
