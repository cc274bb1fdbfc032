//! wsgate: a WebSocket daemon with hard resource limits.
//!
//! The parts, each in one place:
//!
//! - [`admin`]: the admin protocol, its unix socket and what it shows.
//! - [`config`]: the TOML schema with every limit and its default, parsing
//!   with precise errors, validation into [`config::Settings`].
//! - [`plugins`]: the built-in authenticators and routers, by name (the
//!   traits themselves are in the `wsgate-plugin-api` crate).
//! - [`server`]: listener, HTTP endpoints, admission and the upgrade.
//! - [`registry`]: who is connected, the caps, and the slot that frees a
//!   connection's counts when it ends.
//! - [`hub`]: topics and fan-out that never waits on one socket.
//! - [`conn`]: one connection's life: frames, send queue, timers, close codes.
//! - [`metrics`]: the Prometheus exposition.
//! - [`reload`]: validate aside, diff, swap once, enforce tightened caps.
//! - [`control`]: the one loop that reloads and drains, fed by
//!   [`signals`], [`watch`] (config file edits) and the admin socket.
//! - [`systemd`]: sd_notify readiness, reload, stop, status and watchdog.
//! - [`daemon`]: the shared state that ties them together.

/// The config file `wsgate serve` and `wsgate ctl` use when none is given,
/// if it exists (relative to the current directory).
pub const DEFAULT_CONFIG: &str = "etc/wsgate.toml";

pub mod admin;
pub mod config;
pub mod conn;
pub mod control;
pub mod daemon;
pub mod hub;
pub mod metrics;
pub mod plugins;
pub mod registry;
pub mod reload;
pub mod server;
pub mod signals;
pub mod systemd;
pub mod watch;
