//! Fuzz target `transitions`: see `fuzz/checks/transitions.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::transitions::check(data));
