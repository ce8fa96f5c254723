//! Why corrald could not run, or stopped running: each with what to do about it.

use std::path::PathBuf;

use crate::config::ConfigErrors;
use crate::names::BUS_NAME;
use crate::store::StoreError;

/// Why corrald could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    #[error("cannot create the runtime directory {path}: {source}")]
    RuntimeDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another corrald uses the state directory: two would supervise the same services.
    #[error("{0}")]
    State(StoreError),
    #[error("refusing the runtime directory: {0}")]
    UntrustedRuntimeDir(String),
    /// With `[fleet]`, grouped services must die with corrald; the fence makes sure.
    #[error(
        "cannot start the fence ({program} --fence): {source}\n(with [fleet], corrald needs it so that the services of fleet groups die with corrald)"
    )]
    Fence {
        program: PathBuf,
        source: std::io::Error,
    },
    /// The bus went away under a running corrald (dbus-daemon crashed or restarted). The
    /// services are left running: the binary exits at once, without stopping them or
    /// dropping their handles, and the corrald systemd starts next re-adopts them.
    #[error(
        "corrald lost its connection to the bus, so clients can no longer reach it; exiting so that systemd restarts it (the services keep running and are re-adopted)"
    )]
    BusLost,
    #[error(
        "cannot serve {BUS_NAME} on the bus: {0}\n(is another corrald running? on a system bus, corrald must run as root and the bus policy dbus/org.corral.Corral1.conf must be installed)"
    )]
    Bus(zbus::Error),
}
