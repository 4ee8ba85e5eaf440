//! libFuzzer target `script`: see `picloud_fuzz_harness::script`.
//!
//! The counting allocator is this binary's allocator, as in a worker; the
//! harness switches it on with the hard cap a pool would give.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

fuzz_target!(|data: &[u8]| picloud_fuzz_harness::script::run(data));
