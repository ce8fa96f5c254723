//! Configuration: the validated model ([`model`]) and how it is read and checked from TOML.

pub mod duration;
#[allow(dead_code)] // Used by the loader, which comes next.
mod error;
pub mod model;
pub mod signal;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;
