//! Invocation records in the database: batch insert, cursor paging, samples
//! for statistics, and retention pruning, on both backends.
//!
//! Invariants:
//! - A batch is one multi-row `INSERT ... ON CONFLICT (id) DO NOTHING`, so a
//!   batch retried after an ambiguous failure never duplicates a record.
//! - Text written is free of NUL characters (PostgreSQL refuses them in
//!   `TEXT`; a script can print one): each is replaced by U+FFFD on both
//!   backends, so both store the same thing.
//! - Counters are clamped into `BIGINT` on write; every value read back is
//!   checked, and a row that does not decode is [`StoreError::Corrupt`].
//! - Records sort newest first by `(started_at_us, id)`; that pair is the
//!   paging cursor, so pages never skip or repeat a record, whatever is
//!   written meanwhile.
//! - Pruning deletes in chunks, so a large prune never holds SQLite's write
//!   lock for long and the batch writer keeps its turn.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::{InvocationId, InvocationRecord, InvocationStats, Outcome, ScriptId};
use sqlx::QueryBuilder;

use super::{Pool, ScriptRepository, StoreError};

/// The most records one page may hold.
pub const MAX_PAGE: u32 = 500;
/// Rows per `DELETE` while pruning.
const PRUNE_CHUNK: i64 = 5_000;
/// The most rows one insert may carry: 25 binds each stays far below
/// SQLite's 32 766 and PostgreSQL's 65 535 bind parameters.
pub const MAX_INSERT_ROWS: usize = 1_000;

/// Which outcomes a listing keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// Exactly this outcome.
    Is(Outcome),
    /// Every outcome but `ok`.
    Failed,
}

impl FromStr for OutcomeFilter {
    type Err = String;

    /// An outcome kind (`timeout`, `ok`, ...) or `error` for every failure.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "error" {
            return Ok(Self::Failed);
        }
        s.parse::<Outcome>().map(Self::Is).map_err(|_| {
            format!(
                "unknown outcome `{}`",
                s.chars().take(32).collect::<String>()
            )
        })
    }
}

/// A position in a script's records, newest first: a page asked for
/// `before` a cursor holds only records older than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationCursor {
    pub started_at_us: i64,
    pub id: InvocationId,
}

impl InvocationCursor {
    /// The cursor just at `record`.
    pub fn of(record: &InvocationRecord) -> Self {
        Self {
            started_at_us: record.started_at.timestamp_micros(),
            id: record.id,
        }
    }
}

impl fmt::Display for InvocationCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.started_at_us, self.id)
    }
}

/// A cursor string that is not one this store handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`before` must be a cursor from `next_before`")]
pub struct BadCursor;

impl FromStr for InvocationCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (us, id) = s.split_once('_').ok_or(BadCursor)?;
        Ok(Self {
            started_at_us: us.parse().map_err(|_| BadCursor)?,
            id: id.parse().map_err(|_| BadCursor)?,
        })
    }
}

/// What to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationQuery {
    pub script_id: ScriptId,
    /// At most this many; clamped to `1..=MAX_PAGE`.
    pub limit: u32,
    pub before: Option<InvocationCursor>,
    pub outcome: Option<OutcomeFilter>,
}

/// A record as listed: everything but the log lines, which stay in the
/// database until the record itself is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedInvocation {
    /// The record with `logs` empty.
    pub record: InvocationRecord,
    /// How many log lines the stored record holds.
    pub log_lines: u32,
}

/// One page of a script's records, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationPage {
    pub items: Vec<ListedInvocation>,
    /// Where the next page starts; `None` when this page is the last.
    pub next_before: Option<InvocationCursor>,
}

/// The numbers of one record that statistics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationSample {
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub wall_us: u64,
    pub cpu_us: u64,
    pub operations: u64,
    pub peak_heap_bytes: u64,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Older than the age bound.
    pub expired: u64,
    /// Beyond the newest N of their script.
    pub excess: u64,
    /// Of scripts that no longer exist.
    pub orphaned: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.expired + self.excess + self.orphaned
    }
}

impl ScriptRepository {
    /// Writes `records` in one multi-row insert per [`MAX_INSERT_ROWS`]
    /// and returns how many were new (a record already stored is skipped).
    pub async fn insert_invocations(
        &self,
        records: &[InvocationRecord],
    ) -> Result<u64, StoreError> {
        let mut written = 0;
        for chunk in records.chunks(MAX_INSERT_ROWS) {
            let columns: Vec<Columns> = chunk.iter().map(Columns::of).collect();
            written += match &self.pool {
                Pool::Sqlite(pool) => sqlite::insert(pool, columns).await?,
                Pool::Postgres(pool) => postgres::insert(pool, columns).await?,
            };
        }
        Ok(written)
    }

    /// One page of a script's records, newest first, without log lines.
    pub async fn list_invocations(
        &self,
        query: &InvocationQuery,
    ) -> Result<InvocationPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        // One more than asked says whether another page exists.
        let rows = match &self.pool {
            Pool::Sqlite(pool) => sqlite::list(pool, query, limit + 1).await?,
            Pool::Postgres(pool) => postgres::list(pool, query, limit + 1).await?,
        };
        let mut items = rows
            .into_iter()
            .map(InvocationRow::into_listed)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_before = if more {
            items.last().map(|i| InvocationCursor::of(&i.record))
        } else {
            None
        };
        Ok(InvocationPage { items, next_before })
    }

    /// One record with its log lines.
    pub async fn get_invocation(
        &self,
        id: InvocationId,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        let row = match &self.pool {
            Pool::Sqlite(pool) => sqlite::get(pool, id).await?,
            Pool::Postgres(pool) => postgres::get(pool, id).await?,
        };
        row.map(|r| r.into_listed().map(|l| l.record)).transpose()
    }

    /// How many records a script has.
    pub async fn count_invocations(&self, script_id: ScriptId) -> Result<u64, StoreError> {
        let n = match &self.pool {
            Pool::Sqlite(pool) => sqlite::count(pool, script_id).await?,
            Pool::Postgres(pool) => postgres::count(pool, script_id).await?,
        };
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    /// The newest (at most `cap`) samples of a script's records that
    /// started at or after `since`, newest first.
    pub async fn invocation_samples(
        &self,
        script_id: ScriptId,
        since: DateTime<Utc>,
        cap: u32,
    ) -> Result<Vec<InvocationSample>, StoreError> {
        let since = since.timestamp_micros();
        let rows = match &self.pool {
            Pool::Sqlite(pool) => sqlite::samples(pool, script_id, since, cap).await?,
            Pool::Postgres(pool) => postgres::samples(pool, script_id, since, cap).await?,
        };
        rows.into_iter().map(SampleRow::into_sample).collect()
    }

    /// Deletes records that started before `older_than`, all but the newest
    /// `keep_per_script` of each script, and those of deleted scripts.
    pub async fn prune_invocations(
        &self,
        keep_per_script: u32,
        older_than: DateTime<Utc>,
    ) -> Result<PruneReport, StoreError> {
        let cutoff = older_than.timestamp_micros();
        let keep = i64::from(keep_per_script);
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::prune(pool, keep, cutoff).await,
            Pool::Postgres(pool) => postgres::prune(pool, keep, cutoff).await,
        }
    }
}

/// A record's column values as written, computed once per row.
#[derive(Debug)]
struct Columns {
    id: String,
    script_id: String,
    script_version: i64,
    route: Option<String>,
    method: String,
    path: String,
    started_at_us: i64,
    status: i64,
    outcome: &'static str,
    error: Option<String>,
    queue_wait_us: i64,
    wall_us: i64,
    cpu_us: i64,
    operations: i64,
    peak_heap_bytes: i64,
    response_bytes: i64,
    log_bytes: i64,
    worker_pid: Option<i64>,
    worker_invocations: i64,
    cache_hit: bool,
    logs: String,
    log_lines: i64,
    logs_truncated: bool,
    logs_shed: i64,
    client_addr: Option<String>,
}

impl Columns {
    fn of(r: &InvocationRecord) -> Self {
        let s = &r.stats;
        Self {
            id: r.id.to_string(),
            script_id: r.script_id.to_string(),
            script_version: i64::from(r.script_version),
            route: r.route.as_deref().map(without_nul),
            method: without_nul(&r.method),
            path: without_nul(&r.path),
            started_at_us: r.started_at.timestamp_micros(),
            status: i64::from(r.status),
            outcome: r.outcome.kind(),
            error: r.error.as_deref().map(without_nul),
            queue_wait_us: clamp(s.queue_wait_us),
            wall_us: clamp(s.wall_us),
            cpu_us: clamp(s.cpu_us),
            operations: clamp(s.operations),
            peak_heap_bytes: clamp(s.peak_heap_bytes),
            response_bytes: clamp(s.response_bytes),
            log_bytes: clamp(s.log_bytes),
            worker_pid: s.worker_pid.map(i64::from),
            worker_invocations: clamp(s.worker_invocations),
            cache_hit: s.cache_hit,
            // JSON escapes NUL as `\u0000`, so the column never holds one.
            logs: serde_json::to_string(&r.logs).expect("a list of strings always serializes"),
            log_lines: i64::try_from(r.logs.len()).unwrap_or(i64::MAX),
            logs_truncated: r.logs_truncated,
            logs_shed: i64::from(r.logs_shed),
            client_addr: r.client_addr.as_deref().map(without_nul),
        }
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn without_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// Every column but `logs`, which callers select as they need.
const COLUMNS: &str = "script_version, route, method, path, started_at_us, status, outcome, error, \
     queue_wait_us, wall_us, cpu_us, operations, peak_heap_bytes, response_bytes, log_bytes, \
     worker_pid, worker_invocations, cache_hit, log_lines, logs_truncated, logs_shed, client_addr";

#[derive(Debug, sqlx::FromRow)]
struct InvocationRow {
    id: String,
    script_id: String,
    script_version: i64,
    route: Option<String>,
    method: String,
    path: String,
    started_at_us: i64,
    status: i64,
    outcome: String,
    error: Option<String>,
    queue_wait_us: i64,
    wall_us: i64,
    cpu_us: i64,
    operations: i64,
    peak_heap_bytes: i64,
    response_bytes: i64,
    log_bytes: i64,
    worker_pid: Option<i64>,
    worker_invocations: i64,
    cache_hit: bool,
    /// `None` when the query left the lines out.
    logs: Option<String>,
    log_lines: i64,
    logs_truncated: bool,
    logs_shed: i64,
    client_addr: Option<String>,
}

impl InvocationRow {
    fn into_listed(self) -> Result<ListedInvocation, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("invocation {}: {what}", self.id));
        let logs = match &self.logs {
            Some(json) => serde_json::from_str::<Vec<String>>(json).map_err(|_| corrupt("logs"))?,
            None => Vec::new(),
        };
        let record = InvocationRecord {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            script_id: self.script_id.parse().map_err(|_| corrupt("script id"))?,
            script_version: u32::try_from(self.script_version).map_err(|_| corrupt("version"))?,
            route: self.route.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            started_at: micros_to_time(self.started_at_us).ok_or_else(|| corrupt("started_at"))?,
            status: u16::try_from(self.status).map_err(|_| corrupt("status"))?,
            outcome: self.outcome.parse().map_err(|_| corrupt("outcome"))?,
            error: self.error.clone(),
            stats: InvocationStats {
                queue_wait_us: unsigned(self.queue_wait_us)
                    .ok_or_else(|| corrupt("queue_wait_us"))?,
                wall_us: unsigned(self.wall_us).ok_or_else(|| corrupt("wall_us"))?,
                cpu_us: unsigned(self.cpu_us).ok_or_else(|| corrupt("cpu_us"))?,
                operations: unsigned(self.operations).ok_or_else(|| corrupt("operations"))?,
                peak_heap_bytes: unsigned(self.peak_heap_bytes)
                    .ok_or_else(|| corrupt("peak_heap_bytes"))?,
                response_bytes: unsigned(self.response_bytes)
                    .ok_or_else(|| corrupt("response_bytes"))?,
                log_bytes: unsigned(self.log_bytes).ok_or_else(|| corrupt("log_bytes"))?,
                worker_pid: self
                    .worker_pid
                    .map(|p| u32::try_from(p).map_err(|_| corrupt("worker_pid")))
                    .transpose()?,
                worker_invocations: unsigned(self.worker_invocations)
                    .ok_or_else(|| corrupt("worker_invocations"))?,
                cache_hit: self.cache_hit,
            },
            logs,
            logs_truncated: self.logs_truncated,
            logs_shed: u32::try_from(self.logs_shed).map_err(|_| corrupt("logs_shed"))?,
            client_addr: self.client_addr.clone(),
        };
        Ok(ListedInvocation {
            record,
            log_lines: u32::try_from(self.log_lines).map_err(|_| corrupt("log_lines"))?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct SampleRow {
    started_at_us: i64,
    outcome: String,
    wall_us: i64,
    cpu_us: i64,
    operations: i64,
    peak_heap_bytes: i64,
}

impl SampleRow {
    fn into_sample(self) -> Result<InvocationSample, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("invocation sample: {what}"));
        Ok(InvocationSample {
            started_at: micros_to_time(self.started_at_us).ok_or_else(|| corrupt("started_at"))?,
            outcome: self.outcome.parse().map_err(|_| corrupt("outcome"))?,
            wall_us: unsigned(self.wall_us).ok_or_else(|| corrupt("wall_us"))?,
            cpu_us: unsigned(self.cpu_us).ok_or_else(|| corrupt("cpu_us"))?,
            operations: unsigned(self.operations).ok_or_else(|| corrupt("operations"))?,
            peak_heap_bytes: unsigned(self.peak_heap_bytes)
                .ok_or_else(|| corrupt("peak_heap_bytes"))?,
        })
    }
}

fn unsigned(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn micros_to_time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

/// One implementation for both backends: they differ only in the database
/// type and in how a UUID parameter is written (`$n::uuid` on PostgreSQL,
/// where ids are native UUIDs; plain text on SQLite).
macro_rules! backend {
    ($module:ident, $db:ty, $pool:ty, ids = ($id:literal, $script_id:literal), uuid = $cast:literal) => {
        mod $module {
            use super::*;

            type Db = $db;

            fn select(logs: bool) -> String {
                format!(
                    "SELECT {id}, {script_id}, {COLUMNS}, {} FROM invocations ",
                    if logs {
                        "logs"
                    } else {
                        "CAST(NULL AS TEXT) AS logs"
                    },
                    id = $id,
                    script_id = $script_id,
                )
            }

            pub async fn insert(pool: &$pool, rows: Vec<Columns>) -> Result<u64, StoreError> {
                if rows.is_empty() {
                    return Ok(0);
                }
                let mut qb =
                    QueryBuilder::<Db>::new("INSERT INTO invocations (id, script_id, logs, ");
                qb.push(COLUMNS).push(") ");
                qb.push_values(rows, |mut b, c| {
                    b.push_bind(c.id).push_unseparated($cast);
                    b.push_bind(c.script_id).push_unseparated($cast);
                    b.push_bind(c.logs);
                    b.push_bind(c.script_version);
                    b.push_bind(c.route);
                    b.push_bind(c.method);
                    b.push_bind(c.path);
                    b.push_bind(c.started_at_us);
                    b.push_bind(c.status);
                    b.push_bind(c.outcome);
                    b.push_bind(c.error);
                    b.push_bind(c.queue_wait_us);
                    b.push_bind(c.wall_us);
                    b.push_bind(c.cpu_us);
                    b.push_bind(c.operations);
                    b.push_bind(c.peak_heap_bytes);
                    b.push_bind(c.response_bytes);
                    b.push_bind(c.log_bytes);
                    b.push_bind(c.worker_pid);
                    b.push_bind(c.worker_invocations);
                    b.push_bind(c.cache_hit);
                    b.push_bind(c.log_lines);
                    b.push_bind(c.logs_truncated);
                    b.push_bind(c.logs_shed);
                    b.push_bind(c.client_addr);
                });
                qb.push(" ON CONFLICT (id) DO NOTHING");
                Ok(qb.build().execute(pool).await?.rows_affected())
            }

            pub async fn list(
                pool: &$pool,
                q: &InvocationQuery,
                limit: u32,
            ) -> Result<Vec<InvocationRow>, StoreError> {
                let mut qb = QueryBuilder::<Db>::new(select(false));
                qb.push("WHERE script_id = ")
                    .push_bind(q.script_id.to_string())
                    .push($cast);
                match q.outcome {
                    Some(OutcomeFilter::Is(o)) => {
                        qb.push(" AND outcome = ").push_bind(o.kind());
                    }
                    Some(OutcomeFilter::Failed) => {
                        qb.push(" AND outcome <> ").push_bind(Outcome::Ok.kind());
                    }
                    None => {}
                }
                if let Some(c) = q.before {
                    qb.push(" AND (started_at_us < ")
                        .push_bind(c.started_at_us)
                        .push(" OR (started_at_us = ")
                        .push_bind(c.started_at_us)
                        .push(" AND id < ")
                        .push_bind(c.id.to_string())
                        .push($cast)
                        .push("))");
                }
                qb.push(" ORDER BY started_at_us DESC, id DESC LIMIT ")
                    .push_bind(i64::from(limit));
                Ok(qb.build_query_as::<InvocationRow>().fetch_all(pool).await?)
            }

            pub async fn get(
                pool: &$pool,
                id: InvocationId,
            ) -> Result<Option<InvocationRow>, StoreError> {
                let mut qb = QueryBuilder::<Db>::new(select(true));
                qb.push("WHERE id = ").push_bind(id.to_string()).push($cast);
                Ok(qb
                    .build_query_as::<InvocationRow>()
                    .fetch_optional(pool)
                    .await?)
            }

            pub async fn count(pool: &$pool, script_id: ScriptId) -> Result<i64, StoreError> {
                let mut qb =
                    QueryBuilder::<Db>::new("SELECT COUNT(*) FROM invocations WHERE script_id = ");
                qb.push_bind(script_id.to_string()).push($cast);
                Ok(qb.build_query_scalar::<i64>().fetch_one(pool).await?)
            }

            pub async fn samples(
                pool: &$pool,
                script_id: ScriptId,
                since_us: i64,
                cap: u32,
            ) -> Result<Vec<SampleRow>, StoreError> {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT started_at_us, outcome, wall_us, cpu_us, operations, peak_heap_bytes \
                     FROM invocations WHERE script_id = ",
                );
                qb.push_bind(script_id.to_string())
                    .push($cast)
                    .push(" AND started_at_us >= ")
                    .push_bind(since_us)
                    .push(" ORDER BY started_at_us DESC, id DESC LIMIT ")
                    .push_bind(i64::from(cap));
                Ok(qb.build_query_as::<SampleRow>().fetch_all(pool).await?)
            }

            /// Runs `DELETE ... WHERE id IN (<select> LIMIT chunk)` until it
            /// deletes nothing; `select` selects ids and may bind values.
            async fn delete_in_chunks(
                pool: &$pool,
                build: impl Fn(&mut QueryBuilder<Db>),
            ) -> Result<u64, StoreError> {
                let mut total = 0;
                loop {
                    let mut qb = QueryBuilder::<Db>::new("DELETE FROM invocations WHERE id IN (");
                    build(&mut qb);
                    qb.push(" LIMIT ").push_bind(PRUNE_CHUNK).push(")");
                    let n = qb.build().execute(pool).await?.rows_affected();
                    total += n;
                    if n < PRUNE_CHUNK.unsigned_abs() {
                        return Ok(total);
                    }
                }
            }

            pub async fn prune(
                pool: &$pool,
                keep: i64,
                cutoff_us: i64,
            ) -> Result<PruneReport, StoreError> {
                let expired = delete_in_chunks(pool, |qb| {
                    qb.push("SELECT id FROM invocations WHERE started_at_us < ")
                        .push_bind(cutoff_us);
                })
                .await?;
                let orphaned = delete_in_chunks(pool, |qb| {
                    qb.push(
                        "SELECT i.id FROM invocations i WHERE NOT EXISTS \
                         (SELECT 1 FROM scripts s WHERE s.id = i.script_id)",
                    );
                })
                .await?;

                let mut over = QueryBuilder::<Db>::new(concat!(
                    "SELECT ",
                    $script_id,
                    " FROM invocations GROUP BY script_id HAVING COUNT(*) > ",
                ));
                over.push_bind(keep);
                let crowded: Vec<String> = over.build_query_scalar().fetch_all(pool).await?;
                let mut excess = 0;
                for script in crowded {
                    // The oldest record to keep; everything older goes.
                    let mut oldest_kept = QueryBuilder::<Db>::new(concat!(
                        "SELECT started_at_us, ",
                        $id,
                        " FROM invocations WHERE script_id = ",
                    ));
                    oldest_kept
                        .push_bind(script.clone())
                        .push($cast)
                        .push(" ORDER BY started_at_us DESC, id DESC LIMIT 1 OFFSET ")
                        .push_bind(keep - 1);
                    let Some((at, id)) = oldest_kept
                        .build_query_as::<(i64, String)>()
                        .fetch_optional(pool)
                        .await?
                    else {
                        continue;
                    };
                    excess += delete_in_chunks(pool, |qb| {
                        qb.push("SELECT id FROM invocations WHERE script_id = ")
                            .push_bind(script.clone())
                            .push($cast)
                            .push(" AND (started_at_us < ")
                            .push_bind(at)
                            .push(" OR (started_at_us = ")
                            .push_bind(at)
                            .push(" AND id < ")
                            .push_bind(id.clone())
                            .push($cast)
                            .push("))");
                    })
                    .await?;
                }
                Ok(PruneReport {
                    expired,
                    excess,
                    orphaned,
                })
            }
        }
    };
}

backend!(
    sqlite,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    ids = ("id", "script_id"),
    uuid = ""
);
backend!(
    postgres,
    sqlx::Postgres,
    sqlx::PgPool,
    ids = ("id::text AS id", "script_id::text AS script_id"),
    uuid = "::uuid"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = InvocationCursor {
            started_at_us: 1_700_000_000_123_456,
            id: InvocationId::new(),
        };
        assert_eq!(c.to_string().parse::<InvocationCursor>(), Ok(c));
        for bad in ["", "12", "x_y", "12_not-a-uuid", &format!("x_{}", c.id)] {
            assert_eq!(bad.parse::<InvocationCursor>(), Err(BadCursor), "{bad}");
        }
    }

    #[test]
    fn outcome_filters_parse() {
        assert_eq!("error".parse(), Ok(OutcomeFilter::Failed));
        assert_eq!("timeout".parse(), Ok(OutcomeFilter::Is(Outcome::Timeout)));
        assert!("bogus".parse::<OutcomeFilter>().is_err());
    }

    #[test]
    fn nul_characters_never_reach_the_database() {
        assert_eq!(without_nul("a\0b"), "a\u{FFFD}b");
        assert_eq!(without_nul("plain"), "plain");
        let logs = serde_json::to_string(&vec!["x\0y".to_owned()]).unwrap();
        assert!(!logs.contains('\0'));
    }

    #[test]
    fn counters_are_clamped_and_negative_reads_rejected() {
        assert_eq!(clamp(u64::MAX), i64::MAX);
        assert_eq!(clamp(7), 7);
        assert_eq!(unsigned(-1), None);
    }
}
