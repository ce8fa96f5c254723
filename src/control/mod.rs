//! The control channel between corrald and a service that sets `control_socket`: JSON-RPC
//! frames ([`frame`]), one connection task per service ([`channel`]), the check that the
//! process listening on the socket is the service and not an impostor ([`peer`]), and the
//! registry that starts and stops those tasks as the configuration changes ([`registry`]).

pub mod channel;
pub mod frame;
pub mod peer;
pub mod reader;
pub mod registry;

pub use channel::{CallError, ControlHandle, Notification};
pub use registry::ControlRegistry;
