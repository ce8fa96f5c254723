//! The process driver: everything that touches a child process directly — spawning it with
//! an explicit environment in its own process group, routing its output, signalling its
//! group, watching processes that are not our children, and adopting daemons from a pidfile.
//!
//! The supervisor decides *what* happens to a service; this module knows *how*.

pub mod group;
pub mod output;
pub mod pidfd;
pub mod pidfile;
pub mod signal;
pub mod spawn;

pub use output::OutputMode;
pub use spawn::{SpawnError, SpawnRequest, spawn};
