//! Subsystems that care about configuration changes register a [`Listener`], like ProxyFS
//! packages register transition callbacks: creation-type steps call listeners in
//! registration order, destruction-type steps in reverse — so the supervisor (registered
//! first) creates a unit before the D-Bus object for it is exported, and the object is
//! removed before the unit.

use std::future::Future;
use std::pin::Pin;

use crate::config::{Config, Group, Service};

/// The future a listener returns for one step.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One step of an applied plan, as listeners see it (the names of DESIGN.md's order).
#[derive(Debug)]
pub enum Step<'a> {
    ToBeUnserved(&'a [String]),
    ReloadStarted(u64),
    GroupsCreated(&'a [(String, Group)]),
    ServicesCreated(&'a [(String, Service)]),
    /// Stop these (stop order).
    Unserved(&'a [String]),
    GroupsMoved(&'a [(String, Group)]),
    ServicesMoved(&'a [(String, Option<String>)]),
    ServicesChanged(&'a [(String, Service)]),
    /// Start `served` (dependency order) and restart `restarted` on their new definition.
    Served {
        served: &'a [String],
        restarted: &'a [String],
    },
    ServicesDestroyed(&'a [String]),
    GroupsDestroyed(&'a [String]),
    ReloadFinished(u64),
}

impl Step<'_> {
    /// Destruction-type steps run listeners in reverse registration order (ProxyFS).
    pub fn runs_in_reverse(&self) -> bool {
        matches!(
            self,
            Step::ToBeUnserved(_)
                | Step::ReloadStarted(_)
                | Step::Unserved(_)
                | Step::ServicesDestroyed(_)
                | Step::GroupsDestroyed(_)
        )
    }
}

/// A subsystem that reacts to configuration transitions.
pub trait Listener: Send + Sync {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Carries out `step`; `new` is the configuration being applied. A listener that does
    /// not care about a step returns at once.
    fn on_step<'a>(&'a self, step: &'a Step<'a>, new: &'a Config) -> StepFuture<'a>;
}
