//! What comes before HTTP on an accepted connection: the PROXY protocol
//! header on a listener that requires it, and the TLS handshake on a TLS
//! listener. Both run within `handshake_timeout` of the accept; a
//! connection that fails either is closed before any HTTP, counted in
//! `wsgate_listener_refusals_total` (PROXY) or
//! `wsgate_tls_handshake_failures_total` (TLS) and logged at debug (an
//! untrusted PROXY sender at info, once per storm with the rest summed up
//! every `refusal_log_interval`: that is a configuration matter).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::client_ip;
use crate::config::schema::IpNetwork;
use crate::config::settings::ListenerTls;
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
        if daemon.edge().log_untrusted_proxy(peer.ip()) {
            tracing::info!(%peer, listener, "PROXY header from an address not in trusted_proxies; connection closed");
        }
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

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The `reason` label of a failed TLS handshake.
fn tls_failure(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        // No protocol version, cipher suite, key exchange group or
        // signature scheme in common.
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        // The client refused the handshake (e.g. it does not trust the
        // certificate).
        Some(rustls::Error::AlertReceived(_)) => "client_alert",
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_)) => "protocol",
        Some(_) => "other",
        None => match e.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                "reset"
            }
            _ => "io",
        },
    }
}

/// The TLS handshake of a connection to a TLS listener, within
/// `deadline`; `None` when it failed (counted and logged at debug).
pub async fn tls_handshake(
    daemon: &Daemon,
    listener: &str,
    tls: &ListenerTls,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let fail = |reason: &'static str, detail: &dyn std::fmt::Display| {
        daemon.metrics().tls_handshake_failed(listener, reason);
        tracing::debug!(%peer, listener, reason, "TLS handshake failed: {detail}");
        None
    };
    // A client speaking plain HTTP to the TLS port is told apart from a
    // broken handshake by its first byte.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline.into(), stream.peek(&mut first)).await {
        Err(_) => return fail("timeout", &"nothing sent within handshake_timeout"),
        Ok(Ok(0)) => return fail("reset", &"closed before the handshake"),
        Ok(Err(e)) => return fail("reset", &e),
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD => {
            let reason = if first[0].is_ascii_alphabetic() {
                "plain_http"
            } else {
                "protocol"
            };
            return fail(reason, &"not a TLS handshake");
        }
        Ok(Ok(_)) => {}
    }
    // The ClientHello first, to count a server name no certificate covers
    // (the handshake goes on with the first certificate, which the client
    // may then refuse).
    let handshake = async {
        let hello =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
        let start = hello.await?;
        let asked = start.client_hello().server_name().map(str::to_owned);
        if asked.is_some_and(|name| !tls.certs.covers(&name)) {
            daemon.metrics().tls_sni_fallback(listener);
        }
        start.into_stream(Arc::clone(&tls.config)).await
    };
    match tokio::time::timeout_at(deadline.into(), handshake).await {
        Err(_) => fail("timeout", &"not complete within handshake_timeout"),
        Ok(Err(e)) => fail(tls_failure(&e), &e),
        Ok(Ok(stream)) => Some(stream),
    }
}
