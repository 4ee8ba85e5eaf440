//! Statistics over a script's records: count, error rate, percentiles and a
//! time series for charts.
//!
//! Invariants: percentiles are nearest-rank over the samples (a value that
//! was actually measured, never an interpolation); every sample falls in
//! exactly one bucket; the numbers are computed the same way whichever
//! database the samples came from.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::invocations::InvocationSample;

/// Shortest and longest window the stats endpoint accepts.
pub const MIN_WINDOW: Duration = Duration::from_mins(1);
pub const MAX_WINDOW: Duration = Duration::from_hours(30 * 24);

/// Percentiles of one measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Distribution {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Distribution {
    /// Sorts `values` in place.
    fn of(values: &mut [u64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let sum: u128 = values.iter().map(|v| u128::from(*v)).sum();
        #[allow(clippy::cast_precision_loss, reason = "a mean for display")]
        let mean = sum as f64 / values.len() as f64;
        Self {
            p50: nearest_rank(values, 50),
            p95: nearest_rank(values, 95),
            p99: nearest_rank(values, 99),
            max: values[values.len() - 1],
            mean,
        }
    }
}

/// The `p`th percentile of sorted, non-empty `values`.
fn nearest_rank(sorted: &[u64], p: usize) -> u64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// One time slice of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
    pub errors: u64,
    pub wall_us: Distribution,
    pub cpu_us: Distribution,
    pub peak_heap_bytes_max: u64,
}

/// What `GET /api/admin/scripts/{id}/stats` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScriptStats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub count: u64,
    pub errors: u64,
    /// `errors / count`, 0 when there were none.
    pub error_rate: f64,
    /// Records per outcome kind.
    pub outcomes: BTreeMap<&'static str, u64>,
    pub wall_us: Distribution,
    pub cpu_us: Distribution,
    pub operations: Distribution,
    pub peak_heap_bytes: Distribution,
    /// When the newest record of the window started.
    pub last_invocation_at: Option<DateTime<Utc>>,
    /// More records matched than were read: the numbers describe the newest ones.
    pub sampled: bool,
    pub bucket_seconds: u64,
    pub buckets: Vec<Bucket>,
}

/// Summarizes the samples that fall in `[to - window, to]`, in `buckets` slices.
pub fn summarize(
    samples: &[InvocationSample],
    to: DateTime<Utc>,
    window: Duration,
    buckets: u32,
    at_cap: bool,
) -> ScriptStats {
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let from_us = to.timestamp_micros().saturating_sub(window_us);
    let from = DateTime::from_timestamp_micros(from_us).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let buckets = i64::from(buckets.max(1));
    // Whole seconds, so bucket edges are readable.
    let bucket_us = ((window_us / buckets).max(1) + 999_999) / 1_000_000 * 1_000_000;
    let in_window: Vec<&InvocationSample> = samples
        .iter()
        .filter(|s| {
            let t = s.started_at.timestamp_micros();
            t >= from_us && t <= to.timestamp_micros()
        })
        .collect();

    let mut series: Vec<Vec<&InvocationSample>> =
        vec![Vec::new(); usize::try_from(buckets).unwrap_or(1)];
    for s in &in_window {
        let index = (s.started_at.timestamp_micros() - from_us) / bucket_us;
        let index = usize::try_from(index).unwrap_or(0).min(series.len() - 1);
        series[index].push(s);
    }
    let mut outcomes = BTreeMap::new();
    for s in &in_window {
        *outcomes.entry(s.outcome.kind()).or_insert(0) += 1;
    }
    let (count, errors) = counts(&in_window);
    ScriptStats {
        from,
        to,
        count,
        errors,
        error_rate: rate(errors, count),
        outcomes,
        wall_us: distribution(&in_window, |s| s.wall_us),
        cpu_us: distribution(&in_window, |s| s.cpu_us),
        operations: distribution(&in_window, |s| s.operations),
        peak_heap_bytes: distribution(&in_window, |s| s.peak_heap_bytes),
        last_invocation_at: in_window.iter().map(|s| s.started_at).max(),
        sampled: at_cap,
        bucket_seconds: u64::try_from(bucket_us / 1_000_000).unwrap_or(1),
        buckets: series
            .iter()
            .enumerate()
            .map(|(i, slice)| {
                let (count, errors) = counts(slice);
                let offset = bucket_us.saturating_mul(i64::try_from(i).unwrap_or(0));
                Bucket {
                    start: DateTime::from_timestamp_micros(from_us.saturating_add(offset))
                        .unwrap_or(to),
                    count,
                    errors,
                    wall_us: distribution(slice, |s| s.wall_us),
                    cpu_us: distribution(slice, |s| s.cpu_us),
                    peak_heap_bytes_max: slice.iter().map(|s| s.peak_heap_bytes).max().unwrap_or(0),
                }
            })
            .collect(),
    }
}

fn counts(samples: &[&InvocationSample]) -> (u64, u64) {
    let errors = samples.iter().filter(|s| s.outcome.is_error()).count();
    (samples.len() as u64, errors as u64)
}

#[allow(clippy::cast_precision_loss, reason = "a rate for display")]
fn rate(errors: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        errors as f64 / count as f64
    }
}

fn distribution(
    samples: &[&InvocationSample],
    field: impl Fn(&InvocationSample) -> u64,
) -> Distribution {
    let mut values: Vec<u64> = samples.iter().map(|s| field(s)).collect();
    Distribution::of(&mut values)
}

/// `30s`, `15m`, `1h`, `7d`: a whole number and a unit, within
/// [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "window must be a whole number with s, m, h or d (e.g. 1h), between 1m and 30d; got `{}`",
            s.chars().take(32).collect::<String>()
        )
    };
    let unit_at = s
        .len()
        .checked_sub(1)
        .filter(|i| s.is_char_boundary(*i))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    let window = Duration::from_secs(seconds);
    if window < MIN_WINDOW || window > MAX_WINDOW {
        return Err(bad());
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Outcome;

    fn sample(at: DateTime<Utc>, outcome: Outcome, wall_us: u64) -> InvocationSample {
        InvocationSample {
            started_at: at,
            outcome,
            wall_us,
            cpu_us: wall_us / 2,
            operations: wall_us * 10,
            peak_heap_bytes: wall_us * 100,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let d = Distribution::of(&mut v);
        assert_eq!((d.p50, d.p95, d.p99, d.max), (50, 95, 99, 100));
        assert!((d.mean - 50.5).abs() < 1e-9);
        let mut one = vec![7];
        let d = Distribution::of(&mut one);
        assert_eq!((d.p50, d.p99, d.max), (7, 7, 7));
        assert_eq!(Distribution::of(&mut []), Distribution::default());
    }

    #[test]
    fn summarizes_counts_rates_and_buckets() {
        let to = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let minute = chrono::Duration::minutes(1);
        let samples = vec![
            sample(
                to - minute * 59 - chrono::Duration::seconds(30),
                Outcome::Ok,
                100,
            ),
            sample(to - minute * 30, Outcome::Ok, 200),
            sample(to - minute * 30, Outcome::Timeout, 5_000_000),
            sample(to - chrono::Duration::seconds(1), Outcome::ScriptError, 300),
            // Outside the window: ignored.
            sample(to - minute * 61, Outcome::Ok, 1),
        ];
        let stats = summarize(&samples, to, Duration::from_hours(1), 60, false);
        assert_eq!(stats.count, 4);
        assert_eq!(stats.errors, 2);
        assert!((stats.error_rate - 0.5).abs() < 1e-9);
        assert_eq!(stats.outcomes.get("timeout"), Some(&1));
        assert_eq!(stats.wall_us.max, 5_000_000);
        assert_eq!(stats.wall_us.p50, 200);
        assert_eq!(stats.bucket_seconds, 60);
        assert_eq!(stats.buckets.len(), 60);
        assert_eq!(stats.buckets.iter().map(|b| b.count).sum::<u64>(), 4);
        assert_eq!(stats.buckets[0].count, 1);
        assert_eq!(stats.buckets[30].count, 2);
        assert_eq!(stats.buckets[30].errors, 1);
        assert_eq!(stats.buckets[59].count, 1);
        assert_eq!(stats.buckets[0].start, stats.from);
        assert_eq!(
            stats.last_invocation_at,
            Some(to - chrono::Duration::seconds(1))
        );
    }

    #[test]
    fn empty_windows_are_zeros() {
        let stats = summarize(&[], Utc::now(), Duration::from_mins(1), 6, false);
        assert_eq!(stats.count, 0);
        assert_eq!(stats.last_invocation_at, None);
        assert!(stats.error_rate.abs() < f64::EPSILON);
        assert_eq!(stats.buckets.len(), 6);
        assert_eq!(stats.bucket_seconds, 10);
    }

    #[test]
    fn windows_parse_within_bounds() {
        assert_eq!(parse_window("1h"), Ok(Duration::from_hours(1)));
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("7d"), Ok(Duration::from_hours(7 * 24)));
        for bad in [
            "",
            "h",
            "1",
            "1w",
            "-1h",
            "30s",
            "31d",
            "99999999999999999999d",
            "1é",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}
