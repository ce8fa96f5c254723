//! Fuzz target `notify`: see `fuzz/checks/notify.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::notify::check(data));
