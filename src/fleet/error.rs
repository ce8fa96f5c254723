//! What a fleet request can fail with. Each variant says what to do about it; the D-Bus
//! layer maps `UnknownGroup` and `UnknownHost` to `InvalidArgs`.

/// A failed fleet request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// The group is not in this host's configuration.
    #[error("group {0:?} is not defined in this host's configuration")]
    UnknownGroup(String),
    /// The host cannot take the group: not one of its `peers`, not a valid name, or not
    /// alive in the fleet.
    #[error("group {group:?} cannot be placed on {peer:?}: {reason}")]
    UnknownHost {
        group: String,
        peer: String,
        reason: String,
    },
    /// This host has no live session with etcd right now (connecting, or contact lost).
    #[error("this host is not connected to the fleet's etcd (it is {0}); try again once it is")]
    NotConnected(&'static str),
    /// etcd refused or did not answer in time.
    #[error("etcd request failed: {0}")]
    Etcd(String),
    /// The fleet task is gone (corrald is shutting down).
    #[error("the fleet task has stopped")]
    Stopped,
}
