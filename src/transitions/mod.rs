//! Configuration transitions, after ProxyFS. A reload is a pure [`diff()`] of the old and
//! new configuration into a [`Plan`] — the ordered steps, each with the [`Transition`]s it
//! is announced as — and the [`Applier`] is a loop over that plan, calling every registered
//! [`Listener`] at each step and emitting one D-Bus signal per transition, in the order
//! DESIGN.md fixes:
//!
//! 1. `ServiceToBeUnserved`  2. `ReloadStarted`  3. `GroupCreated`, `ServiceCreated`
//! 4. `ServiceUnserved`  5. `GroupMoved`, `ServiceMoved`, `ServiceChanged`
//! 6. `ServiceServed`  7. `ServiceDestroyed`, `GroupDestroyed`  8. `ReloadFinished`
//!
//! Start-up (`Up`) is the diff from an empty configuration and shutdown (`Down`) the diff to
//! one, so there is a single code path for all three. The [`reloader`] task owns the
//! applier and serialises reloads, and applies the fleet's placements the same way
//! ([`fleet`]).
//!
//! [`Transition`]: crate::events::Transition

pub mod apply;
pub mod diff;
pub mod fleet;
pub mod listeners;
pub mod order;
pub mod plan;
pub mod reloader;

pub use apply::{Applied, Applier};
pub use diff::{apply_to, diff};
pub use listeners::{Listener, Problems, StepFuture};
pub use plan::{Announce, Plan, PlannedStep, Step};
