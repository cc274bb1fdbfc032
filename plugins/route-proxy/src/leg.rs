//! The upstream leg of one proxied connection: the upstream's socket, the
//! frames written to it and a task of its own that reads it, with wsgate's
//! codec on the client side (it masks what it sends).
//!
//! Client → upstream, a message is framed by the client's own task
//! ([`Shared::push`]) and, on a plain TCP upstream with nothing waiting
//! before it, written to the socket there and then: a relayed message
//! costs no hand-over between tasks. What the socket does not take waits
//! in the leg's write buffer, which the leg's task writes out. The
//! client's task pauses its own reads the moment the socket leaves bytes
//! behind (over TLS, whose leg writes everything, once [`PAUSE_AT`] wait),
//! and the leg resumes them once the buffer is written: at most what the
//! client's task had already read waits here.
//!
//! Upstream → client, the leg's task reads the upstream and puts each
//! message into the client connection's send queue, whose bounds close a
//! client that does not keep up with 4002.
//!
//! The leg holds no buffer while idle: a read borrows the thread's spare
//! buffer and gives it back once its frames are out; the write buffer is
//! freed whenever it runs empty.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;
use wsgate_plugin_api::{Close, ConnLimits, Outbound, Outlet, SendError, Upstream};
use wsgate_ws::close;
use wsgate_ws::codec::{self, Decoder, Event, Need, OpCode};

/// Bytes read per read call when no larger frame is expected.
const READ_CHUNK: usize = 4096;
/// Frames waiting for a TLS upstream at which the client's reads pause
/// (a plain upstream's pause as soon as its socket leaves any behind).
const PAUSE_AT: usize = 64 * 1024;

/// The close code of a failed upstream leg (docs/protocol.md).
pub const BAD_GATEWAY: u16 = 1014;

thread_local! {
    /// A read buffer lent to whichever leg of this thread reads next.
    static READ_SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
    /// Where a client's message is framed before it is written straight
    /// to the upstream, shared by the connections of this thread.
    static FRAME: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// The upstream's socket, as the leg reads it (and, over TLS, writes it).
pub enum Io {
    /// The read half; the write half is [`Shared`]'s.
    Plain(OwnedReadHalf),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Splits a plain upstream's socket between the leg's reads and
/// [`Shared`]'s writes.
pub fn plain(socket: TcpStream, outlet: Outlet) -> (Io, Shared) {
    let (read, write) = socket.into_split();
    (Io::Plain(read), Shared::new(Some(write), outlet))
}

/// A TLS upstream: the leg reads and writes it.
pub fn tls(socket: Box<TlsStream<TcpStream>>, outlet: Outlet) -> (Io, Shared) {
    (Io::Tls(socket), Shared::new(None, outlet))
}

impl Io {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // tokio's own reads: a read that does not fill the buffer ends
        // the socket's readiness, so no read is made only to be told
        // there is nothing more.
        match self {
            Io::Plain(r) => tokio_util::io::poll_read_buf(Pin::new(r), cx, buf),
            Io::Tls(t) => tokio_util::io::poll_read_buf(Pin::new(t), cx, buf),
        }
    }
}

/// The write side of the leg, shared by the client's task and the leg's.
pub struct Shared {
    out: Mutex<Out>,
    waker: AtomicWaker,
    /// The client's connection, whose reads pause while frames wait.
    outlet: Outlet,
}

struct Out {
    /// A plain upstream's write half, which the client's task writes to
    /// itself (over TLS, the leg writes).
    writer: Option<OwnedWriteHalf>,
    /// Frames the socket has not taken yet.
    wbuf: BytesMut,
    /// Masks for what this leg sends.
    rng: fastrand::Rng,
    /// A close the client's side asked for, until the leg sends it.
    close: Option<(u16, String)>,
    /// A close frame is queued or written: nothing more is.
    sent_close: bool,
    /// The client's reads are paused until the frames waiting are written.
    paused: bool,
    /// The socket failed or the leg is over: nothing more is written.
    failed: bool,
}

impl Out {
    fn mask(&mut self) -> [u8; 4] {
        self.rng.u32(..).to_ne_bytes()
    }

    fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.mask();
        codec::encode_masked(&mut self.wbuf, opcode, payload, mask);
    }

    fn open(&self) -> bool {
        !self.sent_close && !self.failed
    }

    /// Pauses the client's reads (once) while frames wait for the socket.
    fn pause(&mut self, outlet: &Outlet) {
        if !self.paused {
            self.paused = true;
            outlet.pause_reading();
        }
    }

    /// Pauses the client's reads while frames wait: those of a plain
    /// upstream as soon as its socket leaves any behind (the client's task
    /// reads no more until the leg has written them out), those of a TLS
    /// upstream, whose leg writes everything, once [`PAUSE_AT`] wait.
    fn pause_if_waiting(&mut self, outlet: &Outlet) {
        let waiting = match self.writer {
            Some(_) => !self.wbuf.is_empty(),
            None => self.wbuf.len() >= PAUSE_AT,
        };
        if waiting {
            self.pause(outlet);
        }
    }

    /// Lets the client's reads go on.
    fn resume(&mut self, outlet: &Outlet) {
        if self.paused {
            self.paused = false;
            outlet.resume_reading();
        }
    }
}

fn lock(m: &Mutex<Out>) -> MutexGuard<'_, Out> {
    // The data stays consistent: every change is made whole under the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes as much of `data` as the socket takes now; `Err` when it failed.
fn write_now(socket: &OwnedWriteHalf, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match socket.try_write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

impl Shared {
    fn new(writer: Option<OwnedWriteHalf>, outlet: Outlet) -> Self {
        Self {
            out: Mutex::new(Out {
                writer,
                wbuf: BytesMut::new(),
                rng: fastrand::Rng::new(),
                close: None,
                sent_close: false,
                paused: false,
                failed: false,
            }),
            waker: AtomicWaker::new(),
            outlet,
        }
    }

    /// A client message for the upstream (dropped once the leg is closing).
    pub fn push(&self, text: bool, data: &[u8]) {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut out = lock(&self.out);
        if !out.open() {
            return;
        }
        if !out.wbuf.is_empty() {
            // The leg is writing what waits: this goes behind it.
            out.frame(opcode, data);
            out.pause_if_waiting(&self.outlet);
            return;
        }
        let out = &mut *out;
        let handed = match &out.writer {
            Some(socket) => {
                let mut frame = FRAME.take();
                frame.clear();
                let mask = out.rng.u32(..).to_ne_bytes();
                codec::encode_masked(&mut frame, opcode, data, mask);
                // A failure is left to the leg, which finds it writing.
                let written = write_now(socket, &frame).unwrap_or(0);
                out.wbuf.extend_from_slice(&frame[written..]);
                FRAME.set(frame);
                !out.wbuf.is_empty()
            }
            None => {
                out.frame(opcode, data);
                true
            }
        };
        out.pause_if_waiting(&self.outlet);
        if handed {
            self.waker.wake();
        }
    }

    /// Closes the upstream leg with `code` (after what was pushed); the
    /// first close wins.
    pub fn close(&self, code: u16, reason: &str) {
        let mut out = lock(&self.out);
        if out.close.is_none() && !out.sent_close {
            out.close = Some((code, reason.to_string()));
            drop(out);
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
pub struct Leg {
    io: Io,
    shared: Arc<Shared>,
    outlet: Outlet,
    url: Arc<str>,
    limits: ConnLimits,
    decoder: Decoder,
    rbuf: BytesMut,
    /// The upstream's close frame arrived.
    got_close: bool,
    /// `Out::sent_close` and `Out::failed` as this task last set them
    /// (only it sets them): read without taking the lock.
    sent_close: bool,
    failed: bool,
    /// What was read left work for the write side (a pong, a close, a
    /// failure): the leg goes round once more.
    turn: bool,
    /// `rbuf` holds what the upstream sent behind its 101, not yet decoded.
    leftover: bool,
    next_ping: Option<Instant>,
    pong_due: Option<Instant>,
    /// When a close handshake with the upstream is given up on.
    close_due: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Option<Instant>,
    /// The waker `sleep` was polled with since it was set.
    sleep_waker: Option<Waker>,
}

impl Leg {
    pub fn new(
        io: Io,
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
            got_close: false,
            sent_close: false,
            failed: false,
            turn: false,
            leftover: !leftover.is_empty(),
            next_ping: ping,
            pong_due: None,
            close_due: None,
            sleep: Box::pin(tokio::time::sleep_until(now.into())),
            armed: None,
            sleep_waker: None,
        }
    }

    fn state(&self, state: &'static str) {
        self.outlet.set_upstream(Some(Upstream {
            target: Arc::clone(&self.url),
            state,
        }));
    }

    /// Queues a close frame for the upstream (once) and waits for its
    /// answer until `close_timeout`.
    fn send_close(&mut self, out: &mut Out, code: Option<u16>, reason: &str) {
        if out.sent_close {
            return;
        }
        let mask = out.mask();
        codec::encode_close_masked(&mut out.wbuf, code, reason, mask);
        out.sent_close = true;
        self.sent_close = true;
        self.turn = true;
        self.close_due = Some(Instant::now() + self.limits.close_timeout);
        self.state("closing");
    }

    /// The upstream is gone or broke the protocol: the client is closed
    /// with `code` and the leg ends once its last output is written.
    fn fail(&mut self, out: &mut Out, code: u16, reason: &str) {
        tracing::debug!(upstream = %self.url, code, reason, "upstream leg failed");
        if !self.got_close {
            self.outlet.close(Close::new(code, reason));
        }
        out.failed = true;
        self.failed = true;
        self.turn = true;
    }

    /// The upstream's socket is gone: nothing more can be written to it.
    fn lost(&mut self, out: &mut Out) {
        out.wbuf.clear();
        self.fail(out, BAD_GATEWAY, "upstream connection lost");
    }

    /// Sends the close the client's side asked for; `true` if there was one.
    fn take_close(&mut self, out: &mut Out) -> bool {
        match out.close.take() {
            Some((code, reason)) => {
                self.send_close(out, Some(code), &reason);
                true
            }
            None => false,
        }
    }

    /// Writes what is pending, and pauses or resumes the client's reads.
    fn write(&mut self, out: &mut Out, cx: &mut Context<'_>) {
        while !out.wbuf.is_empty() {
            let written = match (&mut out.writer, &mut self.io) {
                (Some(w), _) => Pin::new(w).poll_write(cx, &out.wbuf),
                (None, Io::Tls(t)) => Pin::new(t).poll_write(cx, &out.wbuf),
                (None, Io::Plain(_)) => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            };
            match written {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let _ = out.wbuf.split_to(n);
                }
                Poll::Ready(_) => return self.lost(out),
                Poll::Pending => break,
            }
        }
        if out.wbuf.is_empty() {
            // Give a burst's memory back; TLS flushes its records.
            out.wbuf = BytesMut::new();
            if let Io::Tls(t) = &mut self.io {
                if let Poll::Ready(Err(_)) = Pin::new(t).poll_flush(cx) {
                    return self.lost(out);
                }
            }
            out.resume(&self.outlet);
        } else {
            // The upstream does not take more: neither does the client.
            out.pause(&self.outlet);
        }
    }

    /// Reads and relays what the upstream sent, until its socket is empty.
    fn read(&mut self, cx: &mut Context<'_>) {
        // Frames that came right behind the 101 first (once: what is left
        // of them is a partial frame that waits for more bytes).
        if self.leftover {
            self.leftover = false;
            self.relay();
        }
        loop {
            if self.got_close || self.failed {
                break;
            }
            if self.rbuf.capacity() == 0 {
                self.rbuf = READ_SPARE.take();
                self.rbuf.clear();
            }
            // Read into the room left behind the messages already split
            // off (they may still be queued for the client, sharing the
            // buffer); only a nearly full buffer is replaced. The decoder
            // reserved room for a larger frame it waits for.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.io.poll_read(cx, &mut self.rbuf) {
                Poll::Ready(Ok(n)) if n > 0 => self.relay(),
                Poll::Ready(_) => {
                    let shared = Arc::clone(&self.shared);
                    self.lost(&mut lock(&shared.out));
                    break;
                }
                Poll::Pending => break,
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() <= 2 * READ_CHUNK {
            // Nothing partial is held: the room goes back to the thread
            // (a buffer a large message grew is freed instead).
            READ_SPARE.set(std::mem::take(&mut self.rbuf));
        } else if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
    }

    /// Handles every complete frame in the read buffer.
    fn relay(&mut self) {
        let shared = Arc::clone(&self.shared);
        loop {
            if self.got_close {
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
                    let mut out = lock(&shared.out);
                    self.send_close(&mut out, Some(e.close_code()), &e.to_string());
                    self.fail(&mut out, BAD_GATEWAY, &format!("upstream {e}"));
                    self.rbuf.clear();
                    return;
                }
            };
            match event {
                Event::Text(data) => self.forward(Outbound::Text(data)),
                Event::Binary(data) => self.forward(Outbound::Binary(data)),
                Event::Ping(payload) => {
                    let mut out = lock(&shared.out);
                    if out.open() {
                        out.frame(OpCode::Pong, &payload);
                        self.turn = true;
                    }
                }
                Event::Pong(_) => self.pong_due = None,
                Event::Close(code, reason) => {
                    self.got_close = true;
                    self.turn = true;
                    let mut out = lock(&shared.out);
                    if !out.sent_close {
                        // The upstream closes: the client is told with its
                        // code and reason, the upstream is answered.
                        self.outlet.close(Close::new(for_client(code), reason));
                        self.send_close(&mut out, code, "");
                    }
                }
            }
        }
    }

    fn forward(&mut self, message: Outbound) {
        if self.sent_close || self.failed {
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
    ///
    /// The sleep is armed at the nearest deadline and polled once per
    /// arming while the task's waker stays the same (the sleep keeps the
    /// one it registered): a wake-up for a relayed message reads neither
    /// the clock nor the timer.
    fn timers(&mut self, out: &mut Out, cx: &mut Context<'_>) -> bool {
        let next = [self.close_due, self.pong_due]
            .into_iter()
            .chain(out.open().then_some(self.next_ping))
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        if self.armed != Some(next) {
            self.sleep.as_mut().reset(next.into());
            self.armed = Some(next);
            self.sleep_waker = None;
        }
        let registered = self
            .sleep_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !self.sleep.is_elapsed() {
            return false;
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            self.sleep_waker = Some(cx.waker().clone());
            return false;
        }
        self.armed = None;
        // The sleep ended at `next`: that deadline is due, whatever the
        // clock's rounding.
        let now = Instant::now().max(next);
        if self.close_due.is_some_and(|t| t <= now) {
            // The upstream did not answer the close (or take it): TCP is
            // dropped.
            self.close_due = None;
            out.wbuf.clear();
            out.failed = true;
            self.failed = true;
        } else if self.pong_due.is_some_and(|t| t <= now) {
            self.pong_due = None;
            self.send_close(out, Some(close::GOING_AWAY), "no pong in time");
            self.fail(out, BAD_GATEWAY, "upstream did not answer a ping");
        } else if out.open() && self.next_ping.is_some_and(|t| t <= now) {
            // A reload reaches the leg at its pings: the route's limits in
            // force now (pings turned off: none is sent).
            if let Some(limits) = self.outlet.limits() {
                self.limits = limits;
            }
            if self.limits.ping_interval.is_zero() {
                self.next_ping = None;
            } else {
                out.frame(OpCode::Ping, &[]);
                self.next_ping = Some(now + self.limits.ping_interval);
                if self.pong_due.is_none() {
                    self.pong_due = Some(now + self.limits.pong_timeout);
                }
            }
        }
        true
    }

    /// Whether the leg is over: closed both ways (or failed) and its last
    /// output written.
    fn over(&self, out: &Out) -> bool {
        out.wbuf.is_empty() && (out.failed || (out.sent_close && self.got_close))
    }

    fn poll_leg(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = Arc::clone(&self.shared);
        loop {
            shared.waker.register(cx.waker());
            let mut out = lock(&shared.out);
            let closed = self.take_close(&mut out);
            let fired = self.timers(&mut out, cx);
            self.write(&mut out, cx);
            if self.over(&out) {
                let clean = !out.failed;
                // Nothing more is written, from either side.
                out.failed = true;
                // A plain upstream's write half shuts down when dropped.
                out.writer = None;
                if let (true, Io::Tls(t)) = (clean, &mut self.io) {
                    let _ = Pin::new(t).poll_shutdown(cx);
                }
                return Poll::Ready(());
            }
            drop(out);
            // Reads until the socket is empty: another turn is needed only
            // for what the reads left to write.
            self.read(cx);
            if !(closed || fired || std::mem::take(&mut self.turn)) {
                return Poll::Pending;
            }
        }
    }

    /// Runs the leg to its end.
    pub async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll_leg(cx)).await;
        lock(&self.shared.out).resume(&self.outlet);
        self.state("closed");
    }
}
