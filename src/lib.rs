//! corral: a service supervisor that publishes every daemon it runs on the D-Bus system bus.

pub mod config;
pub mod error;
pub mod names;
pub mod process;
pub mod service_notify;
pub mod supervisor;
pub mod transitions;
