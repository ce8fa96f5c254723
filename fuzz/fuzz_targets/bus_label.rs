//! Fuzz target `bus_label`: see `fuzz/checks/bus_label.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::bus_label::check(data));
