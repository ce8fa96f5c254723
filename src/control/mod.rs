//! The control channel between corrald and a service that sets `control_socket`: JSON-RPC
//! frames ([`frame`]), one connection task per service ([`channel`]), and the registry that
//! starts and stops those tasks as the configuration changes ([`registry`]).

pub mod channel;
pub mod frame;
mod reader;
pub mod registry;

pub use channel::{CallError, ControlHandle, Notification};
pub use registry::ControlRegistry;
