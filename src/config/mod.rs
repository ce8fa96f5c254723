//! Configuration: the validated model ([`model`]) and how it is read and checked from TOML.
//!
//! Reading goes file → [`raw`](self) serde structs → merged definitions → checks → [`Config`].
//! [`load`] reads the files of a [`ConfigSource`]; [`parse_str`] checks one file's text.
//! Either returns a `Config` only when nothing is wrong, and otherwise every problem found,
//! each with its file, line and column ([`ConfigErrors`]).

mod checks;
pub mod duration;
mod error;
mod jobs;
mod load;
mod merge;
pub mod model;
mod raw;
mod references;
mod service;
pub mod signal;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use load::{ConfigSource, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_FILE, files, load, parse_str};
pub use model::*;
