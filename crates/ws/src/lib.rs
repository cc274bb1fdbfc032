//! The WebSocket protocol itself (RFC 6455), apart from any connection:
//! a leaf crate that the daemon and the routers that speak WebSocket to
//! an upstream (`proxy`) share.
//!
//! - [`codec`]: the sans-IO frame decoder and encoder; it consumes only
//!   whole frames, so a wait on the socket can be cancelled without losing
//!   a byte, and it decides a message's size from its header.
//! - [`close`]: close codes, the protocol's and wsgate's own.
//! - [`handshake`]: the server side of the opening handshake (the 101).

pub mod close;
pub mod codec;
pub mod handshake;
