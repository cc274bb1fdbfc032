//! A connection's socket I/O and buffers: the only code that knows what
//! kind of socket a connection runs on (a transport such as TLS plugs in
//! here), and the frames that go in and out of it.
//!
//! It uses readiness and non-blocking reads and writes, so every wait can
//! be interrupted without losing a byte, and it holds no buffer while the
//! connection is idle: the read and write buffers are freed (or lent back
//! to the thread) whenever they run empty.

use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wsgate_plugin_api::Outbound;

use super::tls::Tls;

use crate::ws::codec::{self, Decoder, Event, Need, OpCode, ProtocolError, SmallFragments};

/// Bytes read per read call when no larger frame is expected.
const READ_CHUNK: usize = 4096;
/// Encoded bytes gathered from the queue before a write; also the pending
/// output at which reading pauses, so memory stays bounded.
pub const WRITE_BATCH: usize = 64 * 1024;

thread_local! {
    /// Where outbound frames are encoded before a write, shared by every
    /// connection served by this thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A read buffer lent to whichever connection of this thread reads
    /// next, and given back once its frames are handled.
    static READ_SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// Why an upgraded connection cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum FromUpgradedError {
    #[error("the upgraded connection is of an unknown kind")]
    UnknownKind,
    #[error("TLS after the upgrade: {0}")]
    Tls(io::Error),
}

/// How many data messages, and payload bytes, were framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framed {
    pub messages: u64,
    pub bytes: u64,
}

/// The connection's I/O state.
pub struct Wire {
    socket: TcpStream,
    /// The TLS session on a `wss://` connection (boxed: a plain connection
    /// pays one pointer for it).
    tls: Option<Box<Tls>>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// Total buffered bytes the decoder needs for its next frame.
    need: usize,
    /// Whether a write has put bytes into the socket since the last
    /// [`Wire::take_progress`].
    progressed: bool,
    /// Length of the pong frame that ends the write buffer, none of it
    /// written yet (0: the buffer ends otherwise). A newer pong may take
    /// its place.
    tail_pong: u8,
}

impl Wire {
    /// Takes the socket out of a completed HTTP upgrade, with the bytes the
    /// client sent right behind its request. `Err` gives back a connection
    /// of a kind this module cannot drive.
    pub fn from_upgraded(upgraded: Upgraded) -> Result<Self, FromUpgradedError> {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return Ok(Self::new(parts.io.into_inner(), &parts.read_buf)),
            Err(u) => u,
        };
        let parts = upgraded
            .downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>()
            .map_err(|_| FromUpgradedError::UnknownKind)?;
        let (socket, session) = parts.io.into_inner().into_inner();
        let mut wire = Self::new(socket, &parts.read_buf);
        wire.tls = Some(Box::new(
            Tls::new(session, &mut wire.rbuf).map_err(FromUpgradedError::Tls)?,
        ));
        Ok(wire)
    }

    fn new(socket: TcpStream, leftover: &Bytes) -> Self {
        Self {
            socket,
            tls: None,
            // `leftover` is a slice of hyper's 8 KiB read buffer: copy what
            // the client sent and let go of it, or every connection keeps
            // that buffer.
            rbuf: BytesMut::from(&leftover[..]),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(),
            need: 0,
            progressed: false,
            tail_pong: 0,
        }
    }

    /// Whether read bytes wait to be decoded.
    #[inline]
    pub fn has_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Drops unread input (nothing more is read after a failure or a
    /// completed close).
    pub fn discard_input(&mut self) {
        self.rbuf.clear();
    }

    /// Bytes waiting to be written (over TLS, records rustls holds for
    /// the socket count as one).
    #[inline]
    pub fn pending(&self) -> usize {
        self.wbuf.len() + self.tls.as_ref().map_or(0, |t| usize::from(t.unsent()))
    }

    /// Reads what the socket holds. `Ok(0)`: the peer closed;
    /// `Err(WouldBlock)`: nothing after all.
    #[inline]
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.rbuf.is_empty() {
            // Nothing partial is held: borrow the thread's spare buffer
            // (its room is reclaimed if no message still points into it).
            self.rbuf = READ_SPARE.take();
            self.rbuf.clear();
        }
        let want = self.need.max(self.rbuf.len() + READ_CHUNK / 2);
        if self.rbuf.capacity() < want {
            self.rbuf.reserve((want - self.rbuf.len()).max(READ_CHUNK));
        }
        match &mut self.tls {
            None => read_available(&self.socket, &mut self.rbuf),
            Some(tls) => tls.fill(&self.socket, &mut self.rbuf),
        }
    }

    /// Once the read frames are handled: hold no read buffer while idle.
    /// It goes back to the thread, unless a large message made it large.
    #[inline]
    pub fn release_input(&mut self) {
        if self.rbuf.is_empty() {
            let buf = std::mem::take(&mut self.rbuf);
            if buf.capacity() <= 2 * READ_CHUNK {
                READ_SPARE.set(buf);
            }
        }
    }

    /// The next complete frame event, or `None` until more bytes arrive.
    #[inline]
    pub fn next_event(&mut self, max_message: usize) -> Option<Result<Event, ProtocolError>> {
        match self.decoder.decode(&mut self.rbuf, max_message) {
            Ok(Ok(event)) => {
                self.need = 0;
                Some(Ok(event))
            }
            Ok(Err(Need::Bytes(n))) => {
                self.need = n;
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// The small fragments decoded since the last call (see
    /// [`SmallFragments`]).
    #[inline]
    pub fn take_small_fragments(&mut self) -> SmallFragments {
        self.decoder.take_small_fragments()
    }

    /// Whether the socket accepted bytes since the last call.
    #[inline]
    pub fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    /// Queues a control frame (ping, pong).
    #[inline]
    pub fn control(&mut self, op: OpCode, payload: &[u8]) {
        let before = self.wbuf.len();
        codec::encode(&mut self.wbuf, op, payload);
        self.tail_pong = match op {
            // A control frame is at most 127 bytes.
            OpCode::Pong => u8::try_from(self.wbuf.len() - before).unwrap_or(0),
            _ => 0,
        };
    }

    /// Queues a pong in place of the pong that ends the write buffer, if
    /// none of it was written yet (RFC 6455 5.5.3: a ping that arrives
    /// before the pong for an earlier one was sent may be answered alone).
    #[inline]
    pub fn replace_pong(&mut self, payload: &[u8]) {
        let tail = usize::from(std::mem::take(&mut self.tail_pong));
        self.wbuf.truncate(self.wbuf.len() - tail);
        self.control(OpCode::Pong, payload);
    }

    /// Queues a close frame.
    pub fn close_frame(&mut self, code: Option<u16>, reason: &str) {
        self.tail_pong = 0;
        codec::encode_close(&mut self.wbuf, code, reason);
    }

    /// Frames messages into the write buffer, behind what is pending.
    #[inline]
    pub fn queue(&mut self, taken: &mut Vec<Outbound>) -> Framed {
        if !taken.is_empty() {
            self.tail_pong = 0;
        }
        encode_messages(&mut self.wbuf, taken)
    }

    /// Frames and writes messages. With nothing already pending, they are
    /// framed in this thread's scratch buffer and written from there, and
    /// only what the socket did not take is copied into the connection's
    /// own buffer: a connection that keeps up allocates nothing to send.
    #[inline]
    pub fn send(&mut self, taken: &mut Vec<Outbound>) -> io::Result<Framed> {
        if taken.is_empty() {
            return Ok(Framed::default());
        }
        if !self.wbuf.is_empty() {
            return Ok(self.queue(taken));
        }
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            let framed = encode_messages(&mut *buf, taken);
            let written = match &mut self.tls {
                None => match self.socket.try_write(&buf) {
                    Ok(n) => {
                        self.progressed |= n > 0;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                },
                Some(tls) => tls.write(&self.socket, &buf, &mut self.progressed)?,
            };
            if let Some(rest) = buf.get(written..).filter(|r| !r.is_empty()) {
                self.wbuf.extend_from_slice(rest);
            }
            if buf.capacity() > 2 * WRITE_BATCH {
                // A large message passed through; do not keep its room.
                *buf = Vec::new();
            }
            Ok(framed)
        })
    }

    /// Writes what is pending, as far as the socket takes it; `Ok(true)`
    /// once nothing is left (the write buffer is then freed).
    #[inline]
    pub fn flush(&mut self) -> io::Result<bool> {
        if let Some(tls) = &mut self.tls {
            let n = tls.write(&self.socket, &self.wbuf, &mut self.progressed)?;
            let unsent = tls.unsent();
            self.advance(n);
            if unsent {
                return Ok(false);
            }
        } else if !self.wbuf.is_empty() {
            match self.socket.try_write(&self.wbuf) {
                Ok(n) => {
                    self.progressed |= n > 0;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if self.wbuf.is_empty() {
            self.tail_pong = 0;
            // Hold no write buffer while idle.
            self.wbuf = BytesMut::new();
            return Ok(true);
        }
        Ok(false)
    }

    /// Drops what was written from the write buffer.
    fn advance(&mut self, n: usize) {
        self.wbuf.advance(n);
        if self.wbuf.len() < usize::from(self.tail_pong) {
            // Partly written: it can no longer be replaced.
            self.tail_pong = 0;
        }
    }

    /// Ready when the socket may be read (`false`: it failed).
    #[inline]
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<bool> {
        // Through the socket's own waker slot: no waiter is added to or
        // removed from a list on each turn.
        self.socket.poll_read_ready(cx).map(|r| r.is_ok())
    }

    /// Ready when the socket may be written (`false`: it failed).
    #[inline]
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<bool> {
        self.socket.poll_write_ready(cx).map(|r| r.is_ok())
    }

    /// After our close frame is out: send FIN, then read and discard until
    /// the client closes too (or `deadline` passes). Closing a socket with
    /// unread input makes the kernel send RST, which can destroy the close
    /// frame before the client reads it.
    ///
    /// Output the socket did not take by the close deadline (a client that
    /// does not read) is given up: the connection is reset, so that the
    /// kernel does not keep its buffers for a peer that is not reading.
    pub async fn linger(&mut self, deadline: Instant) {
        use tokio::io::AsyncWriteExt;
        if self.pending() > 0 {
            let _ = self.socket.set_zero_linger();
            return;
        }
        if let Some(tls) = &mut self.tls {
            tls.close_notify(&self.socket);
        }
        let stream = &mut self.socket;
        let _ = stream.shutdown().await;
        // On the heap, and only now: an array here would sit inside every
        // connection's task for its whole life.
        let mut sink = vec![0u8; READ_CHUNK];
        let drain = async {
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline.into(), drain).await;
    }
}

/// Frames data messages into `out`.
#[inline]
fn encode_messages(out: &mut impl BufMut, taken: &mut Vec<Outbound>) -> Framed {
    let mut framed = Framed::default();
    for m in taken.drain(..) {
        let (op, payload) = match &m {
            Outbound::Text(b) => (OpCode::Text, b),
            Outbound::Binary(b) => (OpCode::Binary, b),
        };
        framed.messages += 1;
        framed.bytes += payload.len() as u64;
        codec::encode(out, op, payload);
    }
    framed
}

/// Reads what the socket holds into `buf`. A read shorter than the room
/// offered means the socket's receive queue is empty: its readiness is
/// then cleared at once (as tokio's own `poll_read` does), so the loop
/// waits for the next arrival instead of spending a system call on the
/// `WouldBlock` it would get. Data that arrives meanwhile sets readiness
/// again (tokio clears only the readiness it observed before the read).
fn read_available(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut drained = None;
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        if n > 0 && n < room {
            drained = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, drained) {
        (_, Some(n)) => Ok(n),
        (r, None) => r,
    }
}
