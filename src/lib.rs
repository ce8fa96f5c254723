//! corral: a service supervisor that publishes every daemon it runs on the D-Bus system bus.

pub mod bus;
pub mod client;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod error;
pub mod jobs;
pub mod logging;
pub mod manager_status;
pub mod methods;
pub mod names;
pub mod process;
pub mod reload;
pub mod service_notify;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod transitions;
pub mod upcall;
