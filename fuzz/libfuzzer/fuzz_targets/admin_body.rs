//! libFuzzer target `admin_body`: see `picloud_fuzz_harness::admin`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picloud_fuzz_harness::admin::run(data));
