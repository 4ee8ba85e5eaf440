//! Worker placement: with pinning on, each worker is bound to one CPU, the
//! least loaded of those the zygote may run on (why: [`crate::cpus`]).
//!
//! Invariants: a CPU's count is the number of live workers pinned to it
//! (a reaped worker gives its slot back); pinning failures are ignored (the
//! worker then floats, which is only slower); with fewer than two usable
//! CPUs nothing is pinned.

use std::collections::HashMap;

use nix::unistd::Pid;

use crate::cpus;

pub(super) struct Placement {
    /// The CPUs the zygote may use (its own affinity at start).
    cpus: Vec<usize>,
    /// Live workers pinned to each entry of `cpus`.
    load: Vec<usize>,
    of: HashMap<Pid, usize>,
    /// Where the search for the least-loaded CPU starts, so ties rotate.
    next: usize,
}

impl Placement {
    pub(super) fn new(enabled: bool) -> Self {
        let cpus = if enabled { cpus::usable() } else { Vec::new() };
        let cpus = if cpus.len() < 2 { Vec::new() } else { cpus };
        Self::with_cpus(cpus)
    }

    fn with_cpus(cpus: Vec<usize>) -> Self {
        Self {
            load: vec![0; cpus.len()],
            cpus,
            of: HashMap::new(),
            next: 0,
        }
    }

    /// The slot (index into the usable CPUs) for the next worker.
    fn choose(&mut self) -> Option<usize> {
        let n = self.cpus.len();
        let slot = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&slot| self.load[slot])?;
        self.next = (slot + 1) % n;
        Some(slot)
    }

    /// Pins a just-forked worker; returns the CPU, if it was pinned.
    pub(super) fn place(&mut self, pid: Pid) -> Option<usize> {
        let slot = self.choose()?;
        let cpu = self.cpus[slot];
        if !cpus::pin(pid, cpu) {
            return None;
        }
        self.load[slot] += 1;
        self.of.insert(pid, slot);
        Some(cpu)
    }

    /// A worker was reaped: its CPU has room again.
    pub(super) fn gone(&mut self, pid: Pid) {
        if let Some(slot) = self.of.remove(&pid) {
            self.load[slot] = self.load[slot].saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_one_per_cpu_and_freed_slots_are_reused_first() {
        let mut p = Placement::with_cpus(vec![0, 1, 2]);
        let picks: Vec<usize> = (0..6)
            .map(|i| {
                let slot = p.choose().unwrap();
                p.load[slot] += 1;
                p.of.insert(Pid::from_raw(100 + i), slot);
                slot
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // The worker on slot 1 (pid 101) goes: its slot is the only one with room.
        p.gone(Pid::from_raw(101));
        assert_eq!(p.choose(), Some(1));
        p.gone(Pid::from_raw(999));
        assert_eq!(p.load, [2, 1, 2]);
    }

    #[test]
    fn nothing_is_pinned_when_off_or_with_one_cpu() {
        assert!(Placement::new(false).choose().is_none());
        assert!(Placement::with_cpus(Vec::new()).choose().is_none());
    }

    #[test]
    fn a_forked_child_is_pinned_to_the_chosen_cpu() {
        let mut p = Placement::new(true);
        if p.cpus.is_empty() {
            eprintln!("skipped: fewer than two usable CPUs");
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let cpu = p.place(pid).expect("pinned");
        let set = nix::sched::sched_getaffinity(pid).unwrap();
        let pinned: Vec<usize> = (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(pinned, [cpu]);
        p.gone(pid);
        assert!(p.load.iter().all(|&l| l == 0));
    }
}
