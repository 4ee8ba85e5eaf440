//! The record pipeline: every finished invocation, kept.
//!
//! ```text
//! orchestrator ──record()──▶ RecordBuffer ──batches──▶ writer ──INSERT──▶ database
//!   (never waits)            (bytes, fair)               │
//!                                                         └──▶ live stream (SSE)
//!                                 retention task ──DELETE (chunks)──▶ database
//! ```
//!
//! Invariants:
//! - [`RecordSink::record`] never waits for the database and never fails the
//!   request: it takes a short lock, admits or sheds (see [`buffer`]), and
//!   wakes the writer.
//! - Fields a client or a worker controls are cut to fixed lengths before
//!   they are buffered, so every record's stats row is small and bounded.
//! - The writer writes one multi-row insert per batch, retries while the
//!   database is away (the buffer bounds what waits meanwhile), and frees a
//!   batch's bytes only after it is written.
//! - A record reaches the live stream only once it is in the database.
//! - [`Records::shutdown`] writes out everything buffered (bounded by
//!   [`RecordsConfig::flush_timeout`]); whatever it could not write is counted
//!   and reported, never silently lost.

pub mod buffer;
mod retention;
pub mod stats;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use shared::{InvocationRecord, InvocationSink, ScriptId, ScriptResolver};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::store::ScriptRepository;
pub use buffer::{Admission, Drops};

/// Longest kept request path, error message, route pattern, method and
/// client address; longer ones are cut (at a character boundary).
const MAX_PATH: usize = 2048;
const MAX_ERROR: usize = 2048;
const MAX_ROUTE: usize = 1024;
const MAX_METHOD: usize = 32;
const MAX_CLIENT: usize = 64;
/// Records the live stream holds for a slow subscriber before it lags.
const STREAM_CAPACITY: usize = 4096;

/// Metric names of the pipeline.
pub mod metric {
    pub const DROPPED: &str = "picloud_records_dropped_total";
    pub const SHED_LINES: &str = "picloud_record_log_lines_shed_total";
    pub const WRITTEN: &str = "picloud_records_written_total";
    pub const BUFFERED: &str = "picloud_records_buffered";
    pub const BUFFER_BYTES: &str = "picloud_records_buffer_bytes";
    pub const PRUNED: &str = "picloud_records_pruned_total";
    pub const DATABASE_ERRORS: &str = "picloud_database_errors_total";
}

/// How records are buffered, written and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsConfig {
    /// Memory for records waiting to be written: half for stats rows, half
    /// for log lines.
    pub buffer_bytes: usize,
    /// Most records per insert (batches are powers of two up to this). A
    /// batch is written in one burst of the writer's CPU, which the data
    /// plane's requests wait behind: 256 rows kept the hello benchmark's
    /// p99 near 2 ms where 512 let it reach 3.5 ms, and smaller batches
    /// spend more on commits than they save (`docs/performance.md`).
    pub batch_rows: usize,
    /// How long the writer waits for a batch to fill before writing what it has.
    pub linger: Duration,
    /// Keep the newest this many records of each script.
    pub keep_per_script: u32,
    /// Keep nothing older than this.
    pub keep_for: Duration,
    /// How often retention runs.
    pub prune_every: Duration,
    /// How long [`Records::shutdown`] may spend writing what is buffered.
    pub flush_timeout: Duration,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            buffer_bytes: 64 * 1024 * 1024,
            batch_rows: 256,
            linger: Duration::from_millis(50),
            keep_per_script: 10_000,
            keep_for: Duration::from_hours(7 * 24),
            prune_every: Duration::from_mins(1),
            flush_timeout: Duration::from_secs(30),
        }
    }
}

/// What [`Records::shutdown`] managed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records written since the pipeline started.
    pub written: u64,
    /// Records still buffered when the flush gave up (now counted as dropped).
    pub lost: u64,
}

/// State the sink, the writer and the API share.
struct Shared {
    buffer: Mutex<buffer::RecordBuffer>,
    /// Wakes the writer: a record arrived or shutdown began.
    wake: Notify,
    /// Set once shutdown began: the writer drains and exits.
    closing: AtomicBool,
    /// Set once the writer is gone: a record arriving now can only be counted.
    finished: AtomicBool,
    written: std::sync::atomic::AtomicU64,
    /// What the batch being written was charged (to count it if abandoned).
    in_flight: Mutex<Vec<buffer::Charge>>,
    stream: broadcast::Sender<Arc<InvocationRecord>>,
    /// Ends live streams (they would otherwise hold graceful shutdown open).
    streams_open: watch::Sender<bool>,
    names: Option<Arc<dyn ScriptResolver>>,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, buffer::RecordBuffer> {
        // A panic while holding the lock leaves consistent counters (every
        // update is a few additions); keep serving rather than cascade.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_flight(&self) -> MutexGuard<'_, Vec<buffer::Charge>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A script's name for metric labels (its id when it is unknown).
    fn label(&self, script_id: ScriptId) -> String {
        self.names
            .as_ref()
            .and_then(|n| n.by_id(script_id))
            .map_or_else(|| script_id.to_string(), |s| s.script.name.clone())
    }
}

/// The running pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Option<Tasks>>>,
    config: Arc<RecordsConfig>,
}

struct Tasks {
    writer: JoinHandle<()>,
    retention: JoinHandle<()>,
    stop_retention: watch::Sender<bool>,
}

impl Records {
    /// Starts the writer and retention tasks on the current Tokio runtime.
    /// `names` (the catalog) labels per-script metrics with script names.
    pub fn start(
        repo: ScriptRepository,
        config: RecordsConfig,
        names: Option<Arc<dyn ScriptResolver>>,
    ) -> Self {
        let row_bytes = config.buffer_bytes / 2;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(buffer::RecordBuffer::new(
                row_bytes,
                config.buffer_bytes - row_bytes,
            )),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            written: std::sync::atomic::AtomicU64::new(0),
            in_flight: Mutex::new(Vec::new()),
            stream: broadcast::channel(STREAM_CAPACITY).0,
            streams_open: watch::channel(true).0,
            names,
        });
        // Present from the start, so a dashboard sees 0 rather than nothing.
        for operation in ["insert_invocations", "prune_invocations"] {
            metrics::counter!(metric::DATABASE_ERRORS, "operation" => operation).increment(0);
        }
        metrics::counter!(metric::WRITTEN).increment(0);
        let writer = tokio::spawn(writer::run(
            Arc::clone(&shared),
            repo.clone(),
            config.batch_rows.max(1),
            config.linger,
        ));
        let (stop_retention, stopped) = watch::channel(false);
        let retention = tokio::spawn(retention::run(repo, config.clone(), stopped));
        Self {
            shared,
            tasks: Arc::new(Mutex::new(Some(Tasks {
                writer,
                retention,
                stop_retention,
            }))),
            config: Arc::new(config),
        }
    }

    /// The sink the orchestrator hands records to.
    pub fn sink(&self) -> Arc<dyn InvocationSink> {
        Arc::new(RecordSink {
            shared: Arc::clone(&self.shared),
        })
    }

    /// New records of every script as they are written.
    pub fn subscribe(&self) -> RecordSubscription {
        RecordSubscription {
            records: self.shared.stream.subscribe(),
            open: self.shared.streams_open.subscribe(),
        }
    }

    /// What a script lost to the pipeline since the server started.
    pub fn drops(&self, script_id: ScriptId) -> Drops {
        self.shared.buffer().drops(script_id)
    }

    /// Records written since the pipeline started.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Records waiting to be written, the batch being written included.
    pub fn pending(&self) -> usize {
        self.shared.buffer().queued() + self.shared.in_flight().len()
    }

    /// Ends every live stream; call when the server stops accepting.
    pub fn close_streams(&self) {
        self.shared.streams_open.send_replace(false);
    }

    /// Stops retention, writes out every buffered record and stops the
    /// writer. Bounded by the configured flush timeout; safe to call twice.
    pub async fn shutdown(&self) -> FlushReport {
        self.close_streams();
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(tasks) = tasks else {
            return FlushReport {
                written: self.written(),
                lost: 0,
            };
        };
        tasks.stop_retention.send_replace(true);
        let mut writer = tasks.writer;
        let finished = tokio::time::timeout(self.config.flush_timeout, &mut writer).await;
        let lost = if finished.is_ok() {
            0
        } else {
            writer.abort();
            let _ = writer.await;
            self.abandon_buffered()
        };
        {
            let _buffer = self.shared.buffer();
            self.shared.finished.store(true, Ordering::SeqCst);
        }
        // A record admitted after the writer's last look has no writer left.
        let lost = lost + self.abandon_buffered();
        let _ = tasks.retention.await;
        let report = FlushReport {
            written: self.written(),
            lost,
        };
        if lost > 0 {
            tracing::error!(lost, "records could not be written before shutdown");
        }
        report
    }

    /// Counts everything still buffered or in flight as dropped, per script.
    fn abandon_buffered(&self) -> u64 {
        let mut charges: Vec<buffer::Charge> = std::mem::take(&mut *self.shared.in_flight());
        let mut buffer = self.shared.buffer();
        charges.extend(buffer.take(usize::MAX).into_iter().map(|p| p.charge));
        for c in &charges {
            buffer.count_dropped(c.script_id, 1);
            metrics::counter!(metric::DROPPED, "script" => self.shared.label(c.script_id))
                .increment(1);
        }
        buffer.release(charges.iter().copied());
        charges.len() as u64
    }
}

/// The [`InvocationSink`] of the all-in-one binary.
pub struct RecordSink {
    shared: Arc<Shared>,
}

impl InvocationSink for RecordSink {
    fn record(&self, mut record: InvocationRecord) {
        let script_id = record.script_id;
        cap_fields(&mut record);
        let admission = {
            let mut buffer = self.shared.buffer();
            // Checked under the lock `shutdown` sets it under: nothing slips between.
            if self.shared.finished.load(Ordering::SeqCst) {
                buffer.count_dropped(script_id, 1);
                None
            } else {
                Some(buffer.admit(record))
            }
        };
        match admission {
            Some(Admission::Kept) => {}
            Some(Admission::Shed { lines }) => {
                metrics::counter!(metric::SHED_LINES, "script" => self.shared.label(script_id))
                    .increment(u64::from(lines));
            }
            Some(Admission::Dropped) | None => {
                let reason = if admission.is_none() {
                    "arrived after the final flush"
                } else {
                    "record buffer full"
                };
                tracing::warn!(script = %script_id, reason, "invocation record dropped");
                metrics::counter!(metric::DROPPED, "script" => self.shared.label(script_id))
                    .increment(1);
                return;
            }
        }
        self.shared.wake.notify_one();
    }
}

/// A sink that keeps nothing: for operators who turn record keeping off
/// (and for measuring what keeping records costs).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardSink;

impl InvocationSink for DiscardSink {
    fn record(&self, _record: InvocationRecord) {}
}

/// Cuts what a client or a worker controls to fixed lengths, and the start
/// time to the microseconds the database keeps (so a streamed record equals
/// the stored one).
fn cap_fields(r: &mut InvocationRecord) {
    if let Some(micros) = chrono::DateTime::from_timestamp_micros(r.started_at.timestamp_micros()) {
        r.started_at = micros;
    }
    cut(&mut r.path, MAX_PATH);
    cut(&mut r.method, MAX_METHOD);
    if let Some(e) = r.error.as_mut() {
        cut(e, MAX_ERROR);
    }
    if let Some(route) = r.route.as_mut() {
        cut(route, MAX_ROUTE);
    }
    if let Some(c) = r.client_addr.as_mut() {
        cut(c, MAX_CLIENT);
    }
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// One subscriber's view of the live stream.
pub struct RecordSubscription {
    records: broadcast::Receiver<Arc<InvocationRecord>>,
    open: watch::Receiver<bool>,
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Record(Arc<InvocationRecord>),
    /// The subscriber fell behind and missed this many records (of any script).
    Lagged(u64),
}

impl RecordSubscription {
    /// The next record written, or `None` once the server is shutting down.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if !*self.open.borrow() {
            return None;
        }
        tokio::select! {
            received = self.records.recv() => match received {
                Ok(record) => Some(StreamItem::Record(record)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(StreamItem::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.open.wait_for(|open| !*open) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        let mut s = "aé".repeat(10);
        cut(&mut s, 4);
        assert_eq!(s, "aéa");
        let mut short = "abc".to_owned();
        cut(&mut short, 10);
        assert_eq!(short, "abc");
    }

    #[test]
    fn hostile_fields_are_capped() {
        let mut r = InvocationRecord {
            id: shared::InvocationId::new(),
            script_id: ScriptId::new(),
            script_version: 1,
            route: Some("r".repeat(10_000)),
            method: "M".repeat(10_000),
            path: "/".repeat(100_000),
            started_at: chrono::Utc::now(),
            status: 500,
            outcome: shared::Outcome::ScriptError,
            error: Some("e".repeat(1_000_000)),
            stats: shared::InvocationStats::default(),
            logs: Vec::new(),
            logs_truncated: false,
            logs_shed: 0,
            client_addr: Some("c".repeat(1000)),
        };
        cap_fields(&mut r);
        assert_eq!(r.path.len(), MAX_PATH);
        assert_eq!(r.method.len(), MAX_METHOD);
        assert_eq!(r.error.as_ref().map(String::len), Some(MAX_ERROR));
        assert_eq!(r.route.as_ref().map(String::len), Some(MAX_ROUTE));
        assert_eq!(r.client_addr.as_ref().map(String::len), Some(MAX_CLIENT));
        assert!(buffer::row_cost(&r) < 8 * 1024, "a stats row stays small");
    }
}
