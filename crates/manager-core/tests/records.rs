//! Invocation records: the store (paging, filters, round trips, retention)
//! and the pipeline (batching, shutdown flush, fair shedding, live stream),
//! every test once on SQLite and once on PostgreSQL, against real databases.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot proceed should panic"
)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestDb;
use manager_core::records::{Drops, Records, RecordsConfig, StreamItem};
use manager_core::store::invocations::{InvocationCursor, InvocationQuery, OutcomeFilter};
use manager_core::store::{Backend, NewScript, ScriptRepository, StoreError};
use shared::{InvocationId, InvocationRecord, InvocationStats, Outcome, ScriptId};

/// Writes each test body once and instantiates it for both backends.
macro_rules! on_both_backends {
    ($( async fn $name:ident($db:ident: TestDb) $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                common::run(Backend::Sqlite, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                common::run(Backend::Postgres, body).await;
            }
        }
    )*};
}

async fn script(repo: &ScriptRepository, name: &str) -> ScriptId {
    repo.create(NewScript {
        name: name.to_owned(),
        source: "1".to_owned(),
        ..NewScript::default()
    })
    .await
    .unwrap()
    .id
}

fn at_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap()
}

fn record(script_id: ScriptId, started_at: DateTime<Utc>, outcome: Outcome) -> InvocationRecord {
    InvocationRecord {
        id: InvocationId::new(),
        script_id,
        script_version: 3,
        route: Some("/users/{id}".to_owned()),
        method: "POST".to_owned(),
        path: "/exec/users/7".to_owned(),
        started_at,
        status: outcome.http_status(),
        outcome,
        error: outcome.is_error().then(|| "it broke".to_owned()),
        stats: InvocationStats {
            queue_wait_us: 11,
            wall_us: 1234,
            cpu_us: 1000,
            operations: 5678,
            peak_heap_bytes: 4096,
            response_bytes: 17,
            log_bytes: 10,
            worker_pid: Some(4321),
            worker_invocations: 9,
            cache_hit: true,
        },
        logs: vec!["first".to_owned(), "second".to_owned()],
        logs_truncated: false,
        logs_shed: 0,
        client_addr: Some("203.0.113.9".to_owned()),
    }
}

/// A pipeline that never prunes on its own during a test.
fn config() -> RecordsConfig {
    RecordsConfig {
        linger: Duration::from_millis(5),
        prune_every: Duration::from_hours(1),
        ..RecordsConfig::default()
    }
}

/// Everything a script has, newest first, walking every page.
async fn all_pages(
    repo: &ScriptRepository,
    script_id: ScriptId,
    limit: u32,
) -> Vec<InvocationRecord> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = repo
            .list_invocations(&InvocationQuery {
                script_id,
                limit,
                before,
                outcome: None,
            })
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items.into_iter().map(|i| i.record));
        match page.next_before {
            Some(c) => before = Some(c),
            None => return out,
        }
    }
}

on_both_backends! {
    async fn records_round_trip_exactly(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let mut r = record(s, at_us(1_700_000_000_123_456), Outcome::Timeout);
        r.route = None;
        r.stats.worker_pid = None;
        r.stats.operations = u64::from(u32::MAX) * 4;
        r.logs = vec!["α line".into(), String::new(), "\"quoted\" \\ json".into()];
        r.logs_truncated = true;
        r.logs_shed = 3;
        assert_eq!(repo.insert_invocations(std::slice::from_ref(&r)).await.unwrap(), 1);
        assert_eq!(repo.get_invocation(r.id).await.unwrap(), Some(r.clone()));
        assert_eq!(repo.get_invocation(InvocationId::new()).await.unwrap(), None);

        // Listing leaves the lines out but says how many there are.
        let page = repo
            .list_invocations(&InvocationQuery { script_id: s, limit: 10, before: None, outcome: None })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].log_lines, 3);
        assert!(page.items[0].record.logs.is_empty());
        assert_eq!(InvocationRecord { logs: r.logs.clone(), ..page.items[0].record.clone() }, r);
        assert_eq!(page.next_before, None);
    }

    async fn hostile_text_and_huge_counters_are_stored_safely(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let mut r = record(s, Utc::now(), Outcome::ScriptError);
        r.error = Some("nul\0inside".into());
        r.logs = vec!["log\0line".into()];
        r.stats.wall_us = u64::MAX;
        repo.insert_invocations(std::slice::from_ref(&r)).await.unwrap();
        let back = repo.get_invocation(r.id).await.unwrap().unwrap();
        assert_eq!(back.error.as_deref(), Some("nul\u{FFFD}inside"));
        assert_eq!(back.logs, vec!["log\0line".to_owned()], "log lines are JSON-escaped, kept exactly");
        assert_eq!(back.stats.wall_us, i64::MAX.unsigned_abs());
    }

    async fn corrupt_rows_are_reported_not_panicked_on(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let r = record(s, Utc::now(), Outcome::Ok);
        repo.insert_invocations(std::slice::from_ref(&r)).await.unwrap();
        assert_eq!(db.raw_i64("SELECT COUNT(*) FROM invocations").await, 1);
        assert_eq!(db.raw_text("SELECT outcome FROM invocations").await, "ok");
        db.raw_execute("UPDATE invocations SET logs = 'not json'").await.unwrap();
        assert!(matches!(repo.get_invocation(r.id).await, Err(StoreError::Corrupt(_))));
        db.raw_execute("UPDATE invocations SET logs = '[]', outcome = 'bogus'").await.unwrap();
        assert!(matches!(repo.get_invocation(r.id).await, Err(StoreError::Corrupt(_))));
        db.raw_execute("UPDATE invocations SET outcome = 'ok', wall_us = -1").await.unwrap();
        assert!(matches!(repo.invocation_samples(s, r.started_at, 10).await, Err(StoreError::Corrupt(_))));
    }

    async fn inserting_a_batch_twice_keeps_one_copy(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let batch: Vec<_> = (0..20).map(|i| record(s, at_us(1_000_000 + i), Outcome::Ok)).collect();
        assert_eq!(repo.insert_invocations(&batch).await.unwrap(), 20);
        assert_eq!(repo.insert_invocations(&batch).await.unwrap(), 0);
        assert_eq!(repo.count_invocations(s).await.unwrap(), 20);
    }

    async fn large_batches_are_split_and_all_written(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let n = manager_core::store::invocations::MAX_INSERT_ROWS * 2 + 7;
        let batch: Vec<_> = (0..n).map(|i| record(s, at_us(i64::try_from(i).unwrap()), Outcome::Ok)).collect();
        assert_eq!(repo.insert_invocations(&batch).await.unwrap(), n as u64);
        assert_eq!(repo.count_invocations(s).await.unwrap(), n as u64);
    }

    async fn pages_are_newest_first_without_gaps_or_repeats(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let other = script(&repo, "other").await;
        // Several records share a start time: the id breaks the tie.
        let mut batch: Vec<_> = (0..23).map(|i| record(s, at_us(5_000_000 + i / 3), Outcome::Ok)).collect();
        batch.push(record(other, at_us(5_000_003), Outcome::Ok));
        repo.insert_invocations(&batch).await.unwrap();

        let listed = all_pages(&repo, s, 5).await;
        let mut expected: Vec<_> = batch.iter().filter(|r| r.script_id == s).cloned().collect();
        expected.sort_by(|a, b| {
            (b.started_at, b.id.to_string()).cmp(&(a.started_at, a.id.to_string()))
        });
        let ids = |v: &[InvocationRecord]| v.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&listed), ids(&expected));

        // A page boundary inside a run of equal start times still continues exactly.
        let first = repo
            .list_invocations(&InvocationQuery { script_id: s, limit: 4, before: None, outcome: None })
            .await
            .unwrap();
        let cursor = first.next_before.unwrap();
        assert_eq!(cursor, InvocationCursor::of(&first.items[3].record));
        let rest = repo
            .list_invocations(&InvocationQuery { script_id: s, limit: 500, before: Some(cursor), outcome: None })
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 19);
        assert_eq!(rest.items[0].record.id, expected[4].id);
        assert_eq!(rest.next_before, None);
    }

    async fn outcome_filters_select_exactly(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let outcomes = [Outcome::Ok, Outcome::Timeout, Outcome::Ok, Outcome::MemoryLimit, Outcome::Timeout];
        let batch: Vec<_> = outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| record(s, at_us(i64::try_from(i).unwrap() + 1), *o))
            .collect();
        repo.insert_invocations(&batch).await.unwrap();
        let count = |outcome| {
            let repo = repo.clone();
            async move {
                repo.list_invocations(&InvocationQuery { script_id: s, limit: 100, before: None, outcome })
                    .await
                    .unwrap()
                    .items
                    .len()
            }
        };
        assert_eq!(count(None).await, 5);
        assert_eq!(count(Some(OutcomeFilter::Is(Outcome::Timeout))).await, 2);
        assert_eq!(count(Some(OutcomeFilter::Is(Outcome::Ok))).await, 2);
        assert_eq!(count(Some(OutcomeFilter::Failed)).await, 3);
        assert_eq!(count(Some(OutcomeFilter::Is(Outcome::Overloaded))).await, 0);
    }

    async fn samples_cover_the_window_newest_first_up_to_the_cap(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let now = Utc::now();
        let batch: Vec<_> = (0..10)
            .map(|i| record(s, now - chrono::Duration::minutes(i), Outcome::Ok))
            .collect();
        repo.insert_invocations(&batch).await.unwrap();
        let since = now - chrono::Duration::seconds(5 * 60 + 30);
        let samples = repo.invocation_samples(s, since, 100).await.unwrap();
        assert_eq!(samples.len(), 6);
        assert!(samples.windows(2).all(|w| w[0].started_at >= w[1].started_at));
        assert_eq!(samples[0].wall_us, 1234);
        assert_eq!(repo.invocation_samples(s, since, 2).await.unwrap().len(), 2);
    }

    async fn retention_keeps_the_newest_n_and_nothing_too_old_or_orphaned(db: TestDb) {
        let repo = db.open().await;
        let busy = script(&repo, "busy").await;
        let quiet = script(&repo, "quiet").await;
        let gone = script(&repo, "gone").await;
        let now = Utc::now();
        let mut batch: Vec<_> = (0..30)
            .map(|i| record(busy, now - chrono::Duration::seconds(i), Outcome::Ok))
            .collect();
        batch.push(record(quiet, now, Outcome::Ok));
        batch.push(record(quiet, now - chrono::Duration::days(8), Outcome::Ok));
        batch.push(record(gone, now, Outcome::Ok));
        repo.insert_invocations(&batch).await.unwrap();
        assert!(repo.delete(gone).await.unwrap());

        let report = repo
            .prune_invocations(10, now - chrono::Duration::days(7))
            .await
            .unwrap();
        assert_eq!((report.expired, report.excess, report.orphaned), (1, 20, 1));
        assert_eq!(repo.count_invocations(busy).await.unwrap(), 10);
        assert_eq!(repo.count_invocations(quiet).await.unwrap(), 1);
        assert_eq!(repo.count_invocations(gone).await.unwrap(), 0);
        // The ten kept are the ten newest.
        let kept = all_pages(&repo, busy, 100).await;
        let newest: Vec<_> = batch[..10].iter().map(|r| r.id).collect();
        assert_eq!(kept.iter().map(|r| r.id).collect::<Vec<_>>(), newest);
        // A second pass finds nothing more to do.
        let again = repo.prune_invocations(10, now - chrono::Duration::days(7)).await.unwrap();
        assert_eq!(again.total(), 0);
    }

    async fn every_record_handed_to_the_sink_is_written_by_shutdown(db: TestDb) {
        let repo = db.open().await;
        let a = script(&repo, "a").await;
        let b = script(&repo, "b").await;
        let records = Records::start(repo.clone(), config(), None);
        let sink = records.sink();
        for i in 0..1500 {
            sink.record(record(if i % 3 == 0 { b } else { a }, Utc::now(), Outcome::Ok));
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let report = records.shutdown().await;
        assert_eq!((report.written, report.lost), (1500, 0));
        assert_eq!(repo.count_invocations(a).await.unwrap(), 1000);
        assert_eq!(repo.count_invocations(b).await.unwrap(), 500);
        assert_eq!(records.drops(a), Drops::default());
        // A second shutdown is harmless.
        assert_eq!(records.shutdown().await.lost, 0);
        // A straggler after the final flush cannot be written: it is counted, not kept.
        sink.record(record(a, Utc::now(), Outcome::Ok));
        assert_eq!(records.drops(a).records_dropped, 1);
        assert_eq!(records.pending(), 0);
    }

    async fn retention_runs_in_the_background(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let records = Records::start(
            repo.clone(),
            RecordsConfig { keep_per_script: 5, prune_every: Duration::from_millis(100), ..config() },
            None,
        );
        let sink = records.sink();
        for _ in 0..20 {
            sink.record(record(s, Utc::now(), Outcome::Ok));
        }
        // Written, then pruned to the newest five, within a generous bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while repo.count_invocations(s).await.unwrap() != 5 || records.written() < 20 {
            assert!(std::time::Instant::now() < deadline, "retention did not run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        records.shutdown().await;
        assert_eq!(repo.count_invocations(s).await.unwrap(), 5);
    }

    async fn records_that_cannot_be_written_by_the_deadline_are_counted_lost(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let records = Records::start(
            repo.clone(),
            RecordsConfig { flush_timeout: Duration::from_millis(500), ..config() },
            None,
        );
        repo.close().await;
        let sink = records.sink();
        for _ in 0..5 {
            sink.record(record(s, Utc::now(), Outcome::Ok));
        }
        let report = records.shutdown().await;
        assert_eq!((report.written, report.lost), (0, 5));
        assert_eq!(records.drops(s).records_dropped, 5);
    }

    async fn the_live_stream_sees_records_once_written(db: TestDb) {
        let repo = db.open().await;
        let s = script(&repo, "s").await;
        let records = Records::start(repo.clone(), config(), None);
        let mut sub = records.subscribe();
        let r = record(s, Utc::now(), Outcome::Ok);
        records.sink().record(r.clone());
        let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a record within 10 s");
        match got {
            Some(StreamItem::Record(seen)) => {
                assert_eq!(seen.id, r.id);
                assert_eq!(seen.logs, r.logs);
                let stored = repo.get_invocation(r.id).await.unwrap();
                assert_eq!(stored.as_ref(), Some(&*seen), "in the database first, and the same");
            }
            other => panic!("expected the record, got {other:?}"),
        }
        // Closing ends every subscription.
        records.close_streams();
        assert!(sub.next().await.is_none());
        records.shutdown().await;
    }
}

/// One script floods its log while another logs a little; the pipeline
/// cannot write meanwhile (a single-threaded runtime runs nothing else while
/// the records arrive), so only the buffer's policy decides.
async fn fair_shedding_body(db: TestDb) {
    let repo = db.open().await;
    let flood = script(&repo, "flood").await;
    let quiet = script(&repo, "quiet").await;
    let records = Records::start(
        repo.clone(),
        RecordsConfig {
            buffer_bytes: 2 * 1024 * 1024,
            ..config()
        },
        None,
    );
    let sink = records.sink();
    let big_line = "x".repeat(4096);
    let mut quiet_ids = Vec::new();
    for i in 0..400 {
        let mut r = record(flood, Utc::now(), Outcome::Ok);
        r.logs = vec![big_line.clone(); 16];
        sink.record(r);
        if i % 20 == 0 {
            let q = record(quiet, Utc::now(), Outcome::Ok);
            quiet_ids.push(q.id);
            sink.record(q);
        }
    }
    let flood_drops = records.drops(flood);
    assert!(flood_drops.log_lines_shed > 0, "{flood_drops:?}");
    assert_eq!(
        flood_drops.records_dropped, 0,
        "rows are kept while logs are shed"
    );
    assert_eq!(records.drops(quiet), Drops::default());

    let report = records.shutdown().await;
    assert_eq!(report.lost, 0);
    assert_eq!(repo.count_invocations(flood).await.unwrap(), 400);
    for id in quiet_ids {
        let kept = repo.get_invocation(id).await.unwrap().unwrap();
        assert_eq!(kept.logs, vec!["first".to_owned(), "second".to_owned()]);
        assert_eq!(kept.logs_shed, 0);
    }
    let shed: u64 = all_pages(&repo, flood, 500)
        .await
        .iter()
        .map(|r| u64::from(r.logs_shed))
        .sum();
    assert_eq!(
        shed, flood_drops.log_lines_shed,
        "every shed line is marked on its record"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_flood_cannot_push_out_another_scripts_records_sqlite() {
    common::run(Backend::Sqlite, fair_shedding_body).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_flood_cannot_push_out_another_scripts_records_postgres() {
    common::run(Backend::Postgres, fair_shedding_body).await;
}
