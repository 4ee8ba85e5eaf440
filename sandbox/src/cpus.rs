//! CPU placement: the CPUs this process may use, and pinning a thread or a
//! process to one of them (`PICLOUD_CPU_PINNING`).
//!
//! Why pin: per invocation a worker sleeps and wakes twice and a server
//! thread wakes at least once. Left to float, the scheduler moves them
//! between CPUs and wakes them across CPUs, which on a virtual machine is
//! an inter-processor interrupt each time; spread one per CPU they stay
//! where their caches are. Pinning is only ever a placement hint: when it
//! fails, the thread or process floats, which is slower, never wrong.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on, in order (empty if unknown).
pub fn usable() -> Vec<usize> {
    sched_getaffinity(Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// Binds `pid` (a process, or with pid 0 the calling thread) to `cpu`.
pub fn pin(pid: Pid, cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(pid, &set).is_ok()
}

/// Pins the calling thread to the `index`-th usable CPU (wrapping), for a
/// runtime that starts one thread per CPU; `usable` is [`usable`] taken
/// before any thread was pinned.
pub fn pin_current_thread(usable: &[usize], index: usize) -> Option<usize> {
    let cpu = *usable.get(index.checked_rem(usable.len())?)?;
    pin(Pid::from_raw(0), cpu).then_some(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_a_usable_cpu_runs_only_there() {
        let all = usable();
        assert!(!all.is_empty());
        let last = all.len() - 1;
        let pinned = std::thread::spawn(move || {
            let cpu = pin_current_thread(&usable(), last).unwrap();
            (cpu, usable())
        })
        .join()
        .unwrap();
        assert_eq!(pinned, (all[last], vec![all[last]]));
        assert_eq!(usable(), all, "only the pinned thread changed");
        assert_eq!(pin_current_thread(&[], 3), None);
    }
}
