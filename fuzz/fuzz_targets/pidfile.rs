//! Fuzz target `pidfile`: see `fuzz/checks/pidfile.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::pidfile::check(data));
