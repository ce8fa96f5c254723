//! Fuzz target `config`: see `fuzz/checks/config.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::config::check(data));
