//! corral: a service supervisor that publishes every daemon it runs on the D-Bus system bus.
//!
//! # Layout
//!
//! corrald is a handful of actors — tasks that each own their state and are driven by
//! commands over channels — around one ordered stream of facts to the D-Bus publisher.
//! Data flows one way:
//!
//! ```text
//!  config files ──► config ──► transitions::diff ──► Plan ──► transitions::apply (loop)
//!                  (validated     (pure)           (ordered      │ calls each listener
//!                   model)                           steps)      ▼ at each step
//!        ┌──────────────────┬──────────────┬─────────────┬─────────────┐
//!        ▼                  ▼              ▼             ▼             ▼
//!   supervisor          control          jobs         upcall      D-Bus objects
//!   (units, runs,       (one task per    (pools,      (watches,   (export/unexport)
//!    restarts)           channel: Online) recipes)     leases)
//!        │ drives process::* (spawn, cgroup, signal, pidfd, notify socket)
//!        ▼
//!   events (one ordered stream) ──► bus::publisher ──► signals, PropertiesChanged
//!        ▲
//!   D-Bus calls (bus::*) ──► commands to the actors ──► replies
//! ```
//!
//! - [`config`]: reading and checking the TOML files into a validated [`config::Config`].
//! - [`transitions`]: a reload as data — the pure [`transitions::diff()`] into a
//!   [`transitions::Plan`] of ordered steps — and the applier that is a loop over it, the
//!   reloader task that serialises reloads, and the listeners through which each part acts
//!   at each step.
//! - [`supervisor`]: the one task that owns every service's life cycle (start, stop, exit,
//!   restart back-off); everything else holds a cheap [`supervisor::Handle`].
//! - [`process`]: the process driver — spawning with an explicit environment and the
//!   service's limits, each service's cgroup (`process::cgroup`), signalling process
//!   groups, pidfds, pidfiles, the services' notify socket, one-off commands.
//! - [`control`]: each service's control-channel connection (JSON-RPC frames), the one
//!   owner of its `Online` property; [`methods`]: the `exec`/`control` drivers behind
//!   `Call`; [`jobs`]: recipe jobs and worker pools; [`upcall`]: watches, leases, recalls.
//! - [`events`]: the facts corrald publishes (service status, job outcomes, transitions,
//!   the manager's state) and the stream they travel to the publisher. It depends on no
//!   other part, so every fact has one owner and one path out.
//! - `fleet` (the default `fleet` cargo feature): several hosts through etcd — it decides
//!   where each group runs and tells the applier, which applies its placements as
//!   reloads ([`transitions::fleet`]); [`fence`]: the helper process that kills the
//!   services of fleet groups when corrald dies.
//! - [`store`]: the durable state (desired states, job history, run records) in SQLite,
//!   written by its own thread; every other part only sends it fire-and-forget writes.
//! - [`bus`]: the D-Bus objects (thin adapters that send commands to the actors), the
//!   publisher, access control and the wire errors; [`names`]: bus names and paths.
//! - [`daemon`]: `corrald` as a library function ([`daemon::run`]) that wires the parts
//!   together, and its own systemd integration; [`client`] and [`ctl`]: the typed proxies
//!   and `corralctl`; [`memory`]: corrald's malloc parameters, and the heap's free pages
//!   given back once start-up is done.
//!
//! No module depends on one that depends on it (`tests/architecture.rs` checks).

pub mod bus;
pub mod client;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod error;
pub mod events;
pub mod fence;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod fs_trust;
pub mod jobs;
pub mod logging;
pub mod man;
pub mod memory;
pub mod methods;
pub mod names;
pub mod process;
pub mod reexec;
pub mod store;
pub mod supervisor;
pub mod transitions;
pub mod upcall;
pub mod utc;

/// corral's version as the binaries report it (Manager `Version`, `--version`, man pages):
/// Cargo.toml's, unless the build sets `CORRAL_VERSION` — as a distribution's snapshot
/// build does, or `packaging/test-e2e` for the "version N+1" it upgrades to.
pub const VERSION: &str = match option_env!("CORRAL_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
