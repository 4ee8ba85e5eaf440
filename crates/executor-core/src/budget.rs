//! The per-invocation budget the engine's progress hook enforces.
//!
//! Rhai calls the progress hook once per operation everywhere, including
//! inside closures that native functions such as `map`, `filter`, `reduce`
//! and `sort` call back; Rhai's own operation counter loses those (it counts
//! them on a cloned state that is thrown away), so the budget keeps its own.
//!
//! Invariants:
//! - [`Budget::start`] resets everything; the hook then only ever counts up.
//! - Once a limit trips, the trip is sticky: every later operation trips
//!   again with the same reason. A script can catch the first termination
//!   when it surfaces wrapped in a function-call error, but cannot run another
//!   operation after it, and a builtin that swallows callback errors (`sort`)
//!   stops at the first operation after it returns.
//! - Per operation the hook does one counter increment, one comparison with
//!   the next checkpoint and one relaxed atomic load (the heap meter); the
//!   clock is read only at checkpoints, every [`CLOCK_CHECK_INTERVAL`]
//!   operations.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::Dynamic;
use shared::Outcome;

use crate::heap;

/// Operations between two reads of the wall clock. Reading it every
/// operation costs about 25 ns (several times a plain loop iteration); every
/// 256 operations is free in practice, and even the slowest measured
/// operations (O(size) string scans, deep clones: ~150 µs each) overshoot a
/// deadline by at most ~40 ms.
pub const CLOCK_CHECK_INTERVAL: u32 = 256;

/// Which limit ended a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    Operations,
    WallTime,
    Memory,
}

impl Trip {
    pub fn outcome(self) -> Outcome {
        match self {
            Trip::Operations => Outcome::OperationLimit,
            Trip::WallTime => Outcome::Timeout,
            Trip::Memory => Outcome::MemoryLimit,
        }
    }

    /// The token Rhai carries in `ErrorTerminated`; the runtime reads the
    /// reason from the budget, so this only has to be recognisable.
    fn token(self) -> Dynamic {
        Dynamic::from(match self {
            Trip::Operations => "operation limit",
            Trip::WallTime => "wall-clock limit",
            Trip::Memory => "memory limit",
        })
    }
}

/// Counters and limits of the invocation in progress.
#[derive(Debug)]
pub struct Budget {
    operations: Cell<u64>,
    /// The operation count at which the slow path runs next: the next clock
    /// check or the operation limit, whichever comes first; 0 once tripped.
    next_check: Cell<u64>,
    max_operations: Cell<u64>,
    deadline: Cell<Instant>,
    heap_baseline: Cell<u64>,
    /// Live heap total (signed, as the meter keeps it) above which the
    /// script is over its memory limit.
    heap_ceiling: Cell<i64>,
    tripped: Cell<Option<Trip>>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            operations: Cell::new(0),
            next_check: Cell::new(u64::from(CLOCK_CHECK_INTERVAL)),
            max_operations: Cell::new(u64::MAX),
            deadline: Cell::new(far_future()),
            heap_baseline: Cell::new(0),
            heap_ceiling: Cell::new(i64::MAX),
            tripped: Cell::new(None),
        }
    }
}

fn far_future() -> Instant {
    let now = Instant::now();
    // A year is "never" for an invocation and cannot overflow `Instant`.
    now.checked_add(Duration::from_hours(365 * 24))
        .unwrap_or(now)
}

impl Budget {
    /// Starts a new invocation: counts from zero, measures the heap from its
    /// current level, and sets the deadline `wall` from now.
    pub fn start(&self, max_operations: u64, wall: Duration, memory_bytes: u64) {
        let now = Instant::now();
        self.operations.set(0);
        self.max_operations.set(max_operations);
        self.deadline
            .set(now.checked_add(wall).unwrap_or_else(far_future));
        self.schedule_check(0);
        let baseline = heap::live_bytes();
        self.heap_baseline.set(baseline);
        self.heap_ceiling.set(if heap::counting_enabled() {
            let memory = i64::try_from(memory_bytes).unwrap_or(i64::MAX);
            heap::live_raw().saturating_add(memory)
        } else {
            i64::MAX
        });
        heap::reset_peak();
        self.tripped.set(None);
    }

    /// Lifts the limits after an invocation, so host-side work that happens
    /// to run Rhai (warm-up, conversions) is never cut short by a stale budget.
    pub fn stop(&self) {
        self.max_operations.set(u64::MAX);
        self.deadline.set(far_future());
        self.heap_ceiling.set(i64::MAX);
        if self.tripped.get().is_none() {
            self.schedule_check(self.operations.get());
        }
    }

    fn schedule_check(&self, operations: u64) {
        let clock = operations.saturating_add(u64::from(CLOCK_CHECK_INTERVAL));
        let limit = self.max_operations.get().saturating_add(1);
        self.next_check.set(clock.min(limit));
    }

    /// The progress hook: `Some(token)` ends the script. The common path is
    /// one increment, one comparison and one relaxed atomic load.
    #[inline]
    pub fn on_operation(&self) -> Option<Dynamic> {
        let operations = self.operations.get() + 1;
        self.operations.set(operations);
        if operations >= self.next_check.get() {
            return self.checkpoint(operations);
        }
        if heap::live_raw() > self.heap_ceiling.get() {
            return Some(self.trip(Trip::Memory));
        }
        None
    }

    /// The slow path: a tripped limit, the operation limit, the clock.
    #[cold]
    fn checkpoint(&self, operations: u64) -> Option<Dynamic> {
        if let Some(trip) = self.tripped.get() {
            // Operations refused after the trip did not run.
            self.operations.set(operations - 1);
            return Some(trip.token());
        }
        if operations > self.max_operations.get() {
            return Some(self.trip(Trip::Operations));
        }
        if heap::live_raw() > self.heap_ceiling.get() {
            return Some(self.trip(Trip::Memory));
        }
        if Instant::now() >= self.deadline.get() {
            return Some(self.trip(Trip::WallTime));
        }
        self.schedule_check(operations);
        None
    }

    /// Checks the memory and wall limits between operations, for host-side
    /// steps of an invocation (building `request`, converting the result).
    pub fn check_now(&self) -> Option<Trip> {
        if let Some(trip) = self.tripped.get() {
            return Some(trip);
        }
        if heap::live_raw() > self.heap_ceiling.get() {
            self.record(Trip::Memory);
        } else if Instant::now() >= self.deadline.get() {
            self.record(Trip::WallTime);
        }
        self.tripped.get()
    }

    fn trip(&self, trip: Trip) -> Dynamic {
        self.record(trip);
        trip.token()
    }

    fn record(&self, trip: Trip) {
        self.tripped.set(Some(trip));
        // Every later operation takes the slow path and is refused.
        self.next_check.set(0);
    }

    pub fn tripped(&self) -> Option<Trip> {
        self.tripped.get()
    }

    /// Operations counted so far, callbacks included.
    pub fn operations(&self) -> u64 {
        self.operations.get()
    }

    /// Peak heap above the invocation's baseline (0 when counting is off).
    pub fn peak_heap_bytes(&self) -> u64 {
        heap::peak_bytes().saturating_sub(self.heap_baseline.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_trip_past_the_limit_and_stay_tripped() {
        let budget = Budget::default();
        budget.start(3, Duration::from_mins(1), u64::MAX);
        for _ in 0..3 {
            assert!(budget.on_operation().is_none());
        }
        assert!(budget.on_operation().is_some());
        assert_eq!(budget.tripped(), Some(Trip::Operations));
        // Sticky: the next operation is refused too, and not counted.
        assert!(budget.on_operation().is_some());
        assert_eq!(budget.operations(), 4);
        assert!(budget.on_operation().is_some());
        assert_eq!(budget.operations(), 4);
    }

    #[test]
    fn the_deadline_is_checked_every_interval() {
        let budget = Budget::default();
        budget.start(u64::MAX, Duration::ZERO, u64::MAX);
        let mut ops = 0;
        while budget.on_operation().is_none() {
            ops += 1;
            assert!(ops <= CLOCK_CHECK_INTERVAL, "deadline never checked");
        }
        assert_eq!(budget.operations(), u64::from(CLOCK_CHECK_INTERVAL));
        assert_eq!(budget.tripped(), Some(Trip::WallTime));
        assert_eq!(budget.tripped().map(Trip::outcome), Some(Outcome::Timeout));
    }

    #[test]
    fn start_resets_a_trip() {
        let budget = Budget::default();
        budget.start(0, Duration::from_secs(1), u64::MAX);
        assert!(budget.on_operation().is_some());
        budget.start(10, Duration::from_secs(1), u64::MAX);
        assert_eq!(budget.tripped(), None);
        assert!(budget.on_operation().is_none());
    }
}
