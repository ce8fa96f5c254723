//! The errors a command to corrald can end in. Each maps to one stable D-Bus error name in
//! `bus::errors` (the only place that mapping is written), and each message says what went
//! wrong and what to do about it.

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no service named {0:?}; `corralctl list` shows the configured services")]
    NoSuchService(String),
    #[error(
        "service {service:?} belongs to group {group:?}, which is served by peer {peer:?}; this is {host:?}. Start it there, or move the group with `peer = {host:?}` and reload"
    )]
    NotServedHere {
        service: String,
        group: String,
        peer: String,
        host: String,
    },
    #[error("{0}")]
    StartFailed(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    NoSuchMethod(String),
    #[error("{0}")]
    MethodFailed(String),
    #[error("{0}")]
    QueueFull(String),
    #[error("corrald is shutting down; the request was not carried out")]
    ShuttingDown,
}

/// The result of a command.
pub type CommandResult<T = ()> = Result<T, CommandError>;
