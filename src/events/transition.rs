//! The transitions a reload is announced as: one Manager D-Bus signal each, in the order
//! DESIGN.md fixes (see `crate::transitions`).

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
