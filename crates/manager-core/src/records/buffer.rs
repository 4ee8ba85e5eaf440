//! The record buffer: where finished invocations wait for the batch writer.
//!
//! Invariants:
//! - Memory is bounded in bytes, in two pools: one for the stats rows (the
//!   record without its log lines) and one for log lines. Log lines never
//!   take room a stats row could use, so under pressure lines are shed first
//!   and the row is still kept; a record is dropped only when its row does
//!   not fit.
//! - Fair share per script, in each pool: while a pool is at most half full
//!   anyone may add to it; past that, a script may only grow up to
//!   `capacity / (scripts holding bytes there + 1)`, an equal share that
//!   always leaves room for one more script. A lone flood therefore stops at
//!   half the pool, a script flooding its log (or its calls) cannot take the
//!   room the others need, and whatever a script holds beyond its share is
//!   the first to drain, in arrival order.
//! - Bytes stay accounted until the writer [`releases`](RecordBuffer::release)
//!   them after the database write, so records in flight count too.
//! - Every shed line and dropped record is counted per script.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use shared::{InvocationRecord, ScriptId};

/// Bookkeeping of one buffered record (queue slot, map entries), on top of
/// the record's own size and its strings.
const ROW_OVERHEAD: usize = std::mem::size_of::<InvocationRecord>() + 64;
/// What one log line costs besides its bytes.
const LINE_OVERHEAD: usize = std::mem::size_of::<String>();

/// What a script lost to the record pipeline since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// Records not kept at all.
    pub records_dropped: u64,
    /// Log lines shed from records that were kept.
    pub log_lines_shed: u64,
}

/// What happened to a record offered to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Kept whole.
    Kept,
    /// Kept without this many of its log lines.
    Shed { lines: u32 },
    /// Not kept.
    Dropped,
}

/// A record in the buffer, with what it was charged.
#[derive(Debug)]
pub struct Pending {
    pub record: InvocationRecord,
    pub charge: Charge,
}

/// Bytes a record holds in each pool, returned by [`RecordBuffer::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub script_id: ScriptId,
    pub row_bytes: usize,
    pub log_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    rows: usize,
    logs: usize,
}

/// One byte-bounded pool shared fairly between scripts.
#[derive(Debug, Clone, Copy)]
struct Pool {
    capacity: usize,
    used: usize,
    /// Scripts holding bytes in this pool.
    holders: usize,
}

impl Pool {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: 0,
            holders: 0,
        }
    }

    /// The most bytes a script holding `mine` may add now.
    fn room(&self, mine: usize) -> usize {
        let free = self.capacity.saturating_sub(self.used);
        let unconditional = (self.capacity / 2).saturating_sub(self.used);
        // Holders counting this script, plus one place kept for a newcomer.
        let holders = self.holders + usize::from(mine == 0) + 1;
        let share = self.capacity / holders;
        free.min(unconditional.max(share.saturating_sub(mine)))
    }

    fn add(&mut self, mine: &mut usize, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if *mine == 0 {
            self.holders += 1;
        }
        *mine += bytes;
        self.used += bytes;
    }

    fn remove(&mut self, mine: &mut usize, bytes: usize) {
        let bytes = bytes.min(*mine);
        if bytes == 0 {
            return;
        }
        *mine -= bytes;
        self.used = self.used.saturating_sub(bytes);
        if *mine == 0 {
            self.holders = self.holders.saturating_sub(1);
        }
    }
}

/// The queue of records waiting to be written, with its accounting.
#[derive(Debug)]
pub struct RecordBuffer {
    queue: VecDeque<Pending>,
    rows: Pool,
    logs: Pool,
    usage: HashMap<ScriptId, Usage>,
    drops: HashMap<ScriptId, Drops>,
}

impl RecordBuffer {
    /// A buffer whose stats rows may hold `row_bytes` and log lines `log_bytes`.
    pub fn new(row_bytes: usize, log_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            rows: Pool::new(row_bytes),
            logs: Pool::new(log_bytes),
            usage: HashMap::new(),
            drops: HashMap::new(),
        }
    }

    /// Takes `record` in, shedding log lines or dropping it if its script's
    /// share is used up.
    pub fn admit(&mut self, mut record: InvocationRecord) -> Admission {
        let script_id = record.script_id;
        let usage = self.usage.get(&script_id).copied().unwrap_or_default();
        let row_bytes = row_cost(&record);
        if row_bytes > self.rows.room(usage.rows) {
            self.drops.entry(script_id).or_default().records_dropped += 1;
            return Admission::Dropped;
        }
        let allowed = self.logs.room(usage.logs);
        let mut log_bytes = 0;
        let kept = record
            .logs
            .iter()
            .take_while(|line| {
                let cost = line_cost(line);
                let fits = log_bytes + cost <= allowed;
                if fits {
                    log_bytes += cost;
                }
                fits
            })
            .count();
        let shed = record.logs.len() - kept;
        let admission = if shed == 0 {
            Admission::Kept
        } else {
            record.logs.truncate(kept);
            record.logs.shrink_to_fit();
            let lines = u32::try_from(shed).unwrap_or(u32::MAX);
            record.logs_shed = record.logs_shed.saturating_add(lines);
            self.drops.entry(script_id).or_default().log_lines_shed += shed as u64;
            Admission::Shed { lines }
        };
        let usage = self.usage.entry(script_id).or_default();
        self.rows.add(&mut usage.rows, row_bytes);
        self.logs.add(&mut usage.logs, log_bytes);
        self.queue.push_back(Pending {
            record,
            charge: Charge {
                script_id,
                row_bytes,
                log_bytes,
            },
        });
        admission
    }

    /// Counts a record that never reached the buffer (or was lost after it).
    pub fn count_dropped(&mut self, script_id: ScriptId, records: u64) {
        self.drops.entry(script_id).or_default().records_dropped += records;
    }

    /// Up to `max` of the oldest records, in arrival order. Their bytes stay
    /// charged until [`release`](Self::release).
    pub fn take(&mut self, max: usize) -> Vec<Pending> {
        let n = max.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    /// Frees what written (or abandoned) records were charged.
    pub fn release(&mut self, charges: impl IntoIterator<Item = Charge>) {
        for c in charges {
            let Some(usage) = self.usage.get_mut(&c.script_id) else {
                continue;
            };
            self.rows.remove(&mut usage.rows, c.row_bytes);
            self.logs.remove(&mut usage.logs, c.log_bytes);
            if *usage == Usage::default() {
                self.usage.remove(&c.script_id);
            }
        }
    }

    /// Records waiting to be taken.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes charged in the row pool and in the log pool.
    pub fn bytes(&self) -> (usize, usize) {
        (self.rows.used, self.logs.used)
    }

    pub fn drops(&self, script_id: ScriptId) -> Drops {
        self.drops.get(&script_id).copied().unwrap_or_default()
    }
}

/// What a record's stats row costs: everything but its log lines.
pub fn row_cost(record: &InvocationRecord) -> usize {
    ROW_OVERHEAD
        + record.method.len()
        + record.path.len()
        + record.route.as_ref().map_or(0, String::len)
        + record.error.as_ref().map_or(0, String::len)
        + record.client_addr.as_ref().map_or(0, String::len)
}

/// What one log line costs.
pub fn line_cost(line: &str) -> usize {
    LINE_OVERHEAD + line.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{InvocationId, InvocationStats, Outcome};

    fn record(script_id: ScriptId, lines: usize, line_len: usize) -> InvocationRecord {
        InvocationRecord {
            id: InvocationId::new(),
            script_id,
            script_version: 1,
            route: None,
            method: "GET".into(),
            path: "/api/execute/x".into(),
            started_at: chrono::Utc::now(),
            status: 200,
            outcome: Outcome::Ok,
            error: None,
            stats: InvocationStats::default(),
            logs: vec!["x".repeat(line_len); lines],
            logs_truncated: false,
            logs_shed: 0,
            client_addr: None,
        }
    }

    fn row() -> usize {
        row_cost(&record(ScriptId::new(), 0, 0))
    }

    #[test]
    fn small_records_are_kept_whole() {
        let mut b = RecordBuffer::new(100 * row(), 100 * line_cost(&"x".repeat(10)));
        let s = ScriptId::new();
        assert_eq!(b.admit(record(s, 3, 10)), Admission::Kept);
        assert_eq!(b.queued(), 1);
        assert_eq!(b.bytes(), (row(), 3 * line_cost(&"x".repeat(10))));
        assert_eq!(b.drops(s), Drops::default());
    }

    #[test]
    fn log_lines_are_shed_before_the_row_and_counted() {
        let line = line_cost(&"x".repeat(100));
        // Alone, a script may use half: four lines.
        let mut b = RecordBuffer::new(10 * row(), 8 * line);
        let s = ScriptId::new();
        assert_eq!(b.admit(record(s, 3, 100)), Admission::Kept);
        // One line of room is left: the next record keeps one of its five.
        assert_eq!(b.admit(record(s, 5, 100)), Admission::Shed { lines: 4 });
        // No room at all: every line goes, the row stays.
        assert_eq!(b.admit(record(s, 2, 100)), Admission::Shed { lines: 2 });
        let taken = b.take(10);
        assert_eq!(taken.len(), 3);
        assert_eq!(taken[1].record.logs.len(), 1);
        assert_eq!(taken[1].record.logs_shed, 4);
        assert_eq!(taken[2].record.logs.len(), 0);
        assert_eq!(taken[2].record.logs_shed, 2);
        assert_eq!(b.drops(s).log_lines_shed, 6);
        assert_eq!(b.drops(s).records_dropped, 0);
    }

    #[test]
    fn a_record_is_dropped_only_when_its_row_does_not_fit() {
        let mut b = RecordBuffer::new(4 * row(), 0);
        let s = ScriptId::new();
        assert_eq!(b.admit(record(s, 0, 0)), Admission::Kept);
        assert_eq!(b.admit(record(s, 0, 0)), Admission::Kept);
        assert_eq!(b.admit(record(s, 0, 0)), Admission::Dropped);
        assert_eq!(b.drops(s).records_dropped, 1);
        // Writing frees the room again.
        let taken = b.take(1);
        b.release(taken.iter().map(|p| p.charge));
        assert_eq!(b.admit(record(s, 0, 0)), Admission::Kept);
    }

    #[test]
    fn bytes_stay_charged_until_released() {
        let mut b = RecordBuffer::new(10 * row(), 10 * line_cost("ab"));
        let s = ScriptId::new();
        b.admit(record(s, 2, 2));
        let taken = b.take(5);
        assert_eq!(b.queued(), 0);
        assert_eq!(b.bytes(), (row(), 2 * line_cost("ab")));
        b.release(taken.into_iter().map(|p| p.charge));
        assert_eq!(b.bytes(), (0, 0));
        assert!(
            b.usage.is_empty(),
            "no bookkeeping left for a drained script"
        );
        assert_eq!((b.rows.holders, b.logs.holders), (0, 0));
    }

    #[test]
    fn a_log_flood_cannot_push_out_another_scripts_logs_or_rows() {
        let line = line_cost(&"x".repeat(1000));
        let mut b = RecordBuffer::new(1000 * row(), 100 * line);
        let flood = ScriptId::new();
        let quiet = ScriptId::new();
        for _ in 0..500 {
            b.admit(record(flood, 20, 1000));
        }
        // Alone, the flood may take half of each pool, and only that much.
        assert_eq!(b.bytes(), (500 * row(), 50 * line));
        assert_eq!(b.drops(flood).records_dropped, 0);
        assert!(b.drops(flood).log_lines_shed > 0);
        // The quiet script still gets its share of the logs and every row.
        for _ in 0..10 {
            assert_eq!(b.admit(record(quiet, 2, 1000)), Admission::Kept);
        }
        assert_eq!(b.drops(quiet), Drops::default());
    }

    #[test]
    fn every_newcomer_finds_room_and_nobody_grows_past_an_equal_share() {
        let mut b = RecordBuffer::new(90 * row(), 0);
        let s: Vec<ScriptId> = (0..4).map(|_| ScriptId::new()).collect();
        let fill = |b: &mut RecordBuffer, script| {
            let mut kept = 0;
            while b.admit(record(script, 0, 0)) == Admission::Kept {
                kept += 1;
            }
            kept
        };
        // Alone: half.
        assert_eq!(fill(&mut b, s[0]), 45);
        // Second: its share of 90 / (2 + 1).
        assert_eq!(fill(&mut b, s[1]), 30);
        // The first is over that share and gets nothing more.
        assert_eq!(b.admit(record(s[0], 0, 0)), Admission::Dropped);
        // Third: a share of 90 / 4 = 22, of which 15 are free.
        assert_eq!(fill(&mut b, s[2]), 15);
        // Draining the oldest (the first script's) lets the newcomer in, not the first.
        let taken = b.take(20);
        assert!(taken.iter().all(|p| p.charge.script_id == s[0]));
        b.release(taken.into_iter().map(|p| p.charge));
        assert_eq!(b.admit(record(s[0], 0, 0)), Admission::Dropped);
        assert_eq!(fill(&mut b, s[3]), 18, "a share of 90 / 5");
    }
}
