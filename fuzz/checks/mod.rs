//! The properties the fuzz targets check, one module per target: each `check` takes the raw
//! fuzz input and panics when a property fails.
//!
//! One copy, used twice: the fuzz targets in `fuzz/fuzz_targets/` (nightly, libFuzzer, this
//! file as the `corral_fuzz` library) and `tests/fuzz_corpus.rs`, which replays every
//! committed corpus file through the same functions as an ordinary `cargo test` on stable.

pub mod bus_label;
pub mod config;
pub mod control_frame;
pub mod duration_signal;
mod generate;
pub mod notify;
pub mod pidfile;
pub mod transitions;

/// A target's check: panics when a property fails on the input.
pub type Check = fn(&[u8]);

/// Every target: its name (the folder of its corpus under `fuzz/corpus/`) and its check.
pub const TARGETS: [(&str, Check); 7] = [
    ("bus_label", bus_label::check),
    ("config", config::check),
    ("control_frame", control_frame::check),
    ("duration_signal", duration_signal::check),
    ("notify", notify::check),
    ("pidfile", pidfile::check),
    ("transitions", transitions::check),
];
