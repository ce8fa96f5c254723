//! What a reload does: the [`Plan`] computed by [`super::diff()`], and the [`Transition`]s it
//! is announced as.

use crate::config::{DaemonSettings, Group, Service};

/// One announced configuration change; each variant is one Manager D-Bus signal of the same
/// name. `Reload()` returns them as `(kind, subject)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    ServiceToBeUnserved(String),
    ReloadStarted(u64),
    GroupCreated {
        group: String,
        peer: String,
    },
    ServiceCreated {
        name: String,
        group: String,
    },
    ServiceUnserved(String),
    GroupMoved {
        group: String,
        peer: String,
    },
    ServiceMoved {
        name: String,
        group: String,
    },
    ServiceChanged(String),
    ServiceServed(String),
    ServiceDestroyed(String),
    GroupDestroyed(String),
    ReloadFinished {
        generation: u64,
        ok: bool,
        error: String,
    },
}

impl Transition {
    /// The signal name, e.g. `"ServiceCreated"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::ServiceToBeUnserved(_) => "ServiceToBeUnserved",
            Transition::ReloadStarted(_) => "ReloadStarted",
            Transition::GroupCreated { .. } => "GroupCreated",
            Transition::ServiceCreated { .. } => "ServiceCreated",
            Transition::ServiceUnserved(_) => "ServiceUnserved",
            Transition::GroupMoved { .. } => "GroupMoved",
            Transition::ServiceMoved { .. } => "ServiceMoved",
            Transition::ServiceChanged(_) => "ServiceChanged",
            Transition::ServiceServed(_) => "ServiceServed",
            Transition::ServiceDestroyed(_) => "ServiceDestroyed",
            Transition::GroupDestroyed(_) => "GroupDestroyed",
            Transition::ReloadFinished { .. } => "ReloadFinished",
        }
    }

    /// What the transition is about: a service or group name, or the generation.
    pub fn subject(&self) -> String {
        match self {
            Transition::ServiceToBeUnserved(s)
            | Transition::ServiceUnserved(s)
            | Transition::ServiceChanged(s)
            | Transition::ServiceServed(s)
            | Transition::ServiceDestroyed(s)
            | Transition::GroupDestroyed(s) => s.clone(),
            Transition::GroupCreated { group, .. } | Transition::GroupMoved { group, .. } => {
                group.clone()
            }
            Transition::ServiceCreated { name, .. } | Transition::ServiceMoved { name, .. } => {
                name.clone()
            }
            Transition::ReloadStarted(generation) => generation.to_string(),
            Transition::ReloadFinished { generation, .. } => generation.to_string(),
        }
    }
}

/// The difference between two configurations, as the steps that turn one into the other.
/// Every list is already in the order it must be applied in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The new `[daemon]` settings.
    pub daemon: DaemonSettings,
    /// Services that stop being served here (including destroyed ones), stop order.
    pub to_be_unserved: Vec<String>,
    pub groups_created: Vec<(String, Group)>,
    /// New services with their definitions, name order.
    pub services_created: Vec<(String, Service)>,
    /// Same set as `to_be_unserved`, stop order: these are stopped.
    pub unserved: Vec<String>,
    /// Groups whose peer changed, with the new definition.
    pub groups_moved: Vec<(String, Group)>,
    /// Existing services whose `group` changed, with the new group (`None` = ungrouped).
    pub services_moved: Vec<(String, Option<String>)>,
    /// Existing services whose definition changed other than by `group`, with the new one.
    pub services_changed: Vec<(String, Service)>,
    /// Services that start being served here (including created ones), dependency order.
    pub served: Vec<String>,
    /// Served before and after, but their process changed: restarted on the new definition
    /// in step 6, dependency order.
    pub restarted: Vec<String>,
    pub services_destroyed: Vec<String>,
    pub groups_destroyed: Vec<String>,
}

impl Plan {
    /// Whether the plan changes nothing at all (the `[daemon]` settings included).
    pub fn is_empty(&self, old_daemon: &DaemonSettings) -> bool {
        self.daemon == *old_daemon && self.transition_count() == 0 && self.restarted.is_empty()
    }

    fn transition_count(&self) -> usize {
        self.to_be_unserved.len()
            + self.groups_created.len()
            + self.services_created.len()
            + self.unserved.len()
            + self.groups_moved.len()
            + self.services_moved.len()
            + self.services_changed.len()
            + self.served.len()
            + self.services_destroyed.len()
            + self.groups_destroyed.len()
    }

    /// The transitions of steps 3–7 (between `ReloadStarted` and `ReloadFinished`), in signal
    /// order. Step 1 is `to_be_unserved`; steps 2 and 8 carry the generation, which only the
    /// applier knows.
    pub fn transitions(&self) -> Vec<Transition> {
        let group_of = |group: &Option<String>| group.clone().unwrap_or_default();
        let mut out = Vec::with_capacity(self.transition_count());
        out.extend(
            self.groups_created
                .iter()
                .map(|(group, g)| Transition::GroupCreated {
                    group: group.clone(),
                    peer: g.peer.clone(),
                }),
        );
        out.extend(
            self.services_created
                .iter()
                .map(|(name, s)| Transition::ServiceCreated {
                    name: name.clone(),
                    group: group_of(&s.group),
                }),
        );
        out.extend(
            self.unserved
                .iter()
                .cloned()
                .map(Transition::ServiceUnserved),
        );
        out.extend(
            self.groups_moved
                .iter()
                .map(|(group, g)| Transition::GroupMoved {
                    group: group.clone(),
                    peer: g.peer.clone(),
                }),
        );
        out.extend(
            self.services_moved
                .iter()
                .map(|(name, group)| Transition::ServiceMoved {
                    name: name.clone(),
                    group: group_of(group),
                }),
        );
        out.extend(
            self.services_changed
                .iter()
                .map(|(name, _)| Transition::ServiceChanged(name.clone())),
        );
        out.extend(self.served.iter().cloned().map(Transition::ServiceServed));
        out.extend(
            self.services_destroyed
                .iter()
                .cloned()
                .map(Transition::ServiceDestroyed),
        );
        out.extend(
            self.groups_destroyed
                .iter()
                .cloned()
                .map(Transition::GroupDestroyed),
        );
        out
    }
}
