//! Configuration transitions, after ProxyFS: a reload is a pure diff of the old and new
//! configuration ([`diff()`](diff::diff)) into a [`Plan`], which the [`Applier`] carries out step by step,
//! calling every registered [`Listener`] and emitting one D-Bus signal per [`Transition`],
//! in the order DESIGN.md fixes:
//!
//! 1. `ServiceToBeUnserved`  2. `ReloadStarted`  3. `GroupCreated`, `ServiceCreated`
//! 4. `ServiceUnserved`  5. `GroupMoved`, `ServiceMoved`, `ServiceChanged`
//! 6. `ServiceServed`  7. `ServiceDestroyed`, `GroupDestroyed`  8. `ReloadFinished`
//!
//! Start-up (`Up`) is the diff from an empty configuration and shutdown (`Down`) the diff to
//! one, so there is a single code path for all three.

pub mod apply;
pub mod diff;
pub mod listener;
pub mod order;
pub mod plan;

pub use apply::Applier;
pub use diff::{apply_to, diff};
pub use listener::{Listener, Step, StepFuture};
pub use plan::{Plan, Transition};
