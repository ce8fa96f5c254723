//! Fuzz target `control_frame`: see `fuzz/checks/control_frame.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::control_frame::check(data));
