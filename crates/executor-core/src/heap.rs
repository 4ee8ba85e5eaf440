//! A counting global allocator: the worker's heap meter and its hard cap.
//!
//! A binary opts in by declaring
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: executor_core::heap::CountingAllocator = executor_core::heap::CountingAllocator::new();
//! ```
//!
//! Invariants:
//! - Counting is **off** until [`enable_counting`] is called. While off, every
//!   allocation costs one relaxed load and a predictable branch on top of the
//!   system allocator, and [`live_bytes`]/[`peak_bytes`] read 0. A
//!   multi-threaded server therefore never switches it on; a worker does, once,
//!   before its first request.
//! - While on, `LIVE` is the net number of bytes handed out since counting was
//!   enabled (bytes freed that were allocated before then make it lower than
//!   the true heap, never higher, which is why the counters are signed).
//!   `PEAK` is the highest `LIVE` since the last [`reset_peak`].
//! - An allocation that would take `LIVE` above the hard cap fails (returns
//!   null). Rust turns that into an abort, so the hard cap is the last line,
//!   not the limit a script normally meets: the runtime's progress hook
//!   compares `LIVE` against the script's soft `memory_bytes` on every
//!   operation and ends the script cleanly (see [`recommended_hard_cap`]).
//! - The counters are process-wide. In a single-threaded worker they measure
//!   the script; in a multi-threaded process they measure every thread.
//!
//! When the allocator is not installed, or counting is not enabled, the heap
//! stats read 0 and the memory limit falls back to Rhai's per-value size
//! limits (`string_bytes`, `array_len`, `map_len`), which do not bound the
//! total (see the feasibility note's E5/E7).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);
static HARD_CAP: AtomicI64 = AtomicI64::new(i64::MAX);

/// A [`System`] allocator that counts live bytes once [`enable_counting`] is called.
#[derive(Debug, Default)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// The allocator, ready to be a `#[global_allocator]`.
    pub const fn new() -> Self {
        Self
    }
}

/// Turns counting on (idempotent) and sets the hard cap: an allocation that
/// would take the live total above `hard_cap_bytes` fails, which aborts the
/// process. Call it once in a worker, before the first request.
pub fn enable_counting(hard_cap_bytes: u64) {
    let cap = i64::try_from(hard_cap_bytes).unwrap_or(i64::MAX);
    HARD_CAP.store(cap, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable_counting`] has been called in this process.
pub fn counting_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Bytes currently allocated through the counting allocator (0 when counting is off).
pub fn live_bytes() -> u64 {
    u64::try_from(LIVE.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The signed live total, for the progress hook's one-load comparison.
#[inline]
pub(crate) fn live_raw() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// The highest [`live_bytes`] since the last [`reset_peak`] (0 when counting is off).
pub fn peak_bytes() -> u64 {
    u64::try_from(PEAK.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Starts a new peak measurement at the current live total.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A hard cap that leaves room for one operation's worth of transient
/// allocation above the soft `memory_bytes` limit.
///
/// One Rhai operation can copy every value a script holds (`a + a`,
/// `s += s`, a deep clone), so the live total can briefly reach about twice
/// the soft limit before the progress hook sees it; the builtins that could
/// amplify further (`replace`, `split`, `pad`, `blob`, JSON and encodings) are
/// pre-checked against the per-value size limits. The extra 64 MiB covers the
/// runtime itself and one maximal string or response.
pub const fn recommended_hard_cap(memory_bytes: u64) -> u64 {
    memory_bytes
        .saturating_mul(3)
        .saturating_add(64 * 1024 * 1024)
}

#[inline]
fn size_as_i64(size: usize) -> i64 {
    // Allocation sizes never exceed isize::MAX, so this never saturates.
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Counts `size` more bytes, or refuses when that would pass the hard cap.
#[inline]
fn reserve(size: usize) -> bool {
    let size = size_as_i64(size);
    let live = LIVE.fetch_add(size, Ordering::Relaxed).saturating_add(size);
    if live > HARD_CAP.load(Ordering::Relaxed) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
        return false;
    }
    PEAK.fetch_max(live, Ordering::Relaxed);
    true
}

#[inline]
fn release(size: usize) {
    LIVE.fetch_sub(size_as_i64(size), Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters only decide whether to forward at all (returning
// null is a valid allocation failure).
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ENABLED.load(Ordering::Relaxed) {
            // SAFETY: same contract as ours.
            return unsafe { System.alloc(layout) };
        }
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            release(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !ENABLED.load(Ordering::Relaxed) {
            // SAFETY: same contract as ours.
            return unsafe { System.alloc_zeroed(layout) };
        }
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            release(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ENABLED.load(Ordering::Relaxed) {
            release(layout.size());
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ENABLED.load(Ordering::Relaxed) {
            // SAFETY: same contract as ours.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let old_size = layout.size();
        if new_size > old_size && !reserve(new_size - old_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if new_ptr.is_null() {
            // The old block is still allocated at its old size.
            if new_size > old_size {
                release(new_size - old_size);
            }
        } else if new_size < old_size {
            release(old_size - new_size);
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_cap_leaves_room_for_a_doubling() {
        let soft = 64 * 1024 * 1024;
        assert!(recommended_hard_cap(soft) > 2 * soft);
        assert_eq!(recommended_hard_cap(u64::MAX), u64::MAX);
    }

    // The unit-test binary does not install the allocator, so counting only
    // moves when these helpers are called directly.
    #[test]
    fn reserve_and_release_track_live_and_peak() {
        let before = LIVE.load(Ordering::Relaxed);
        assert!(reserve(1000));
        assert!(PEAK.load(Ordering::Relaxed) >= before + 1000);
        release(1000);
        assert_eq!(LIVE.load(Ordering::Relaxed), before);
    }
}
