//! The upstream leg of one proxied connection: a task of its own that
//! relays message by message between the upstream's socket and the
//! client's connection ([`Outlet`]), with wsgate's codec on the client side
//! (it masks what it sends).
//!
//! Both directions are bounded:
//!
//! - upstream → client: each message goes into the connection's send
//!   queue, whose bounds close a client that does not keep up with 4002;
//! - client → upstream: while the upstream's socket leaves output unsent,
//!   the client's reads are paused, so at most what the client task had
//!   already read waits here.
//!
//! The leg holds no buffer while idle: a read borrows the thread's spare
//! buffer and gives it back once its frames are out; the write buffer is
//! freed whenever it runs empty.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use wsgate_plugin_api::{Close, ConnLimits, Outbound, Outlet, SendError, Upstream};
use wsgate_ws::close;
use wsgate_ws::codec::{self, Decoder, Event, Need, OpCode};

/// Bytes read per read call when no larger frame is expected.
const READ_CHUNK: usize = 4096;

/// Close codes of wsgate for a failed upstream leg (docs/protocol.md).
pub const BAD_GATEWAY: u16 = 1014;

thread_local! {
    /// A read buffer lent to whichever leg of this thread reads next.
    static READ_SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// What the client's side (the router's hooks) hands the leg.
#[derive(Default)]
pub struct Shared {
    outbox: Mutex<Outbox>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct Outbox {
    messages: VecDeque<(OpCode, Bytes)>,
    /// The close to send upstream (the first one asked for).
    close: Option<(u16, String)>,
}

fn lock(m: &Mutex<Outbox>) -> MutexGuard<'_, Outbox> {
    // The data stays consistent: every change is a single push or take.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A client message for the upstream.
    pub fn push(&self, text: bool, data: Bytes) {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        lock(&self.outbox).messages.push_back((opcode, data));
        self.waker.wake();
    }

    /// Closes the upstream leg with `code` (after what was pushed); the
    /// first close wins.
    pub fn close(&self, code: u16, reason: &str) {
        let mut outbox = lock(&self.outbox);
        if outbox.close.is_none() {
            outbox.close = Some((code, reason.to_string()));
            drop(outbox);
            self.waker.wake();
        }
    }
}

/// The close code the client is sent for the upstream's: a code that may
/// not go on the wire (none at all, 1005) is a normal close.
fn for_client(code: Option<u16>) -> u16 {
    match code {
        Some(c) if close::may_be_received(c) => c,
        Some(_) => close::INTERNAL,
        None => close::NORMAL,
    }
}

/// The leg of one connection, as a future that ends when the leg is over.
pub struct Leg<S> {
    io: S,
    shared: Arc<Shared>,
    outlet: Outlet,
    url: Arc<str>,
    limits: ConnLimits,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Masks for what this leg sends.
    rng: fastrand::Rng,
    /// A close frame was queued for the upstream.
    sent_close: bool,
    /// The upstream's close frame arrived.
    got_close: bool,
    /// The leg failed: once the write buffer is out, it ends without
    /// waiting for the upstream.
    failed: bool,
    /// This leg paused the client's reads.
    paused: bool,
    /// `rbuf` holds what the upstream sent behind its 101, not yet decoded.
    leftover: bool,
    next_ping: Option<Instant>,
    pong_due: Option<Instant>,
    /// When a close handshake with the upstream is given up on.
    close_due: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Leg<S> {
    pub fn new(
        io: S,
        leftover: Bytes,
        shared: Arc<Shared>,
        outlet: Outlet,
        url: Arc<str>,
        limits: ConnLimits,
    ) -> Self {
        let now = Instant::now();
        let ping = (!limits.ping_interval.is_zero()).then(|| now + limits.ping_interval);
        outlet.set_upstream(Some(Upstream {
            target: Arc::clone(&url),
            state: "open",
        }));
        Self {
            io,
            shared,
            outlet,
            url,
            limits,
            decoder: Decoder::client(),
            rbuf: BytesMut::from(&leftover[..]),
            wbuf: BytesMut::new(),
            rng: fastrand::Rng::new(),
            sent_close: false,
            got_close: false,
            failed: false,
            paused: false,
            leftover: !leftover.is_empty(),
            next_ping: ping,
            pong_due: None,
            close_due: None,
            sleep: Box::pin(tokio::time::sleep_until(now.into())),
            armed: None,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        self.rng.u32(..).to_ne_bytes()
    }

    fn state(&self, state: &'static str) {
        self.outlet.set_upstream(Some(Upstream {
            target: Arc::clone(&self.url),
            state,
        }));
    }

    /// Queues a close frame for the upstream (once) and waits for its
    /// answer until `close_timeout`.
    fn send_close(&mut self, code: u16, reason: &str) {
        if self.sent_close {
            return;
        }
        let mask = self.mask();
        codec::encode_close_masked(&mut self.wbuf, Some(code), reason, mask);
        self.sent_close = true;
        self.close_due = Some(Instant::now() + self.limits.close_timeout);
        self.state("closing");
    }

    /// The upstream is gone or broke the protocol: the client is closed
    /// with `code` and the leg ends.
    fn fail(&mut self, code: u16, reason: &str) {
        tracing::debug!(upstream = %self.url, code, reason, "upstream leg failed");
        if !self.got_close {
            self.outlet.close(Close::new(code, reason));
        }
        self.failed = true;
    }

    /// The upstream's socket is gone: nothing more can be written to it.
    fn lost(&mut self) {
        self.wbuf.clear();
        self.fail(BAD_GATEWAY, "upstream connection lost");
    }

    /// Moves what the client sent into the write buffer.
    fn take_outbox(&mut self) -> bool {
        let (messages, close) = {
            let mut outbox = lock(&self.shared.outbox);
            if outbox.messages.is_empty() && (outbox.close.is_none() || self.sent_close) {
                return false;
            }
            (
                std::mem::take(&mut outbox.messages),
                if self.sent_close {
                    None
                } else {
                    outbox.close.take()
                },
            )
        };
        if !self.sent_close && !self.failed {
            for (opcode, data) in &messages {
                let mask = self.mask();
                codec::encode_masked(&mut self.wbuf, *opcode, data, mask);
            }
        }
        if let Some((code, reason)) = close {
            self.send_close(code, &reason);
        }
        true
    }

    /// Writes what is pending; `Err` when the socket failed.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<(), std::io::Error> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    let _ = self.wbuf.split_to(n);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if self.wbuf.is_empty() {
            // Give a burst's memory back; TLS flushes its records.
            self.wbuf = BytesMut::new();
            if let Poll::Ready(Err(e)) = Pin::new(&mut self.io).poll_flush(cx) {
                return Err(e);
            }
            if self.paused {
                self.paused = false;
                self.outlet.resume_reading();
            }
        } else if !self.paused {
            // The upstream does not take more: neither does the client.
            self.paused = true;
            self.outlet.pause_reading();
        }
        Ok(())
    }

    /// Reads and relays what the upstream sent; `true` if anything was read.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.failed {
            return false;
        }
        let mut progressed = false;
        // Frames that came right behind the 101 first (once: what is left
        // of them is a partial frame that waits for more bytes).
        if self.leftover {
            self.leftover = false;
            self.relay();
            progressed = true;
        }
        loop {
            if self.failed || self.got_close {
                break;
            }
            if self.rbuf.is_empty() {
                self.rbuf = READ_SPARE.take();
                self.rbuf.clear();
            }
            // The decoder reserved room for a larger frame it waits for.
            self.rbuf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    self.lost();
                    break;
                }
                Poll::Ready(Ok(_)) => {
                    progressed = true;
                    self.relay();
                }
                Poll::Ready(Err(_)) => {
                    self.lost();
                    break;
                }
                Poll::Pending => break,
            }
        }
        if self.rbuf.is_empty() {
            READ_SPARE.set(std::mem::take(&mut self.rbuf));
        }
        progressed
    }

    /// Handles every complete frame in the read buffer.
    fn relay(&mut self) {
        loop {
            if self.failed || self.got_close {
                self.rbuf.clear();
                return;
            }
            let event = match self
                .decoder
                .decode(&mut self.rbuf, self.limits.max_message_bytes)
            {
                Ok(Ok(event)) => event,
                Ok(Err(Need::Bytes(n))) => {
                    let len = self.rbuf.len();
                    self.rbuf.reserve(n.saturating_sub(len));
                    return;
                }
                Err(e) => {
                    self.send_close(e.close_code(), &e.to_string());
                    self.fail(BAD_GATEWAY, &format!("upstream {e}"));
                    return;
                }
            };
            match event {
                Event::Text(data) => self.forward(Outbound::Text(data)),
                Event::Binary(data) => self.forward(Outbound::Binary(data)),
                Event::Ping(payload) => {
                    if !self.sent_close {
                        let mask = self.mask();
                        codec::encode_masked(&mut self.wbuf, OpCode::Pong, &payload, mask);
                    }
                }
                Event::Pong(_) => self.pong_due = None,
                Event::Close(code, reason) => {
                    self.got_close = true;
                    if !self.sent_close {
                        // The upstream closes: the client is told with its
                        // code and reason, the upstream is answered.
                        self.outlet.close(Close::new(for_client(code), reason));
                        let mask = self.mask();
                        codec::encode_close_masked(&mut self.wbuf, code, "", mask);
                        self.sent_close = true;
                        self.state("closing");
                    }
                }
            }
        }
    }

    fn forward(&mut self, message: Outbound) {
        if self.sent_close {
            // The client's side is closing: nothing more goes to it.
            return;
        }
        match self.outlet.send(message) {
            Ok(()) => {}
            // The daemon closes the client (4002); its close reaches this
            // leg through the router.
            Err(SendError::QueueFull | SendError::Closing) => {}
        }
    }

    /// Acts on a deadline that passed; `true` if one did.
    fn timers(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        if self.close_due.is_some_and(|t| t <= now) {
            // The upstream did not answer the close (or take it): TCP is
            // dropped.
            self.failed = true;
            self.wbuf.clear();
            return true;
        }
        if self.pong_due.is_some_and(|t| t <= now) {
            self.pong_due = None;
            self.send_close(close::GOING_AWAY, "no pong in time");
            self.fail(BAD_GATEWAY, "upstream did not answer a ping");
            return true;
        }
        if !self.sent_close && self.next_ping.is_some_and(|t| t <= now) {
            let mask = self.mask();
            codec::encode_masked(&mut self.wbuf, OpCode::Ping, &[], mask);
            self.next_ping = Some(now + self.limits.ping_interval);
            if self.pong_due.is_none() {
                self.pong_due = Some(now + self.limits.pong_timeout);
            }
            return true;
        }
        let next = [self.close_due, self.pong_due]
            .into_iter()
            .chain((!self.sent_close).then_some(self.next_ping))
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        if self.armed != Some(next) {
            self.sleep.as_mut().reset(next.into());
            self.armed = Some(next);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = None;
            return true;
        }
        false
    }

    /// Whether the leg is over: closed both ways (or failed) and its last
    /// output written.
    fn over(&self) -> bool {
        self.wbuf.is_empty() && (self.failed || (self.sent_close && self.got_close))
    }

    fn poll_leg(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            self.shared.waker.register(cx.waker());
            let taken = self.take_outbox();
            if self.write(cx).is_err() {
                self.lost();
            }
            if self.over() {
                if self.sent_close && self.got_close && !self.failed {
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                }
                return Poll::Ready(());
            }
            let read = self.read(cx);
            let fired = self.timers(cx);
            if !(taken || read || fired || self.over()) {
                return Poll::Pending;
            }
        }
    }

    /// Runs the leg to its end.
    pub async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll_leg(cx)).await;
        if self.paused {
            self.outlet.resume_reading();
        }
        self.state("closed");
    }
}
