//! corral's D-Bus errors: the one place where internal errors become wire error names
//! (`org.corral.Corral1.Error.*`). The names are API; the messages are for people.

use zbus::DBusError;

use crate::error::CommandError;

/// Every error a corral method can return on the bus.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.corral.Corral1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchService(String),
    InvalidConfig(String),
    StartFailed(String),
    Timeout(String),
    AccessDenied(String),
    NotServedHere(String),
    QueueFull(String),
    NoSuchMethod(String),
    MethodFailed(String),
    InvalidArgs(String),
    /// corrald is going away; the request was not carried out.
    ShuttingDown(String),
}

impl From<CommandError> for BusError {
    fn from(err: CommandError) -> BusError {
        let message = err.to_string();
        match err {
            CommandError::NoSuchService(_) => BusError::NoSuchService(message),
            CommandError::NotServedHere { .. } => BusError::NotServedHere(message),
            CommandError::StartFailed(_) => BusError::StartFailed(message),
            CommandError::Timeout(_) => BusError::Timeout(message),
            CommandError::InvalidArgs(_) => BusError::InvalidArgs(message),
            CommandError::InvalidConfig(_) => BusError::InvalidConfig(message),
            CommandError::AccessDenied(_) => BusError::AccessDenied(message),
            CommandError::NoSuchMethod(_) => BusError::NoSuchMethod(message),
            CommandError::MethodFailed(_) => BusError::MethodFailed(message),
            CommandError::QueueFull(_) => BusError::QueueFull(message),
            CommandError::ShuttingDown => BusError::ShuttingDown(message),
        }
    }
}

/// The result of a corral D-Bus method.
pub type BusResult<T = ()> = Result<T, BusError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_stable() {
        let cases = [
            (CommandError::NoSuchService("x".into()), "NoSuchService"),
            (CommandError::StartFailed("x".into()), "StartFailed"),
            (CommandError::Timeout("x".into()), "Timeout"),
            (CommandError::InvalidConfig("x".into()), "InvalidConfig"),
            (CommandError::AccessDenied("x".into()), "AccessDenied"),
            (CommandError::InvalidArgs("x".into()), "InvalidArgs"),
            (
                CommandError::NotServedHere {
                    service: "s".into(),
                    group: "g".into(),
                    peer: "b".into(),
                    host: "a".into(),
                },
                "NotServedHere",
            ),
        ];
        for (err, name) in cases {
            let bus = BusError::from(err);
            assert_eq!(
                bus.name().as_str(),
                format!("org.corral.Corral1.Error.{name}")
            );
        }
    }
}
