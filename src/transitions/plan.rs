//! What a reload does, as data: a [`Plan`] is the ordered list of [`PlannedStep`]s that
//! turns one configuration into another — what the listeners do at each step, the
//! [`Transition`]s the step is announced as, and whether the announcement comes before or
//! after the listeners act. [`super::diff()`] makes it; the applier is a loop over it.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{DaemonSettings, Group, Service};
use crate::events::Transition;

/// What the listeners carry out at one step (the names of DESIGN.md's order). Every list
/// is already in the order it must be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Services that stop being served here (destroyed ones included), stop order.
    ToBeUnserved(Vec<String>),
    /// The new `[daemon]` settings and groups take effect (placement of every group).
    ReloadStarted(u64),
    GroupsCreated(Vec<(String, Group)>),
    /// New services with their definitions, name order.
    ServicesCreated(Vec<(String, Arc<Service>)>),
    /// Stop these, stop order (the same services as `ToBeUnserved`).
    Unserved(Vec<String>),
    /// Groups whose peer changed, with the new definition.
    GroupsMoved(Vec<(String, Group)>),
    /// Groups whose `peers` (where they may move, in failover order) changed but not their
    /// peer: nothing is announced (no service moves), the new list takes effect.
    GroupsChanged(Vec<(String, Group)>),
    /// Existing services whose `group` changed, with the new group (`None` = ungrouped).
    ServicesMoved(Vec<(String, Option<String>)>),
    /// Existing services whose definition changed other than by `group`, with the new one.
    ServicesChanged(Vec<(String, Arc<Service>)>),
    Served(Served),
    ServicesDestroyed(Vec<String>),
    GroupsDestroyed(Vec<String>),
}

/// Step 6: what starts being served here, and what is (re)started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Services that start being served here (created ones included), dependency order.
    pub served: Vec<String>,
    /// Served before and after, but their process changed: restarted on the new
    /// definition if they run.
    pub restarted: BTreeSet<String>,
    /// The candidates to start — `served` services (those whose desired state or
    /// `autostart` says so) and `restarted` ones (those that run) — in one dependency
    /// order, so dependencies between new and restarted services hold.
    pub starts: Vec<String>,
}

/// When a step's transitions are signalled, relative to the listeners acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Most steps: the signal says it happened (an object is exported before its
    /// `ServiceCreated`).
    AfterActing,
    /// Destruction: the signal comes while the object still exists.
    BeforeActing,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub step: Step,
    pub transitions: Vec<Transition>,
    pub announce: Announce,
}

impl Step {
    /// Destruction-type steps run listeners in reverse registration order (ProxyFS), so
    /// what was created first is removed last.
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

/// The difference between two configurations, as the steps that turn one into the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The new `[daemon]` settings.
    pub daemon: DaemonSettings,
    /// The generation this plan brings the configuration to.
    pub generation: u64,
    /// In the order they are applied; a step with nothing to do is left out
    /// (`ReloadStarted` is always there).
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// Every transition the applier announces for this plan, in order — all but the final
    /// `ReloadFinished`, whose outcome only applying tells.
    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.steps.iter().flat_map(|s| s.transitions.iter())
    }

    /// The step of one kind, if the plan has it (for tests and the pure `apply_to`).
    pub fn find<T>(&self, pick: impl Fn(&Step) -> Option<&T>) -> Option<&T> {
        self.steps.iter().find_map(|s| pick(&s.step))
    }
}
