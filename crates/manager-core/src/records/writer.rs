//! The batch writer: drains the buffer into the database, one multi-row
//! insert per batch.
//!
//! Invariants: a batch's bytes are released only after its insert finished
//! (written or given up on), so the buffer's bound covers records in flight.
//! While the database is unavailable the same batch is retried with backoff
//! and new records queue behind it (shedding and dropping, counted, once the
//! buffer is full). A batch the database refuses for another reason is
//! retried row by row, so one bad row costs only itself. Once shutdown
//! began the writer drains everything queued, then returns.
//!
//! Batches hold a power of two of records (the rest waits for the next
//! round), so the databases see a handful of distinct insert statements and
//! reuse their prepared forms instead of parsing thousands of placeholders
//! for every batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shared::InvocationRecord;

use super::{Shared, metric};
use crate::store::{ScriptRepository, StoreError};

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Attempts at a batch the database refuses (not merely unavailable)
/// before it is written row by row.
const REFUSED_ATTEMPTS: u32 = 3;

pub(super) async fn run(
    shared: Arc<Shared>,
    repo: ScriptRepository,
    batch_rows: usize,
    linger: Duration,
) {
    loop {
        let queued = shared.buffer().queued();
        let closing = shared.closing.load(Ordering::SeqCst);
        if queued == 0 {
            if closing {
                return;
            }
            shared.wake.notified().await;
            continue;
        }
        if queued < batch_rows && !closing {
            // Let a batch gather: one insert per `linger`, not one per record.
            tokio::time::sleep(linger).await;
        }
        let records = {
            let mut buffer = shared.buffer();
            let size = batch_size(buffer.queued(), batch_rows);
            let batch = buffer.take(size);
            let mut in_flight = shared.in_flight();
            in_flight.clear();
            in_flight.extend(batch.iter().map(|p| p.charge));
            batch.into_iter().map(|p| p.record).collect::<Vec<_>>()
        };
        let written = write(&shared, &repo, records).await;
        let charges = std::mem::take(&mut *shared.in_flight());
        shared.buffer().release(charges);
        let count = written.len() as u64;
        shared.written.fetch_add(count, Ordering::Relaxed);
        metrics::counter!(metric::WRITTEN).increment(count);
        publish_gauges(&shared, 0);
        if shared.stream.receiver_count() > 0 {
            for record in written {
                // No subscriber left is not an error: nobody is watching.
                let _ = shared.stream.send(Arc::new(record));
            }
        }
    }
}

/// Sets the buffer gauges: records waiting (queued, plus `in_flight` in the
/// batch being written) and the bytes they hold. Called after every batch and
/// at every retry, so an outage shows as a growing backlog, not a frozen one.
fn publish_gauges(shared: &Shared, in_flight: usize) {
    let (queued, (row_bytes, log_bytes)) = {
        let buffer = shared.buffer();
        (buffer.queued(), buffer.bytes())
    };
    metrics::gauge!(metric::BUFFERED).set(as_f64(queued + in_flight));
    metrics::gauge!(metric::BUFFER_BYTES, "pool" => "rows").set(as_f64(row_bytes));
    metrics::gauge!(metric::BUFFER_BYTES, "pool" => "logs").set(as_f64(log_bytes));
}

/// The largest power of two not above `queued` or `max` (and at least 1).
fn batch_size(queued: usize, max: usize) -> usize {
    let n = queued.min(max).max(1);
    1 << n.ilog2()
}

/// Writes a batch and returns the records that reached the database.
async fn write(
    shared: &Shared,
    repo: &ScriptRepository,
    records: Vec<InvocationRecord>,
) -> Vec<InvocationRecord> {
    let mut delay = FIRST_RETRY;
    let mut refused = 0;
    loop {
        match repo.insert_invocations(&records).await {
            Ok(_) => return records,
            Err(err) => {
                metrics::counter!(metric::DATABASE_ERRORS, "operation" => "insert_invocations")
                    .increment(1);
                if matches!(err, StoreError::Unavailable(_)) {
                    if delay == FIRST_RETRY {
                        tracing::warn!(error = %err, records = records.len(),
                            "database unavailable; invocation records wait in the buffer");
                    }
                } else {
                    refused += 1;
                    tracing::warn!(error = %err, attempt = refused, "writing invocation records failed");
                    if refused >= REFUSED_ATTEMPTS {
                        return write_one_by_one(shared, repo, records).await;
                    }
                }
                publish_gauges(shared, records.len());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}

/// The last resort for a refused batch: each record alone, dropping (and
/// counting) only those the database refuses.
async fn write_one_by_one(
    shared: &Shared,
    repo: &ScriptRepository,
    records: Vec<InvocationRecord>,
) -> Vec<InvocationRecord> {
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        match repo.insert_invocations(std::slice::from_ref(&record)).await {
            Ok(_) => written.push(record),
            Err(err) => {
                metrics::counter!(metric::DATABASE_ERRORS, "operation" => "insert_invocations")
                    .increment(1);
                tracing::error!(error = %err, invocation = %record.id, script = %record.script_id,
                    "invocation record refused by the database; dropped");
                shared.buffer().count_dropped(record.script_id, 1);
                metrics::counter!(metric::DROPPED, "script" => shared.label(record.script_id))
                    .increment(1);
            }
        }
    }
    written
}

#[allow(
    clippy::cast_precision_loss,
    reason = "gauges are f64; buffer sizes are far below 2^52"
)]
fn as_f64(n: usize) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::batch_size;

    #[test]
    fn batches_are_powers_of_two_within_the_maximum() {
        assert_eq!(batch_size(0, 512), 1);
        assert_eq!(batch_size(1, 512), 1);
        assert_eq!(batch_size(250, 512), 128);
        assert_eq!(batch_size(512, 512), 512);
        assert_eq!(batch_size(100_000, 512), 512);
        assert_eq!(batch_size(100_000, 500), 256);
    }
}
