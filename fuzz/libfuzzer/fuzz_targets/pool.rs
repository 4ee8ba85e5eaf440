//! libFuzzer target `pool`: see `picloud_fuzz_harness::pool`.
//!
//! This binary is also the pool's zygote, as `picloud` is in production:
//! the pool re-executes it with the hidden zygote argument, and `init`
//! (which libFuzzer runs before it reads its own flags) turns that process
//! into the zygote before libFuzzer does anything else. The counting allocator is
//! the allocator of this binary, so the forked workers meter their heap.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use picloud_fuzz_harness::pool::PoolTarget;

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

static TARGET: OnceLock<PoolTarget> = OnceLock::new();

/// In the zygote (and the workers it forks), the default panic hook, as in
/// `picloud`: libFuzzer's hook would abort where the runtime catches.
fn zygote_if_requested() {
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(sandbox::ZYGOTE_ARG)) {
        drop(std::panic::take_hook());
        sandbox::run_zygote_if_requested();
    }
}

fuzz_target!(
    init: zygote_if_requested(),
    |data: &[u8]| {
        let target = TARGET.get_or_init(|| {
            let exe = std::env::current_exe().expect("the fuzz binary knows its path");
            PoolTarget::start(exe)
        });
        target.run(data);
    }
);
