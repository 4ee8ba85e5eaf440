//! libFuzzer target `http`: see `picloud_fuzz_harness::http`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picloud_fuzz_harness::http::run(data));
