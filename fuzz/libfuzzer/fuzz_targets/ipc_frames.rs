//! libFuzzer target `ipc_frames`: see `picloud_fuzz_harness::ipc`.
//!
//! The counting allocator is this binary's allocator and counts from the
//! start, so the target can check what decoding a frame allocates.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

fuzz_target!(
    init: executor_core::heap::enable_counting(u64::MAX >> 1),
    |data: &[u8]| picloud_fuzz_harness::ipc::frames(data)
);
