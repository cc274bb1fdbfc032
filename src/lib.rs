//! wsgate: a WebSocket daemon with hard resource limits.
//!
//! The parts, each in one place, from the leaves up:
//!
//! - [`ws`]: the WebSocket protocol: frame codec, close codes, the 101.
//! - [`metrics`]: the Prometheus exposition.
//! - [`certs`]: TLS certificates loaded and checked, chosen by server name;
//!   a listener's rustls config.
//! - [`config`]: the TOML schema with every limit and its default, parsing
//!   with precise errors, validation into [`config::Settings`].
//! - [`plugins`]: the built-in authenticators and routers, by name (the
//!   traits themselves are in the `wsgate-plugin-api` crate).
//! - [`handle`]: a live connection's shared handle: send queue, close and
//!   drain mailbox, counters.
//! - [`registry`]: who is connected, the caps, and the slot that frees a
//!   connection's counts when it ends.
//! - [`hub`]: topics and fan-out that never waits on one socket.
//! - [`cluster`]: joining the other nodes through NATS (`crates/cluster`).
//! - [`daemon`]: the shared state that ties them together.
//! - [`conn`]: one connection's life: socket and buffers, timers, the close
//!   handshake and dispatch, the loop.
//! - [`server`]: listener, HTTP endpoints, admission and the upgrade.
//! - [`reload`]: validate aside, diff, swap once, enforce tightened caps.
//! - [`control`]: the one loop that reloads and drains, fed by
//!   [`signals`], [`watch`] (config file edits) and the admin socket.
//! - [`admin`]: the admin socket, the commands it runs and what it shows
//!   (the protocol itself is the `wsgate-admin-proto` crate).
//! - [`systemd`]: sd_notify readiness, reload, stop, status and watchdog.
//!
//! `fuzzing` (hidden) holds the harnesses the fuzz targets and the parser
//! property tests share; docs/testing.md says how to run them.

/// The config file `wsgate serve` and `wsgate ctl` use when none is given,
/// if it exists (relative to the current directory).
pub const DEFAULT_CONFIG: &str = "etc/wsgate.toml";

pub mod admin;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod control;
pub mod daemon;
pub mod edge;
#[doc(hidden)]
pub mod fuzzing;
pub mod handle;
pub mod hub;
pub mod metrics;
pub mod plugins;
pub mod registry;
pub mod reload;
pub mod server;
pub mod signals;
pub mod systemd;
pub mod watch;
/// The WebSocket protocol (the `wsgate-ws` crate).
pub use wsgate_ws as ws;

#[cfg(test)]
mod codec_props;
