//! corral's D-Bus errors: the one place where internal errors become wire error names
//! (`org.corral.Corral1.Error.*`). The names are API; the messages are for people.
//!
//! Clients use the same enum: the proxies in [`crate::client`] return it, and the derive's
//! `From<zbus::Error>` turns a reply carrying one of these names back into its variant
//! (anything else — no daemon, a lost connection, a standard D-Bus error — stays
//! [`BusError::ZBus`]).

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
    /// The fleet cannot carry out the request: this host has no `[fleet]`, is not
    /// connected to etcd right now, or etcd failed.
    FleetUnavailable(String),
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

#[cfg(feature = "fleet")]
impl From<crate::fleet::FleetError> for BusError {
    fn from(err: crate::fleet::FleetError) -> BusError {
        use crate::fleet::FleetError;
        let message = err.to_string();
        match err {
            FleetError::UnknownGroup(_) | FleetError::UnknownHost { .. } => {
                BusError::InvalidArgs(message)
            }
            FleetError::NotConnected(_) | FleetError::Etcd(_) => {
                BusError::FleetUnavailable(message)
            }
            FleetError::Stopped => BusError::ShuttingDown(message),
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

    /// What a client gets back: the reply the daemon sends for each error, read the way
    /// a proxy reads it, is the same variant with the same message.
    #[test]
    fn clients_get_the_variant_back() {
        let call = zbus::Message::method_call("/org/corral/Corral1", "GetService")
            .build(&())
            .unwrap();
        let every = [
            BusError::NoSuchService("no service named \"x\"".into()),
            BusError::InvalidConfig("m".into()),
            BusError::StartFailed("m".into()),
            BusError::Timeout("m".into()),
            BusError::AccessDenied("m".into()),
            BusError::NotServedHere("m".into()),
            BusError::QueueFull("m".into()),
            BusError::NoSuchMethod("m".into()),
            BusError::MethodFailed("m".into()),
            BusError::InvalidArgs("m".into()),
            BusError::ShuttingDown("m".into()),
            BusError::FleetUnavailable("m".into()),
        ];
        for sent in every {
            let reply = sent.create_reply(&call.header()).unwrap();
            let received = BusError::from(zbus::Error::from(reply));
            assert_eq!(received.name(), sent.name());
            assert_eq!(received.description(), sent.description());
            assert!(!matches!(received, BusError::ZBus(_)), "{received:?}");
        }
    }

    #[cfg(feature = "fleet")]
    #[test]
    fn fleet_errors_map_to_stable_names() {
        use crate::fleet::FleetError;
        let cases = [
            (FleetError::UnknownGroup("g".into()), "InvalidArgs"),
            (
                FleetError::UnknownHost {
                    group: "g".into(),
                    peer: "z".into(),
                    reason: "r".into(),
                },
                "InvalidArgs",
            ),
            (FleetError::NotConnected("lost"), "FleetUnavailable"),
            (FleetError::Etcd("e".into()), "FleetUnavailable"),
            (FleetError::Stopped, "ShuttingDown"),
        ];
        for (err, name) in cases {
            let text = err.to_string();
            let bus = BusError::from(err);
            assert_eq!(
                bus.name().as_str(),
                format!("org.corral.Corral1.Error.{name}")
            );
            assert_eq!(bus.description(), Some(text.as_str()));
        }
    }

    #[test]
    fn other_errors_stay_zbus_errors() {
        let unknown = zbus::Error::FDO(Box::new(zbus::fdo::Error::UnknownObject("/x".into())));
        assert!(matches!(
            BusError::from(unknown),
            BusError::ZBus(zbus::Error::FDO(_))
        ));
        assert!(matches!(
            BusError::from(zbus::Error::InvalidReply),
            BusError::ZBus(zbus::Error::InvalidReply)
        ));
    }
}
