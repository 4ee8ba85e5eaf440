//! Who gets which idle worker: the pool's scheduling state, free of I/O.
//!
//! Invariants (all under the pool's one mutex, which is never held across an
//! `.await` and under which no worker is ever dropped — removed workers are
//! returned to the caller to drop after unlocking):
//! - a worker is in exactly one place: an idle list here, or one lease;
//! - `running[s]` counts the leases of script `s` and never passes its cap;
//!   all leases together never pass the pool's `workers`, however many
//!   processes it keeps (`per-invocation` keeps spares);
//! - in `per-script` mode a worker that ran script `s` is only ever handed to
//!   `s` again; in `per-invocation` mode only never-used workers are handed
//!   out; compile checks take never-used workers except in `shared` mode;
//! - waiters are served first-come first-served among those that can run
//!   (a waiter whose script is at its cap is skipped, not blocking others);
//! - the wait queue holds at most `queue_capacity` waiters and one script at
//!   most half of them, so one flooding script cannot fill it alone.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use shared::ScriptId;
use tokio::sync::oneshot;

use crate::config::Isolation;

/// What the scheduler needs to know about a worker.
pub(crate) trait Schedulable {
    fn pid(&self) -> u32;
    /// The script it ran, if it ran any.
    fn bound(&self) -> Option<ScriptId>;
    /// It never ran anything.
    fn is_fresh(&self) -> bool;
    fn last_used(&self) -> Instant;
}

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Run,
    Compile,
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    QueueFull,
    ScriptQueueFull,
    /// The pool is shutting down.
    Closed,
}

/// The result of asking for a worker.
pub(crate) enum Acquire<W> {
    Granted(W),
    Queued {
        waiter: u64,
        rx: oneshot::Receiver<W>,
    },
    Refused(Refusal),
}

struct Waiter<W> {
    id: u64,
    key: ScriptId,
    purpose: Purpose,
    tx: oneshot::Sender<W>,
}

pub(crate) struct Scheduler<W> {
    isolation: Isolation,
    default_cap: usize,
    caps: HashMap<ScriptId, usize>,
    queue_capacity: usize,
    per_script_queue: usize,
    /// Never-used workers.
    fresh: Vec<W>,
    /// Used, idle workers in `shared` mode.
    idle: Vec<W>,
    /// Used, idle workers per script in `per-script` mode.
    bound: HashMap<ScriptId, Vec<W>>,
    running: HashMap<ScriptId, usize>,
    queued: HashMap<ScriptId, usize>,
    waiters: VecDeque<Waiter<W>>,
    next_waiter: u64,
    /// Workers that left and whose replacements have not arrived yet.
    expected_fresh: usize,
    busy: usize,
    /// Most leases at once.
    max_busy: usize,
    /// Set by `drain_waiters`: nothing queues any more.
    closed: bool,
}

impl<W: Schedulable> Scheduler<W> {
    pub(crate) fn new(
        isolation: Isolation,
        workers: usize,
        default_cap: usize,
        queue_capacity: usize,
    ) -> Self {
        Self {
            isolation,
            default_cap,
            caps: HashMap::new(),
            queue_capacity,
            per_script_queue: (queue_capacity / 2).max(1),
            fresh: Vec::new(),
            idle: Vec::new(),
            bound: HashMap::new(),
            running: HashMap::new(),
            queued: HashMap::new(),
            waiters: VecDeque::new(),
            next_waiter: 0,
            expected_fresh: isolation.processes(workers),
            busy: 0,
            max_busy: workers.max(1),
            closed: false,
        }
    }

    pub(crate) fn set_cap(&mut self, key: ScriptId, cap: Option<usize>) {
        match cap {
            Some(c) => self.caps.insert(key, c.max(1)),
            None => self.caps.remove(&key),
        };
    }

    fn cap(&self, key: ScriptId) -> usize {
        self.caps.get(&key).copied().unwrap_or(self.default_cap)
    }

    fn running(&self, key: ScriptId) -> usize {
        self.running.get(&key).copied().unwrap_or(0)
    }

    /// A worker now, a place in the queue, or a refusal. Also returns
    /// workers to retire (evicted for this request), to drop after unlocking.
    pub(crate) fn acquire(&mut self, key: ScriptId, purpose: Purpose) -> (Acquire<W>, Vec<W>) {
        if self.closed {
            return (Acquire::Refused(Refusal::Closed), Vec::new());
        }
        if self.busy < self.max_busy
            && self.running(key) < self.cap(key)
            && let Some(w) = self.take_worker_for(key, purpose)
        {
            self.start(key);
            return (Acquire::Granted(w), Vec::new());
        }
        if self.waiters.len() >= self.queue_capacity {
            return (Acquire::Refused(Refusal::QueueFull), Vec::new());
        }
        let queued = self.queued.entry(key).or_insert(0);
        if *queued >= self.per_script_queue {
            return (Acquire::Refused(Refusal::ScriptQueueFull), Vec::new());
        }
        *queued += 1;
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back(Waiter {
            id,
            key,
            purpose,
            tx,
        });
        let retire = self.dispatch();
        (Acquire::Queued { waiter: id, rx }, retire)
    }

    /// A waiter gave up; false if it was already served (its worker is in its channel).
    pub(crate) fn cancel(&mut self, waiter: u64) -> bool {
        let Some(pos) = self.waiters.iter().position(|w| w.id == waiter) else {
            return false;
        };
        if let Some(w) = self.waiters.remove(pos) {
            self.dequeued(w.key);
        }
        true
    }

    /// A lease ended and its worker may serve again.
    pub(crate) fn release(&mut self, key: ScriptId, worker: W) -> Vec<W> {
        self.stop(key);
        self.put_back(worker);
        self.dispatch()
    }

    /// A lease ended and its worker is gone for good (recycled, crashed, killed).
    pub(crate) fn release_retired(&mut self, key: ScriptId) -> Vec<W> {
        self.stop(key);
        self.expected_fresh += 1;
        self.dispatch()
    }

    /// A new worker is ready.
    pub(crate) fn add_fresh(&mut self, worker: W) -> Vec<W> {
        self.expected_fresh = self.expected_fresh.saturating_sub(1);
        self.fresh.push(worker);
        self.dispatch()
    }

    /// An idle worker died; returns it (to drop) if it was idle here.
    pub(crate) fn remove_idle(&mut self, pid: u32) -> Option<W> {
        let found = take_pid(&mut self.fresh, pid)
            .or_else(|| take_pid(&mut self.idle, pid))
            .or_else(|| self.bound.values_mut().find_map(|v| take_pid(v, pid)));
        if found.is_some() {
            self.bound.retain(|_, v| !v.is_empty());
            self.expected_fresh += 1;
        }
        found
    }

    /// Every idle worker (the zygote died, or the pool is closing).
    pub(crate) fn drain_idle(&mut self) -> Vec<W> {
        let mut all: Vec<W> = self.fresh.drain(..).chain(self.idle.drain(..)).collect();
        for (_, v) in self.bound.drain() {
            all.extend(v);
        }
        self.expected_fresh += all.len();
        all
    }

    /// Drops every waiter's sender (they see the pool closed) and refuses
    /// every later request.
    pub(crate) fn drain_waiters(&mut self) {
        self.closed = true;
        self.waiters.clear();
        self.queued.clear();
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.fresh.len() + self.idle.len() + self.bound.values().map(Vec::len).sum::<usize>()
    }

    pub(crate) fn busy_count(&self) -> usize {
        self.busy
    }

    pub(crate) fn queued_count(&self) -> usize {
        self.waiters.len()
    }

    fn start(&mut self, key: ScriptId) {
        *self.running.entry(key).or_insert(0) += 1;
        self.busy += 1;
    }

    fn stop(&mut self, key: ScriptId) {
        if let Some(n) = self.running.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&key);
            }
        }
        self.busy = self.busy.saturating_sub(1);
    }

    fn dequeued(&mut self, key: ScriptId) {
        if let Some(n) = self.queued.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.queued.remove(&key);
            }
        }
    }

    fn take_worker_for(&mut self, key: ScriptId, purpose: Purpose) -> Option<W> {
        match (self.isolation, purpose) {
            (Isolation::Shared, _) => self.idle.pop().or_else(|| self.fresh.pop()),
            (Isolation::PerInvocation, _) | (Isolation::PerScript, Purpose::Compile) => {
                self.fresh.pop()
            }
            (Isolation::PerScript, Purpose::Run) => {
                let own = self.bound.get_mut(&key).and_then(Vec::pop);
                if self.bound.get(&key).is_some_and(Vec::is_empty) {
                    self.bound.remove(&key);
                }
                own.or_else(|| self.fresh.pop())
            }
        }
    }

    fn put_back(&mut self, worker: W) {
        match (self.isolation, worker.bound()) {
            (_, None) if worker.is_fresh() => self.fresh.push(worker),
            (Isolation::PerScript, Some(key)) => self.bound.entry(key).or_default().push(worker),
            // Used workers never return in per-invocation mode (the caller
            // retires them); this arm keeps a stray one out of `fresh`.
            _ => self.idle.push(worker),
        }
    }

    /// Serves waiters that can run now; evicts least-recently-used idle
    /// workers of other scripts when `per-script` waiters have none.
    fn dispatch(&mut self) -> Vec<W> {
        let mut need_fresh = 0;
        let mut i = 0;
        while i < self.waiters.len() && self.busy < self.max_busy {
            let (key, purpose) = (self.waiters[i].key, self.waiters[i].purpose);
            if self.running(key) >= self.cap(key) {
                i += 1;
                continue;
            }
            let Some(worker) = self.take_worker_for(key, purpose) else {
                need_fresh += 1;
                i += 1;
                continue;
            };
            let waiter = self.waiters.remove(i).expect("index checked against len");
            self.dequeued(key);
            self.start(key);
            if let Err(worker) = waiter.tx.send(worker) {
                // The waiter left without cancelling: the worker is unused.
                self.stop(key);
                self.put_back(worker);
            }
        }
        let mut retire = Vec::new();
        if self.isolation != Isolation::Shared {
            while need_fresh > self.expected_fresh {
                let Some(w) = self.pop_lru_bound() else { break };
                self.expected_fresh += 1;
                retire.push(w);
            }
        }
        retire
    }

    fn pop_lru_bound(&mut self) -> Option<W> {
        let (key, idx) = self
            .bound
            .iter()
            .flat_map(|(k, v)| {
                v.iter()
                    .enumerate()
                    .map(move |(i, w)| (*k, i, w.last_used()))
            })
            .min_by_key(|(_, _, t)| *t)
            .map(|(k, i, _)| (k, i))?;
        let list = self.bound.get_mut(&key)?;
        let w = list.remove(idx);
        if list.is_empty() {
            self.bound.remove(&key);
        }
        Some(w)
    }
}

fn take_pid<W: Schedulable>(list: &mut Vec<W>, pid: u32) -> Option<W> {
    let pos = list.iter().position(|w| w.pid() == pid)?;
    Some(list.remove(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A stand-in for a worker handle: the scheduler only reads these fields.
    #[derive(Debug)]
    struct Slot {
        pid: u32,
        bound: Option<ScriptId>,
        used_at: Instant,
    }

    impl Schedulable for Slot {
        fn pid(&self) -> u32 {
            self.pid
        }
        fn bound(&self) -> Option<ScriptId> {
            self.bound
        }
        fn is_fresh(&self) -> bool {
            self.bound.is_none()
        }
        fn last_used(&self) -> Instant {
            self.used_at
        }
    }

    fn slot(pid: u32) -> Slot {
        Slot {
            pid,
            bound: None,
            used_at: Instant::now(),
        }
    }

    fn sid(n: u128) -> ScriptId {
        ScriptId(uuid::Uuid::from_u128(n))
    }

    fn granted(a: (Acquire<Slot>, Vec<Slot>)) -> Slot {
        match a.0 {
            Acquire::Granted(w) => w,
            _ => panic!("expected a worker"),
        }
    }

    #[test]
    fn per_script_workers_only_return_to_their_script() {
        let mut s = Scheduler::new(Isolation::PerScript, 2, 2, 8);
        assert!(s.add_fresh(slot(1)).is_empty());
        assert!(s.add_fresh(slot(2)).is_empty());
        let (a, b) = (sid(1), sid(2));
        let mut w = granted(s.acquire(a, Purpose::Run));
        w.bound = Some(a);
        s.release(a, w);
        // b gets the other, fresh worker, never a's.
        let wb = granted(s.acquire(b, Purpose::Run));
        assert_eq!(wb.bound, None);
        // A second b request finds only a's idle worker: it queues, and a's
        // worker is evicted so a fresh one can be made.
        let (acq, retire) = s.acquire(b, Purpose::Run);
        assert!(matches!(acq, Acquire::Queued { .. }));
        assert_eq!(retire.len(), 1);
        assert_eq!(retire[0].bound, Some(a));
        assert_eq!(s.idle_count(), 0);
        // The replacement goes to the waiter.
        let Acquire::Queued { mut rx, .. } = acq else {
            unreachable!()
        };
        assert!(s.add_fresh(slot(3)).is_empty());
        assert_eq!(rx.try_recv().unwrap().pid, 3);
    }

    #[test]
    fn eviction_waits_for_replacements_already_coming() {
        let mut s: Scheduler<Slot> = Scheduler::new(Isolation::PerScript, 1, 1, 8);
        // One worker expected from the start: a waiter must not evict anything yet.
        let (acq, retire) = s.acquire(sid(1), Purpose::Run);
        assert!(matches!(acq, Acquire::Queued { .. }));
        assert!(retire.is_empty());
    }

    #[test]
    fn least_recently_used_idle_script_is_evicted_first() {
        let mut s = Scheduler::new(Isolation::PerScript, 3, 3, 8);
        for pid in 1..=3 {
            s.add_fresh(slot(pid));
        }
        let t0 = Instant::now();
        for (n, age) in [(1, 30), (2, 10), (3, 20)] {
            let mut w = granted(s.acquire(sid(n), Purpose::Run));
            w.bound = Some(sid(n));
            w.used_at = t0.checked_sub(Duration::from_secs(age)).unwrap_or(t0);
            s.release(sid(n), w);
        }
        let (_, retire) = s.acquire(sid(9), Purpose::Run);
        // Script 1's worker was used longest ago.
        assert_eq!(
            retire.iter().map(|w| w.bound).collect::<Vec<_>>(),
            vec![Some(sid(1))]
        );
    }

    #[test]
    fn concurrency_cap_queues_and_skips_without_blocking_others() {
        let mut s = Scheduler::new(Isolation::Shared, 3, 1, 8);
        for pid in 1..=3 {
            s.add_fresh(slot(pid));
        }
        let (hot, other) = (sid(1), sid(2));
        let w1 = granted(s.acquire(hot, Purpose::Run));
        let (acq, _) = s.acquire(hot, Purpose::Run);
        let Acquire::Queued { mut rx, .. } = acq else {
            panic!("capped script must queue")
        };
        // Another script still gets a worker at once although a waiter is ahead.
        let w2 = granted(s.acquire(other, Purpose::Run));
        assert_eq!(s.busy_count(), 2);
        assert!(rx.try_recv().is_err());
        // When the hot lease ends, its waiter is served.
        s.release(hot, w1);
        assert!(rx.try_recv().is_ok());
        s.release(other, w2);
    }

    #[test]
    fn queue_bounds_refuse() {
        let mut s: Scheduler<Slot> = Scheduler::new(Isolation::Shared, 1, 1, 4);
        let (a, b) = (sid(1), sid(2));
        let mut kept = Vec::new();
        for _ in 0..2 {
            kept.push(s.acquire(a, Purpose::Run).0);
        }
        // Half the queue (2) is a's share.
        assert!(matches!(
            s.acquire(a, Purpose::Run).0,
            Acquire::Refused(Refusal::ScriptQueueFull)
        ));
        for _ in 0..2 {
            kept.push(s.acquire(b, Purpose::Run).0);
        }
        assert!(matches!(
            s.acquire(sid(3), Purpose::Run).0,
            Acquire::Refused(Refusal::QueueFull)
        ));
        assert_eq!(s.queued_count(), 4);
        let Acquire::Queued { waiter, .. } = &kept[0] else {
            panic!()
        };
        assert!(s.cancel(*waiter));
        assert!(!s.cancel(*waiter));
        assert_eq!(s.queued_count(), 3);
        s.drain_waiters();
        assert_eq!(s.queued_count(), 0);
        assert!(matches!(
            s.acquire(a, Purpose::Run).0,
            Acquire::Refused(Refusal::Closed)
        ));
    }

    #[test]
    fn per_invocation_hands_out_fresh_workers_only() {
        let mut s = Scheduler::new(Isolation::PerInvocation, 1, 1, 4);
        s.add_fresh(slot(1));
        let mut w = granted(s.acquire(sid(1), Purpose::Run));
        w.bound = Some(sid(1));
        // Even if a used worker were put back, it is never handed out again.
        s.release(sid(1), w);
        assert!(matches!(
            s.acquire(sid(1), Purpose::Run).0,
            Acquire::Queued { .. }
        ));
    }

    #[test]
    fn per_invocation_spares_wait_ready_but_never_raise_concurrency() {
        // Two workers: four processes, but two invocations at a time.
        assert_eq!(Isolation::PerInvocation.processes(2), 4);
        let mut s = Scheduler::new(Isolation::PerInvocation, 2, 4, 8);
        for pid in 1..=4 {
            assert!(s.add_fresh(slot(pid)).is_empty());
        }
        let first = granted(s.acquire(sid(1), Purpose::Run));
        let _second = granted(s.acquire(sid(2), Purpose::Run));
        let (third, _) = s.acquire(sid(3), Purpose::Run);
        let Acquire::Queued { mut rx, .. } = third else {
            panic!("a third invocation must wait while two run")
        };
        assert_eq!((s.busy_count(), s.idle_count()), (2, 2));
        // The first one's worker is retired; the waiter gets a spare at once,
        // before any replacement arrives.
        assert!(s.release_retired(sid(1)).is_empty());
        assert_ne!(rx.try_recv().expect("a spare was ready").pid, first.pid);
        assert_eq!((s.busy_count(), s.idle_count()), (2, 1));
    }

    #[test]
    fn a_waiter_that_left_gives_its_worker_back() {
        let mut s = Scheduler::new(Isolation::Shared, 1, 1, 4);
        let (acq, _) = s.acquire(sid(1), Purpose::Run);
        drop(acq); // the receiver is gone without cancelling
        assert!(s.add_fresh(slot(1)).is_empty());
        assert_eq!(s.idle_count(), 1);
        assert_eq!(s.busy_count(), 0);
        assert!(s.remove_idle(1).is_some());
        assert_eq!(s.idle_count(), 0);
    }
}
