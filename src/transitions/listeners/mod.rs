//! What each part of corrald does at each step of a plan. Parts register a [`Listener`],
//! like ProxyFS packages register transition callbacks: creation-type steps call listeners
//! in registration order, destruction-type steps in reverse — so the supervisor
//! (registered first) creates a unit before the D-Bus object for it is exported, and the
//! object is removed before the unit.
//!
//! The listeners live here, together, so one folder shows what a reload does to every
//! part; the parts themselves (supervisor, control channels, jobs, upcalls) know nothing
//! of transitions and offer plain methods.

mod control;
mod jobs;
mod objects;
mod supervisor;
mod upcall;

use std::future::Future;
use std::pin::Pin;

pub use control::ControlListener;
pub use jobs::JobsListener;
pub use objects::ObjectsListener;
pub use supervisor::SupervisorListener;
pub use upcall::UpcallListener;

use super::plan::Step;
use crate::config::Config;

/// What a listener found wrong while carrying out a step, one sentence each (a service
/// that failed to start). They make the reload's `ReloadFinished` say `ok = false`.
pub type Problems = Vec<String>;

/// The future a listener returns for one step.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Problems> + Send + 'a>>;

/// A part of corrald that reacts to configuration transitions.
pub trait Listener: Send + Sync {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Carries out `step`; `new` is the configuration being applied. A listener that does
    /// not care about a step returns at once with no problems.
    fn on_step<'a>(&'a self, step: &'a Step, new: &'a Config) -> StepFuture<'a>;

    /// A reload begins (`true`, before its first step) or ends (`false`, after
    /// `ReloadFinished`). The supervisor holds back client commands in between.
    fn reloading(&self, _reloading: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}
