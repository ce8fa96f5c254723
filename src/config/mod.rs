//! Configuration: the validated model ([`model`]) and how it is read and checked from TOML.
//!
//! Reading goes file → serde structs that mirror the TOML → definitions merged over all
//! files → checks → [`Config`].
//! [`load`] reads the files of a [`ConfigSource`]; [`parse_str`] checks one file's text and
//! [`parse_texts`] the texts of several, merged as `load` merges files.
//! Either returns a `Config` only when nothing is wrong, and otherwise every problem found,
//! each with its file, line and column ([`ConfigErrors`]).

mod checks;
mod child;
mod document;
pub mod duration;
mod error;
mod fleet;
mod health;
mod load;
mod merge;
pub mod model;
mod raw;
mod references;
mod resources;
mod restart;
mod service;
pub mod signal;
#[cfg(test)]
mod test_support;
mod validate;
mod work;

pub use error::{ConfigError, ConfigErrors};
pub use load::{
    ConfigSource, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_FILE, files, load, parse_str, parse_texts,
};
pub use model::*;
