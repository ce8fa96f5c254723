//! Configuration: the validated model ([`model`]) and how it is read and checked from TOML.

pub mod model;

pub use model::*;
