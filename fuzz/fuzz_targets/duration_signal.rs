//! Fuzz target `duration_signal`: see `fuzz/checks/duration_signal.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::duration_signal::check(data));
