//! libFuzzer target `routes`: see `picloud_fuzz_harness::routes`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picloud_fuzz_harness::routes::run(data));
