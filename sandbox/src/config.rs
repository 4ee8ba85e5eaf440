//! Pool settings: [`PoolConfig`] and the isolation modes, read from the
//! environment once at start.
//!
//! Every setting has a default that works on a small box; `from_lookup`
//! refuses values that would make the pool unusable (zero workers, a zero
//! queue timeout) instead of silently clamping them.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// How invocations of different scripts are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Isolation {
    /// A worker only ever runs one script; idle workers of other scripts are
    /// recycled least-recently-used first when a script needs a worker.
    #[default]
    PerScript,
    /// Any worker runs any script. Fastest; one script's leftovers in a
    /// worker (its cached AST, freed-but-not-zeroed heap) can be near another
    /// script's run, so only for a single owner who trusts all scripts alike.
    Shared,
    /// Every invocation gets a never-used worker, forked ahead of demand.
    PerInvocation,
}

impl Isolation {
    /// Worker processes the pool keeps (busy + idle + starting) to run
    /// `workers` invocations at once. In `per-invocation` mode every
    /// invocation ends its worker, so as many never-used workers again are
    /// kept forking or ready: the next caller takes one that is already up
    /// instead of waiting for the replacement of the one that just finished
    /// (1 740 → 1 960 hello invocations/s at 16 connections on two vCPUs,
    /// `docs/performance.md`).
    pub fn processes(self, workers: usize) -> usize {
        match self {
            Isolation::PerInvocation => workers.saturating_mul(2),
            Isolation::PerScript | Isolation::Shared => workers,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Isolation::PerScript => "per-script",
            Isolation::Shared => "shared",
            Isolation::PerInvocation => "per-invocation",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text named no isolation mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown isolation mode `{0}` (expected per-script, shared or per-invocation)")]
pub struct UnknownIsolation(pub String);

impl FromStr for Isolation {
    type Err = UnknownIsolation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "per-script" => Ok(Isolation::PerScript),
            "shared" => Ok(Isolation::Shared),
            "per-invocation" => Ok(Isolation::PerInvocation),
            other => Err(UnknownIsolation(other.chars().take(64).collect())),
        }
    }
}

/// Everything the pool needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The binary that hosts the zygote: it must call
    /// [`crate::run_zygote_if_requested`] first thing in `main`.
    pub executable: PathBuf,
    /// Invocations (and compile checks) running at once; the pool keeps
    /// [`Isolation::processes`] of this many worker processes alive.
    pub workers: usize,
    pub isolation: Isolation,
    /// Invocations that may wait for a worker at once; past it, `Overloaded`.
    pub queue_capacity: usize,
    /// Longest wait for a worker; past it, `Overloaded`.
    pub queue_timeout: Duration,
    /// Recycle a worker after about this many invocations (see `recycle_jitter`).
    pub max_invocations_per_worker: u64,
    /// Each worker's budget is drawn uniformly from
    /// `[M × (1 − jitter), M]` so workers do not all recycle at once.
    pub recycle_jitter: f64,
    /// Recycle a worker whose resident memory passes this.
    pub rss_high_water_bytes: u64,
    /// Invocations of one script running at once (default half the workers, at least one).
    pub per_script_concurrency: usize,
    /// How long past its deadline a worker may take to answer before it is killed.
    pub kill_grace: Duration,
    /// The counting allocator's hard cap in a worker: above the largest
    /// per-script memory limit by the largest single allocation.
    pub heap_hard_cap_bytes: u64,
    /// `RLIMIT_CPU` of a worker, a lifetime backstop.
    pub worker_cpu_limit: Duration,
    /// Recycle a worker once its lifetime CPU passes this (below the backstop
    /// by more than one invocation's maximum wall time).
    pub worker_cpu_recycle: Duration,
    /// Apply the confinement layers. Off only in tests that say why.
    pub confine: bool,
    /// Run with confinement layers the kernel cannot give (reported, not refused).
    pub allow_weak_sandbox: bool,
    /// The account workers drop to when the server runs as root (`None`: nobody/nogroup).
    pub worker_user: Option<String>,
    /// `RLIMIT_AS` of a worker: above the heap cap by the binary, stack and
    /// allocator overhead.
    pub worker_address_space_bytes: u64,
    /// Longest wait for a new worker's `Hello`.
    pub worker_start_timeout: Duration,
    /// Pin each worker to one CPU, spread evenly, and the server's async
    /// threads one per CPU (`PICLOUD_CPU_PINNING`: `1`, `0`, or `auto`, the
    /// default: on when there are no more workers than CPUs).
    pub pin_workers: bool,
}

const MIB: u64 = 1024 * 1024;

impl PoolConfig {
    /// Worker processes this pool keeps alive (see [`Isolation::processes`]).
    pub fn processes(&self) -> usize {
        self.isolation.processes(self.workers)
    }

    /// Defaults for this machine, hosting the zygote in `executable`.
    pub fn new(executable: PathBuf) -> Self {
        let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let heap_hard_cap_bytes =
            executor_core::heap::recommended_hard_cap(shared::Limits::MAXIMA.memory_bytes);
        Self {
            executable,
            workers,
            isolation: Isolation::PerScript,
            queue_capacity: 256,
            queue_timeout: Duration::from_secs(2),
            max_invocations_per_worker: 1000,
            recycle_jitter: 0.1,
            rss_high_water_bytes: 256 * MIB,
            per_script_concurrency: default_script_concurrency(workers),
            kill_grace: Duration::from_millis(500),
            heap_hard_cap_bytes,
            worker_address_space_bytes: address_space_for(heap_hard_cap_bytes),
            worker_cpu_limit: Duration::from_mins(10),
            worker_cpu_recycle: Duration::from_mins(5),
            confine: true,
            allow_weak_sandbox: false,
            worker_user: None,
            worker_start_timeout: Duration::from_secs(5),
            pin_workers: false,
        }
    }

    /// [`PoolConfig::from_lookup`] over the process environment, hosting the
    /// zygote in the current executable.
    pub fn from_env() -> Result<Self, SandboxError> {
        let exe = std::env::current_exe().map_err(|e| {
            SandboxError::Config(format!("cannot find the current executable: {e}"))
        })?;
        Self::from_lookup(exe, |k| std::env::var(k).ok())
    }

    /// Reads `PICLOUD_WORKERS`, `PICLOUD_ISOLATION`, `PICLOUD_QUEUE_CAPACITY`,
    /// `PICLOUD_QUEUE_TIMEOUT_MS`, `PICLOUD_WORKER_MAX_INVOCATIONS`,
    /// `PICLOUD_WORKER_RSS_HIGH_WATER_BYTES`, `PICLOUD_SCRIPT_CONCURRENCY`,
    /// `PICLOUD_KILL_GRACE_MS`, `PICLOUD_WORKER_HEAP_CAP_BYTES`,
    /// `PICLOUD_WORKER_CPU_LIMIT_SECS`, `PICLOUD_WORKER_CPU_RECYCLE_SECS`,
    /// `PICLOUD_CONFINE` (`0` turns confinement off), `PICLOUD_WORKER_USER`,
    /// `PICLOUD_ALLOW_WEAK_SANDBOX` (`1`) and `PICLOUD_LIMIT_MEMORY_BYTES_MAX`
    /// (which sizes the heap cap) through `lookup`.
    pub fn from_lookup(
        executable: PathBuf,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SandboxError> {
        let mut c = Self::new(executable);
        let num = |var: &str| -> Result<Option<u64>, SandboxError> {
            lookup(var)
                .map(|v| match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(SandboxError::Config(format!(
                        "{var} must be a positive whole number, got `{}`",
                        v.chars().take(64).collect::<String>()
                    ))),
                })
                .transpose()
        };
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(n) = num("PICLOUD_WORKERS")? {
            c.workers = as_usize(n);
            c.per_script_concurrency = default_script_concurrency(c.workers);
        }
        if let Some(v) = lookup("PICLOUD_ISOLATION") {
            c.isolation = v
                .parse()
                .map_err(|e: UnknownIsolation| SandboxError::Config(e.to_string()))?;
        }
        if let Some(n) = num("PICLOUD_QUEUE_CAPACITY")? {
            c.queue_capacity = as_usize(n);
        }
        if let Some(n) = num("PICLOUD_QUEUE_TIMEOUT_MS")? {
            c.queue_timeout = Duration::from_millis(n);
        }
        if let Some(n) = num("PICLOUD_WORKER_MAX_INVOCATIONS")? {
            c.max_invocations_per_worker = n;
        }
        if let Some(n) = num("PICLOUD_WORKER_RSS_HIGH_WATER_BYTES")? {
            c.rss_high_water_bytes = n;
        }
        if let Some(n) = num("PICLOUD_SCRIPT_CONCURRENCY")? {
            c.per_script_concurrency = as_usize(n);
        }
        if let Some(n) = num("PICLOUD_KILL_GRACE_MS")? {
            c.kill_grace = Duration::from_millis(n);
        }
        if let Some(n) = num("PICLOUD_LIMIT_MEMORY_BYTES_MAX")? {
            c.heap_hard_cap_bytes = executor_core::heap::recommended_hard_cap(n);
        }
        if let Some(n) = num("PICLOUD_WORKER_HEAP_CAP_BYTES")? {
            c.heap_hard_cap_bytes = n;
        }
        c.worker_address_space_bytes = address_space_for(c.heap_hard_cap_bytes);
        if let Some(n) = num("PICLOUD_WORKER_CPU_LIMIT_SECS")? {
            c.worker_cpu_limit = Duration::from_secs(n);
            c.worker_cpu_recycle = c.worker_cpu_limit / 2;
        }
        if let Some(n) = num("PICLOUD_WORKER_CPU_RECYCLE_SECS")? {
            c.worker_cpu_recycle = Duration::from_secs(n);
        }
        if let Some(v) = lookup("PICLOUD_CONFINE") {
            c.confine = !matches!(v.trim(), "0" | "false" | "off" | "no");
        }
        // Pinning pays when each CPU gets at most one worker; with more
        // workers than CPUs, pinned ones could not be rebalanced, so the
        // default then leaves placement to the kernel.
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        c.pin_workers = match lookup("PICLOUD_CPU_PINNING").as_deref().map(str::trim) {
            None | Some("auto") => c.workers <= cpus,
            Some("1" | "true" | "on" | "yes") => true,
            Some("0" | "false" | "off" | "no") => false,
            Some(other) => {
                return Err(SandboxError::Config(format!(
                    "PICLOUD_CPU_PINNING must be 1, 0 or auto, got `{}`",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        c.worker_user = lookup(crate::confine::WORKER_USER_ENV).filter(|u| !u.trim().is_empty());
        c.allow_weak_sandbox =
            lookup(crate::confine::ALLOW_WEAK_ENV).is_some_and(|v| v.trim() == "1");
        c.validate()?;
        Ok(c)
    }

    /// Refuses settings the pool cannot run with.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |m: &str| Err(SandboxError::Config(m.to_owned()));
        if self.workers == 0 {
            return bad("the pool needs at least one worker");
        }
        if self.per_script_concurrency == 0 {
            return bad("the per-script concurrency must be at least one");
        }
        if self.max_invocations_per_worker == 0 {
            return bad("a worker must be allowed at least one invocation");
        }
        if !(0.0..1.0).contains(&self.recycle_jitter) {
            return bad("the recycle jitter must be in [0, 1)");
        }
        if self.queue_timeout.is_zero() || self.worker_start_timeout.is_zero() {
            return bad("the queue and start timeouts must be positive");
        }
        if self.worker_cpu_recycle >= self.worker_cpu_limit {
            return bad("workers must be recycled by CPU below their CPU limit");
        }
        Ok(())
    }
}

/// The binary, the 256 MiB main stack the zygote sets and allocator slack
/// sit above the heap cap in a worker's address space.
fn address_space_for(heap_hard_cap_bytes: u64) -> u64 {
    heap_hard_cap_bytes.saturating_add(512 * MIB)
}

/// Half the workers, at least one: one script can never hold the whole pool
/// (unless the pool has a single worker).
pub fn default_script_concurrency(workers: usize) -> usize {
    (workers / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<PoolConfig, SandboxError> {
        PoolConfig::from_lookup(PathBuf::from("picloud"), |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn isolation_parses_the_three_modes() {
        for mode in [
            Isolation::PerScript,
            Isolation::Shared,
            Isolation::PerInvocation,
        ] {
            assert_eq!(mode.as_str().parse::<Isolation>(), Ok(mode));
        }
        assert!("fast".parse::<Isolation>().is_err());
        assert_eq!(Isolation::default(), Isolation::PerScript);
    }

    #[test]
    fn environment_overrides_defaults() {
        let c = from(&[
            ("PICLOUD_WORKERS", "6"),
            ("PICLOUD_ISOLATION", "per-invocation"),
            ("PICLOUD_QUEUE_TIMEOUT_MS", "250"),
            ("PICLOUD_WORKER_MAX_INVOCATIONS", "100"),
            ("PICLOUD_CONFINE", "0"),
        ])
        .unwrap();
        assert_eq!(c.workers, 6);
        assert_eq!(c.per_script_concurrency, 3);
        assert_eq!(c.isolation, Isolation::PerInvocation);
        assert_eq!(c.queue_timeout, Duration::from_millis(250));
        assert_eq!(c.max_invocations_per_worker, 100);
        assert!(!c.confine);
        assert!(
            from(&[]).unwrap().confine,
            "confinement is on unless switched off"
        );
    }

    #[test]
    fn bad_values_are_refused_not_clamped() {
        assert!(from(&[("PICLOUD_WORKERS", "0")]).is_err());
        assert!(from(&[("PICLOUD_WORKERS", "many")]).is_err());
        assert!(from(&[("PICLOUD_ISOLATION", "none")]).is_err());
        assert!(
            from(&[
                ("PICLOUD_WORKER_CPU_LIMIT_SECS", "10"),
                ("PICLOUD_WORKER_CPU_RECYCLE_SECS", "20")
            ])
            .is_err()
        );
    }

    #[test]
    fn workers_are_pinned_by_default_only_when_each_cpu_gets_at_most_one() {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let fits = cpus.to_string();
        let more = (cpus + 1).to_string();
        assert!(from(&[("PICLOUD_WORKERS", &fits)]).unwrap().pin_workers);
        assert!(!from(&[("PICLOUD_WORKERS", &more)]).unwrap().pin_workers);
        let auto = from(&[("PICLOUD_WORKERS", &more), ("PICLOUD_CPU_PINNING", "auto")]);
        assert!(!auto.unwrap().pin_workers);
        let forced = from(&[("PICLOUD_WORKERS", &more), ("PICLOUD_CPU_PINNING", "1")]);
        assert!(forced.unwrap().pin_workers);
        assert!(!from(&[("PICLOUD_CPU_PINNING", "off")]).unwrap().pin_workers);
        assert!(from(&[("PICLOUD_CPU_PINNING", "sometimes")]).is_err());
    }

    #[test]
    fn script_concurrency_is_half_the_pool_but_never_zero() {
        assert_eq!(default_script_concurrency(1), 1);
        assert_eq!(default_script_concurrency(2), 1);
        assert_eq!(default_script_concurrency(8), 4);
    }
}
