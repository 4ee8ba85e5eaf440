//! The pool's counters: lock-free on the hot path, read as one snapshot.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a worker left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retirement {
    /// Served its (jittered) number of invocations.
    MaxInvocations,
    /// Resident memory passed the high-water mark.
    Rss,
    /// Lifetime CPU passed the recycle threshold.
    Cpu,
    /// Isolation: a used worker in `per-invocation` mode, an idle worker of
    /// another script evicted in `per-script` mode, or a compile-check worker.
    Isolation,
    /// Its script hit a limit (the worker may hold a bloated heap).
    AfterLimit,
    /// Died or was killed during an invocation, or broke protocol.
    Crashed,
    /// Killed for not answering by the deadline plus the grace.
    Timeout,
    /// Its caller went away mid-invocation.
    Abandoned,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub spawned: AtomicU64,
    pub spawn_failures: AtomicU64,
    pub invocations: AtomicU64,
    pub recycled_max_invocations: AtomicU64,
    pub recycled_rss: AtomicU64,
    pub recycled_cpu: AtomicU64,
    pub recycled_isolation: AtomicU64,
    pub recycled_after_limit: AtomicU64,
    pub crashed: AtomicU64,
    pub killed_timeout: AtomicU64,
    pub killed_abandoned: AtomicU64,
    pub died_idle: AtomicU64,
    pub zygote_restarts: AtomicU64,
    pub overloaded_queue_full: AtomicU64,
    pub overloaded_wait: AtomicU64,
    pub overloaded_script_cap: AtomicU64,
    /// Fork-to-ready times of the latest spawns, for benchmarks.
    pub ready_latency: Mutex<VecDeque<Duration>>,
}

/// How many recent fork-to-ready samples are kept.
const LATENCY_SAMPLES: usize = 4096;

impl Counters {
    pub(crate) fn retired(&self, why: Retirement) {
        let c = match why {
            Retirement::MaxInvocations => &self.recycled_max_invocations,
            Retirement::Rss => &self.recycled_rss,
            Retirement::Cpu => &self.recycled_cpu,
            Retirement::Isolation => &self.recycled_isolation,
            Retirement::AfterLimit => &self.recycled_after_limit,
            Retirement::Crashed => &self.crashed,
            Retirement::Timeout => &self.killed_timeout,
            Retirement::Abandoned => &self.killed_abandoned,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn ready_after(&self, latency: Duration) {
        let mut samples = self
            .ready_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == LATENCY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(latency);
    }

    pub(crate) fn snapshot(&self) -> PoolMetrics {
        let g = |c: &AtomicU64| c.load(Relaxed);
        PoolMetrics {
            spawned: g(&self.spawned),
            spawn_failures: g(&self.spawn_failures),
            invocations: g(&self.invocations),
            recycled_max_invocations: g(&self.recycled_max_invocations),
            recycled_rss: g(&self.recycled_rss),
            recycled_cpu: g(&self.recycled_cpu),
            recycled_isolation: g(&self.recycled_isolation),
            recycled_after_limit: g(&self.recycled_after_limit),
            crashed: g(&self.crashed),
            killed_timeout: g(&self.killed_timeout),
            killed_abandoned: g(&self.killed_abandoned),
            died_idle: g(&self.died_idle),
            zygote_restarts: g(&self.zygote_restarts),
            overloaded_queue_full: g(&self.overloaded_queue_full),
            overloaded_wait: g(&self.overloaded_wait),
            overloaded_script_cap: g(&self.overloaded_script_cap),
        }
    }
}

/// A snapshot of the pool's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMetrics {
    /// Workers that said `Hello`.
    pub spawned: u64,
    /// Forks that failed or workers that never said `Hello`.
    pub spawn_failures: u64,
    /// Invocations that reached a worker.
    pub invocations: u64,
    pub recycled_max_invocations: u64,
    pub recycled_rss: u64,
    pub recycled_cpu: u64,
    /// Retired for isolation (per-invocation use, per-script eviction, compile checks).
    pub recycled_isolation: u64,
    /// Retired after their script hit a limit.
    pub recycled_after_limit: u64,
    /// Died or misbehaved during an invocation.
    pub crashed: u64,
    pub killed_timeout: u64,
    pub killed_abandoned: u64,
    /// Died while idle (e.g. with the zygote).
    pub died_idle: u64,
    pub zygote_restarts: u64,
    pub overloaded_queue_full: u64,
    pub overloaded_wait: u64,
    pub overloaded_script_cap: u64,
}

impl PoolMetrics {
    /// Planned recycles (not crashes or kills).
    pub fn recycled_total(&self) -> u64 {
        self.recycled_max_invocations
            + self.recycled_rss
            + self.recycled_cpu
            + self.recycled_isolation
            + self.recycled_after_limit
    }
}
