//! The configuration: one TOML file holds every limit.
//!
//! - [`schema`]: the typed file format, with every default in one place.
//! - [`listeners`]: the listeners in force and their checks.
//! - [`load`]: reading and parsing, with errors that carry file:line:column
//!   and the key path.
//! - [`settings`]: validation that consumes a [`Config`] and builds the
//!   [`Settings`] the daemon runs on (plugins built, secrets read).
//!
//! A [`Settings`] is immutable; a reload builds a new one aside and swaps it
//! in at one point, so no connection ever sees a half-applied config.

mod cluster;
pub mod diff;
pub mod listeners;
pub mod load;
pub mod memory;
pub mod schema;
pub mod settings;

pub use load::{ConfigError, Issue};
pub use schema::{CapScope, Config, Limits, LimitsOverride, OnRateLimit, OnUserLimit};
pub use settings::{Route, Settings};

#[cfg(test)]
mod load_props;
