//! What comes before HTTP on an accepted connection: the PROXY protocol
//! header on a listener that requires it, and the TLS handshake on a TLS
//! listener. Both run within `handshake_timeout` of the accept; a
//! connection that fails either is closed before any HTTP, counted in
//! `wsgate_listener_refusals_total` (PROXY) or
//! `wsgate_tls_handshake_failures_total` (TLS) and logged at debug (an
//! untrusted PROXY sender at info: that is a configuration matter).

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;

use super::client_ip;
use crate::config::schema::IpNetwork;
use crate::daemon::Daemon;
use crate::edge::proxy_header::{self, ProxyHeaderError};

/// The `reason` label of a PROXY header refusal.
fn proxy_reason(e: &ProxyHeaderError) -> &'static str {
    match e {
        ProxyHeaderError::Missing => "proxy_header_missing",
        ProxyHeaderError::Malformed(_) => "proxy_header_malformed",
        ProxyHeaderError::TooLong => "proxy_header_too_long",
        ProxyHeaderError::Closed => "proxy_header_closed",
        ProxyHeaderError::Io(_) => "proxy_header_io",
    }
}

/// Reads the PROXY header of a connection from a trusted proxy; returns
/// the client's address (the peer's own when the header names none, as a
/// balancer's health check does), or `None` when the connection is to be
/// closed.
pub async fn proxied_peer(
    daemon: &Daemon,
    listener: &str,
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNetwork],
    deadline: Instant,
) -> Option<SocketAddr> {
    let refuse = |reason: &'static str| daemon.metrics().listener_refused(listener, reason);
    if !client_ip::is_trusted(peer.ip(), trusted) {
        refuse("proxy_untrusted");
        tracing::info!(%peer, listener, "PROXY header from an address not in trusted_proxies; connection closed");
        return None;
    }
    match tokio::time::timeout_at(deadline.into(), proxy_header::read(stream)).await {
        Err(_) => {
            refuse("proxy_header_timeout");
            tracing::debug!(%peer, listener, "no PROXY header within handshake_timeout");
            None
        }
        Ok(Err(e)) => {
            refuse(proxy_reason(&e));
            tracing::debug!(%peer, listener, error = %e, "bad PROXY header; connection closed");
            None
        }
        Ok(Ok(p)) => Some(p.source.unwrap_or(peer)),
    }
}
