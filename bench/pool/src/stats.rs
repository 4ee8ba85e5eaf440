//! Nearest-rank percentiles over latency samples.

use std::time::Duration;

use serde_json::{Value, json};

/// Samples in microseconds, sorted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn from_durations(durations: impl IntoIterator<Item = Duration>) -> Self {
        Self::from_micros(
            durations
                .into_iter()
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    pub fn from_micros(micros: impl IntoIterator<Item = u64>) -> Self {
        let mut v: Vec<u64> = micros.into_iter().collect();
        v.sort_unstable();
        Self(v)
    }

    /// The smallest sample at or above `p` percent of them (0 when empty).
    pub fn percentile(&self, p: u32) -> u64 {
        let n = self.0.len();
        if n == 0 {
            return 0;
        }
        let p = usize::try_from(p.min(100)).unwrap_or(100);
        let rank = (p * n).div_ceil(100).max(1);
        self.0[rank - 1]
    }

    pub fn summary(&self) -> Value {
        json!({
            "n": self.0.len(),
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.0.last().copied().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Samples::from_micros((1..=100).rev());
        assert_eq!(s.percentile(50), 50);
        assert_eq!(s.percentile(99), 99);
        assert_eq!(s.percentile(100), 100);
        assert_eq!(s.percentile(0), 1);
        let three = Samples::from_micros([30, 10, 20]);
        assert_eq!(three.percentile(50), 20);
        assert_eq!(three.percentile(99), 30);
    }

    #[test]
    fn empty_is_zero() {
        let s = Samples::from_micros([]);
        assert_eq!(s.percentile(50), 0);
        assert_eq!(s.summary()["max"], 0);
    }

    #[test]
    fn durations_become_micros() {
        let s = Samples::from_durations([Duration::from_millis(2), Duration::from_micros(5)]);
        assert_eq!(s.percentile(100), 2000);
        assert_eq!(s.percentile(1), 5);
    }
}
