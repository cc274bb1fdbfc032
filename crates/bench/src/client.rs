//! The WebSocket client: the RFC 6455 opening handshake written by hand
//! over a TCP socket bound to a chosen source address (for `wss://`, over a
//! TLS session on it, see [`crate::tls`]), then fastwebsockets for framing
//! (it masks client frames).
//!
//! fastwebsockets' `read_frame` is not cancel-safe: a read cut off half way
//! loses the bytes it had taken. Each connection therefore lives in one
//! task, and a read is only ever cut off by a deadline after which the
//! connection is never read as frames again (see [`Conn::recv_until`]).
//! Automatic pongs and close replies are off, so a read never writes and a
//! cut-off read leaves the write side intact for a clean close.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;

use super::stream::{Prefixed, Stream};
use super::target::Target;
use super::tls::Tls;

/// Largest upgrade answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 64 << 20;
/// How long a close waits for the server to end the TCP connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Opens connections to one URL, spreading them over source addresses.
#[derive(Debug, Clone)]
pub struct Dialer {
    addr: SocketAddr,
    host_header: String,
    path_and_query: String,
    sources: Vec<IpAddr>,
    /// `wss://`: the TLS handshake after the TCP connect.
    tls: Option<Tls>,
}

impl Dialer {
    /// `sources` may be empty: the kernel then picks the source address.
    /// `tls` is the target's TLS set-up ([`Tls::for_target`]).
    pub fn new(
        target: &Target,
        addr: SocketAddr,
        sources: Vec<IpAddr>,
        tls: Option<Tls>,
    ) -> Dialer {
        Dialer {
            addr,
            host_header: target.host_header.clone(),
            path_and_query: target.path_and_query.clone(),
            sources,
            tls,
        }
    }

    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }

    /// Opens connection number `i` (its source address is `sources[i % K]`),
    /// completes the TLS handshake for `wss://`, then the upgrade.
    pub async fn connect(&self, i: usize) -> anyhow::Result<Conn> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("cannot create a socket")?;
        let source = match self.sources.len() {
            0 => None,
            k => Some(self.sources[i % k]),
        };
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("cannot bind to source address {ip}"))?;
        }
        let stream = socket.connect(self.addr).await.with_context(|| {
            let from = source.map(|ip| format!(" from {ip}")).unwrap_or_default();
            format!("cannot connect to {}{from}", self.addr)
        })?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let stream = match &self.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                Stream::Tls(Box::new(tls.connect(stream).await.with_context(|| {
                    format!("TLS handshake with {} failed", self.addr)
                })?))
            }
        };
        upgrade(stream, &self.host_header, &self.path_and_query).await
    }
}

/// Sends the upgrade request and reads the answer; anything but 101 is an
/// error that carries the status and the start of the body.
async fn upgrade(mut stream: Stream, host: &str, path: &str) -> anyhow::Result<Conn> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        new_key()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("cannot send the upgrade request")?;
    // A TLS session may hold the request's last record (a no-op on TCP).
    stream
        .flush()
        .await
        .context("cannot send the upgrade request")?;
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            bail!("the upgrade answer's head is over {MAX_HEAD} bytes");
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .context("cannot read the upgrade answer")?;
        if n == 0 {
            bail!("the server closed the connection before answering the upgrade");
        }
    };
    let status = status_code(&buf[..head_end])?;
    if status != 101 {
        let body = String::from_utf8_lossy(&buf[head_end..]);
        let body: String = body.chars().take(300).collect();
        let hint = match status {
            429 => " (raise the target's max_connections_per_ip, or use more --sources)",
            503 => " (the target's max_connections may be lower than the count)",
            _ => "",
        };
        bail!("upgrade refused with {status}{hint}: {}", body.trim());
    }
    let rest = buf.split_off(head_end);
    let mut ws = WebSocket::after_handshake(Prefixed::new(rest, stream), Role::Client);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_max_message_size(MAX_MESSAGE);
    Ok(Conn {
        ws: FragmentCollector::new(ws),
        read_cut: false,
        close_seen: false,
    })
}

/// The status code of an HTTP/1.1 answer head.
fn status_code(head: &[u8]) -> anyhow::Result<u16> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => Ok(code),
        _ => bail!(
            "not an HTTP answer: `{}`",
            line.chars().take(80).collect::<String>()
        ),
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random-ish bytes, base64. It only has to
/// differ between connections; it is not a secret.
fn new_key() -> String {
    let state = RandomState::new();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
    bytes[8..].copy_from_slice(&state.hash_one(2u8).to_le_bytes());
    base64(&bytes)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a read gave.
#[derive(Debug)]
pub enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    /// The server closed with this code (1005 when the close frame had
    /// none); the close was answered.
    Closed(u16),
    /// The deadline passed first. The connection can still be closed, but
    /// never read again.
    Deadline,
}

/// One open WebSocket connection.
pub struct Conn {
    ws: FragmentCollector<Prefixed>,
    /// A read was cut off by a deadline: frames can no longer be read.
    read_cut: bool,
    /// The server's close frame was read and answered.
    close_seen: bool,
}

impl Conn {
    /// Sends one data message.
    pub async fn send(&mut self, opcode: OpCode, payload: &[u8]) -> anyhow::Result<()> {
        let frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
        self.ws
            .write_frame(frame)
            .await
            .context("cannot send a message")
    }

    /// The next data message or close, answering pings on the way, unless
    /// `deadline` passes first.
    pub async fn recv_until(&mut self, deadline: Instant) -> anyhow::Result<Incoming> {
        if self.read_cut || self.close_seen {
            bail!("the connection can no longer be read");
        }
        loop {
            // Only the read is under the deadline; the pong and the close
            // reply below are never cut off.
            let frame = match tokio::time::timeout_at(deadline, self.ws.read_frame()).await {
                Ok(frame) => frame.context("cannot read a message")?,
                Err(_) => {
                    self.read_cut = true;
                    return Ok(Incoming::Deadline);
                }
            };
            match frame.opcode {
                OpCode::Text => return Ok(Incoming::Text(into_bytes(frame.payload))),
                OpCode::Binary => return Ok(Incoming::Binary(into_bytes(frame.payload))),
                OpCode::Ping => {
                    let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                    self.ws
                        .write_frame(pong)
                        .await
                        .context("cannot send a pong")?;
                }
                OpCode::Close => {
                    let code = match frame.payload.get(..2) {
                        Some(&[a, b]) => u16::from_be_bytes([a, b]),
                        _ => 1005,
                    };
                    self.close_seen = true;
                    // Echo the status code back, as RFC 6455 asks; a failure
                    // here changes nothing the bench reports.
                    let reply = Frame::close_raw(Payload::Owned(
                        frame.payload.get(..2).unwrap_or_default().to_vec(),
                    ));
                    let _ = self.ws.write_frame(reply).await;
                    return Ok(Incoming::Closed(code));
                }
                OpCode::Pong | OpCode::Continuation => {}
            }
        }
    }

    /// Closes politely: a close frame with 1000 (unless the server closed
    /// first), then waits up to two seconds for the server to end the TCP
    /// connection, so that the server, not the bench, keeps the TIME_WAIT.
    pub async fn close(mut self) {
        if !self.close_seen && self.ws.write_frame(Frame::close(1000, b"")).await.is_err() {
            return;
        }
        let mut stream = self.ws.into_inner().into_inner();
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// Ends the connection with a TCP reset and no close handshake:
    /// `SO_LINGER` 0, then the socket is dropped, so the kernel sends RST
    /// and the server sees the connection vanish (over TLS too: no
    /// close_notify is sent).
    pub fn reset(self) -> anyhow::Result<()> {
        let stream = self.ws.into_inner().into_inner();
        stream.tcp().set_zero_linger().context("SO_LINGER 0")?;
        drop(stream);
        Ok(())
    }
}

/// The payload as `Bytes`, without a copy when it came straight off the
/// read buffer.
fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // RFC 6455's sample nonce.
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        let key = new_key();
        assert_eq!(key.len(), 24);
        assert_ne!(key, new_key());
    }

    #[test]
    fn reads_status_codes() {
        assert_eq!(
            status_code(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").expect("101"),
            101
        );
        assert_eq!(
            status_code(b"HTTP/1.0 429 Too Many\r\n\r\n").expect("429"),
            429
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
