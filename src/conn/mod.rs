//! One connection's life, in one task: read, write, timers, close.
//!
//! The task waits on four things at once: the socket being readable, the
//! socket being writable (only while there is something to write), its send
//! queue or a close request ([`Conn::woken`]), and one timer set to the
//! nearest deadline (ping, pong, idle, lifetime, close). It uses readiness
//! and non-blocking reads and writes, so every wait can be interrupted
//! without losing a byte, and it holds no buffer while the connection is
//! idle: the read and write buffers are freed whenever they run empty.
//!
//! Limits are read from the route in force: a reload applies to a live
//! connection at its next event (message size, rate, timers, queue bound,
//! subscription cap).

pub mod close;
pub mod codec;
pub mod session;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use governor::clock::MonotonicClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wsgate_plugin_api::{Handler, Identity, Message, Outbound};

use crate::admin::protocol::Event as AdminEvent;
use crate::config::{Limits, OnRateLimit, Route};
use crate::daemon::Daemon;
use crate::registry::{CloseRequest, Conn, Slot};
use codec::{Decoder, Event, Need, OpCode};
use session::ConnSession;

/// Bytes read per read call when no larger frame is expected.
const READ_CHUNK: usize = 4096;
/// Encoded bytes gathered from the queue before a write.
const WRITE_BATCH: usize = 64 * 1024;
/// Queued messages moved into the write buffer at a time.
const TAKE_BATCH: usize = 256;

type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock>;

thread_local! {
    /// Where outbound frames are encoded before a write, shared by every
    /// connection served by this thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A read buffer lent to whichever connection of this thread reads
    /// next, and given back once its frames are handled.
    static READ_SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// An upgraded connection, admitted and ready to run.
pub struct Accepted {
    pub stream: TcpStream,
    /// Bytes the client sent after its upgrade request (already read by the
    /// HTTP layer).
    pub leftover: Bytes,
    pub slot: Slot,
    pub route: Arc<Route>,
    pub identity: Identity,
    pub query: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// A close frame is queued; `wait_peer`: wait for the client's close
    /// frame (until `deadline`) before dropping TCP.
    Closing {
        deadline: Instant,
        wait_peer: bool,
    },
}

/// Timer deadlines; `None` = off.
struct Timers {
    next_ping: Option<Instant>,
    /// Set while a ping is unanswered.
    pong_due: Option<Instant>,
    ping_payload: [u8; 8],
    idle_due: Option<Instant>,
    lifetime_due: Option<Instant>,
    /// When a drain closes this connection with 1001.
    drain_due: Option<Instant>,
}

fn after(now: Instant, d: Duration) -> Option<Instant> {
    (!d.is_zero()).then(|| now + d)
}

impl Timers {
    fn new(limits: &Limits, started: Instant) -> Self {
        Self {
            next_ping: after(started, limits.ping_interval),
            pong_due: None,
            ping_payload: [0; 8],
            idle_due: after(started, limits.idle_timeout),
            lifetime_due: after(started, limits.max_lifetime),
            drain_due: None,
        }
    }

    /// Re-applies limits after a reload.
    fn reset(&mut self, limits: &Limits, started: Instant, last_active: Instant) {
        let now = Instant::now();
        self.next_ping = after(now, limits.ping_interval);
        if let Some(due) = self.pong_due.as_mut() {
            *due = (*due).min(now + limits.pong_timeout);
        }
        self.idle_due = after(last_active, limits.idle_timeout);
        self.lifetime_due = after(started, limits.max_lifetime);
    }

    fn next(&self) -> Option<Instant> {
        [
            self.next_ping,
            self.pong_due,
            self.idle_due,
            self.lifetime_due,
            self.drain_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn limiter(limits: &Limits) -> Option<Limiter> {
    let rate = NonZeroU32::new(limits.messages_per_second)?;
    let burst = NonZeroU32::new(limits.message_burst).unwrap_or(rate);
    Some(RateLimiter::direct_with_clock(
        Quota::per_second(rate).allow_burst(burst),
        MonotonicClock,
    ))
}

/// Reads what the socket holds into `buf`. A read shorter than the room
/// offered means the socket's receive queue is empty: its readiness is
/// then cleared at once (as tokio's own `poll_read` does), so the loop
/// waits for the next arrival instead of spending a system call on the
/// `WouldBlock` it would get. Data that arrives meanwhile sets readiness
/// again (tokio clears only the readiness it observed before the read).
fn read_available(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut drained = None;
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        if n > 0 && n < room {
            drained = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, drained) {
        (_, Some(n)) => Ok(n),
        (r, None) => r,
    }
}

/// The connection's I/O state.
struct Wire {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// Total buffered bytes the decoder needs for its next frame.
    need: usize,
}

/// Why the loop ended, for the close counter and the log.
struct Ending {
    code: u16,
    reason: String,
}

/// Runs a connection to its end.
pub async fn run(daemon: Arc<Daemon>, accepted: Accepted) {
    let Accepted {
        stream,
        leftover,
        slot,
        mut route,
        identity,
        query,
    } = accepted;
    let conn = Arc::clone(slot.conn());
    let mut generation = daemon.generation();
    let mut session = ConnSession {
        daemon: &daemon,
        conn: &conn,
        id: conn.id.to_string(),
        identity,
        query,
        max_subscriptions: route.limits.max_subscriptions,
    };
    // `leftover` is a slice of hyper's 8 KiB read buffer: copy what the
    // client sent and let go of it, or every connection keeps that buffer.
    let rbuf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let mut wire = Wire {
        stream,
        rbuf,
        wbuf: BytesMut::new(),
        decoder: Decoder::new(),
        need: 0,
    };
    let mut task = Task {
        daemon: &daemon,
        conn: &conn,
        phase: Phase::Open,
        timers: Timers::new(&route.limits, conn.started),
        limiter: limiter(&route.limits),
        last_active: conn.started,
        ending: None,
        peer_close: None,
    };
    tracing::debug!(conn = conn.id, route = %route.path, ip = %conn.ip, user = ?conn.user, "connected");
    daemon.emit(|| AdminEvent::Connected {
        id: conn.id,
        route: route.path.clone(),
        ip: conn.ip.to_string(),
        user: conn.user.as_ref().map(|u| u.to_string()),
    });

    let mut handler = match route.router.open(&mut session) {
        Ok(h) => Some(h),
        Err(c) => {
            task.router_close(&mut wire, c);
            None
        }
    };
    // Admitted while a drain was starting: go at once.
    if daemon.is_draining() {
        conn.request_drain(crate::registry::Drain {
            close_at: Instant::now(),
            reconnect_after_ms: 0,
        });
    }
    // A client that sent frames right behind its upgrade request.
    if !wire.rbuf.is_empty() {
        task.process(&mut wire, &mut handler, &mut session, &route.limits);
    }

    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    // The deadline `sleep` is set to: re-arming a timer costs a lock on the
    // timer wheel, so it is done only when the deadline moves.
    let mut armed: Option<Instant> = None;
    let mut scratch: Vec<Outbound> = Vec::new();

    loop {
        // A reload reaches a live connection at its next event.
        let now_generation = daemon.generation();
        if now_generation != generation {
            generation = now_generation;
            if let Some(r) = daemon.settings().route(&route.path) {
                if !Arc::ptr_eq(&r.router, &route.router) {
                    // New router options (e.g. topic permissions) apply to
                    // this connection from its next message on.
                    let moved = handler.as_mut().is_none_or(|h| r.router.rebind(h.as_mut()));
                    if !moved {
                        task.start_close(&mut wire, close::GOING_AWAY, "route changed", true);
                    }
                }
                if r.limits != route.limits {
                    task.apply(&r.limits, &route.limits);
                    session.max_subscriptions = r.limits.max_subscriptions;
                }
                route = Arc::clone(r);
            }
        }

        if task.phase == Phase::Open {
            if let Some(drain) = conn.take_drain() {
                if let Some(h) = handler.as_mut() {
                    h.on_shutdown(&mut session, drain.reconnect_after_ms);
                }
                task.timers.drain_due = Some(drain.close_at);
            }
        }
        // Whether the queue may still hold work that was not taken (the
        // write buffer was full, or a whole batch was taken): then the loop
        // goes round again as soon as the buffer has room, instead of
        // waiting for a wake-up that was already spent.
        let mut backlog = task.phase == Phase::Open && wire.wbuf.len() >= WRITE_BATCH;
        if task.phase == Phase::Open && wire.wbuf.len() < WRITE_BATCH {
            let request = conn.take(&mut scratch, TAKE_BATCH);
            backlog = scratch.len() == TAKE_BATCH;
            if let Some(request) = request {
                task.encode_all(&mut wire, &mut scratch);
                task.start_close(
                    &mut wire,
                    request.code,
                    &request.reason,
                    !is_fatal(&request),
                );
            } else if !task.send_taken(&mut wire, &mut scratch) {
                task.vanished();
                break;
            }
        }
        if !wire.wbuf.is_empty() {
            match wire.stream.try_write(&wire.wbuf) {
                Ok(n) => wire.wbuf.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    task.vanished();
                    break;
                }
            }
        }
        if wire.wbuf.is_empty() {
            // Hold no write buffer while idle.
            wire.wbuf = BytesMut::new();
            if let Phase::Closing {
                wait_peer: false, ..
            } = task.phase
            {
                break;
            }
        }
        if backlog && wire.wbuf.len() < WRITE_BATCH {
            continue;
        }
        let deadline = match task.phase {
            Phase::Open => task.timers.next(),
            Phase::Closing { deadline, .. } => Some(deadline),
        };
        if let Some(d) = deadline.filter(|d| armed != Some(*d)) {
            sleep.as_mut().reset(d.into());
            armed = Some(d);
        }
        // Stop reading while a large write is pending (a client flooding
        // pings without reading its pongs), so memory stays bounded.
        let read = wire.wbuf.len() < WRITE_BATCH;

        let write = !wire.wbuf.is_empty();
        // Readiness is polled through the socket's own waker slots: no
        // waiter is added to or removed from a list on each turn.
        let wake = std::future::poll_fn(|cx| {
            if conn.poll_woken(cx).is_ready() {
                return Poll::Ready(Wake::Queue);
            }
            if read {
                if let Poll::Ready(r) = wire.stream.poll_read_ready(cx) {
                    return Poll::Ready(Wake::Read(r.is_ok()));
                }
            }
            if write {
                if let Poll::Ready(r) = wire.stream.poll_write_ready(cx) {
                    return Poll::Ready(Wake::Write(r.is_ok()));
                }
            }
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        match wake {
            // The next turn takes what was queued, or re-reads the limits.
            Wake::Queue => {}
            Wake::Read(ok) => {
                if !ok || !task.read(&mut wire, &mut handler, &mut session, &route.limits) {
                    break;
                }
            }
            Wake::Write(ok) => {
                if !ok {
                    task.vanished();
                    break;
                }
            }
            Wake::Timer => {
                armed = None;
                if !task.fire(&mut wire, &route.limits) {
                    break;
                }
            }
        }
    }

    if let Some(h) = handler.take() {
        h.on_close(&mut session);
    }
    daemon.hub.unsubscribe_all(&conn);
    let ending = task.ending.take().unwrap_or(Ending {
        code: close::ABNORMAL,
        reason: "connection lost".into(),
    });
    daemon.metrics.closed(ending.code);
    daemon.emit(|| AdminEvent::Closed {
        id: conn.id,
        route: route.path.clone(),
        code: ending.code,
        reason: ending.reason.clone(),
    });
    let age = conn.started.elapsed();
    if matches!(
        ending.code,
        close::NORMAL | close::GOING_AWAY | close::ABNORMAL
    ) {
        tracing::debug!(conn = conn.id, route = %route.path, ip = %conn.ip, code = ending.code, reason = %ending.reason, age = ?age, "closed");
    } else {
        tracing::info!(conn = conn.id, route = %route.path, ip = %conn.ip, user = ?conn.user, code = ending.code, reason = %ending.reason, age = ?age, "closed");
    }
    if let Phase::Closing { deadline, .. } = task.phase {
        linger(&mut wire.stream, deadline).await;
    }
    drop(slot);
}

/// After our close frame is out: send FIN, then read and discard until the
/// client closes too (or the close deadline passes). Closing a socket with
/// unread input makes the kernel send RST, which can destroy the close frame
/// before the client reads it.
async fn linger(stream: &mut TcpStream, deadline: Instant) {
    use tokio::io::AsyncWriteExt;
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

/// What woke the connection task.
enum Wake {
    /// A message was queued or a close requested.
    Queue,
    /// The socket is readable (`false`: it failed).
    Read(bool),
    /// The socket is writable (`false`: it failed).
    Write(bool),
    /// The nearest deadline passed.
    Timer,
}

/// Closes that end at once, without waiting for the client's close frame.
fn is_fatal(request: &CloseRequest) -> bool {
    request.discard_queue
}

struct Task<'a> {
    daemon: &'a Daemon,
    conn: &'a Arc<Conn>,
    phase: Phase,
    timers: Timers,
    limiter: Option<Limiter>,
    last_active: Instant,
    ending: Option<Ending>,
    /// The client's close code, once its close frame arrived.
    peer_close: Option<u16>,
}

impl Task<'_> {
    fn apply(&mut self, new: &Limits, old: &Limits) {
        self.conn
            .queue_limit
            .store(new.send_queue, Ordering::Relaxed);
        if (new.messages_per_second, new.message_burst)
            != (old.messages_per_second, old.message_burst)
        {
            self.limiter = limiter(new);
        }
        self.timers.reset(new, self.conn.started, self.last_active);
    }

    /// Encodes taken messages into the write buffer.
    fn encode_all(&mut self, wire: &mut Wire, taken: &mut Vec<Outbound>) {
        self.encode_into(&mut wire.wbuf, taken);
    }

    /// Encodes and writes taken messages. With nothing already pending,
    /// they are encoded into this thread's scratch buffer and written from
    /// there, and only what the socket did not take is copied into the
    /// connection's own buffer: a connection that keeps up allocates
    /// nothing to send. `false` when the socket failed.
    fn send_taken(&mut self, wire: &mut Wire, taken: &mut Vec<Outbound>) -> bool {
        if taken.is_empty() {
            return true;
        }
        if !wire.wbuf.is_empty() {
            self.encode_all(wire, taken);
            return true;
        }
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            self.encode_into(&mut *buf, taken);
            let written = match wire.stream.try_write(&buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(_) => return false,
            };
            if let Some(rest) = buf.get(written..).filter(|r| !r.is_empty()) {
                wire.wbuf.extend_from_slice(rest);
            }
            if buf.capacity() > 2 * WRITE_BATCH {
                // A large message passed through; do not keep its room.
                *buf = Vec::new();
            }
            true
        })
    }

    fn encode_into(&mut self, out: &mut impl bytes::BufMut, taken: &mut Vec<Outbound>) {
        if taken.is_empty() {
            return;
        }
        let mut bytes = 0u64;
        let count = taken.len() as u64;
        for m in taken.drain(..) {
            let (op, payload) = match &m {
                Outbound::Text(b) => (OpCode::Text, b),
                Outbound::Binary(b) => (OpCode::Binary, b),
            };
            bytes += payload.len() as u64;
            codec::encode(out, op, payload);
        }
        let stats = &self.conn.stats;
        stats.msgs_out.fetch_add(count, Ordering::Relaxed);
        stats.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A close a router asked for; a code that may not go on the wire
    /// becomes 1011.
    fn router_close(&mut self, wire: &mut Wire, c: wsgate_plugin_api::Close) {
        if close::may_be_received(c.code) {
            self.start_close(wire, c.code, &c.reason, true);
        } else {
            tracing::warn!(
                conn = self.conn.id,
                code = c.code,
                "router asked for an invalid close code"
            );
            self.start_close(wire, close::INTERNAL, "internal error", true);
        }
    }

    /// Queues a close frame and enters the closing phase (once).
    fn start_close(&mut self, wire: &mut Wire, code: u16, reason: &str, wait_peer: bool) {
        if self.phase != Phase::Open {
            return;
        }
        // What the client was already sent (queued) goes out before the
        // close frame, unless the close request discarded the queue.
        let mut queued = Vec::new();
        let _ = self.conn.take(&mut queued, usize::MAX);
        self.encode_all(wire, &mut queued);
        codec::encode_close(&mut wire.wbuf, Some(code), reason);
        self.phase = Phase::Closing {
            deadline: Instant::now() + self.daemon.settings().config.server.close_timeout,
            wait_peer,
        };
        self.ending.get_or_insert(Ending {
            code,
            reason: reason.to_string(),
        });
    }

    /// The peer is gone without a close handshake.
    fn vanished(&mut self) {
        self.ending.get_or_insert(Ending {
            code: close::ABNORMAL,
            reason: "connection lost".into(),
        });
    }

    /// Reads what is available; `false` ends the loop.
    fn read(
        &mut self,
        wire: &mut Wire,
        handler: &mut Option<Box<dyn Handler>>,
        session: &mut ConnSession<'_>,
        limits: &Limits,
    ) -> bool {
        if wire.rbuf.is_empty() {
            // Nothing partial is held: borrow the thread's spare buffer
            // (its room is reclaimed if no message still points into it).
            wire.rbuf = READ_SPARE.take();
            wire.rbuf.clear();
        }
        let want = wire.need.max(wire.rbuf.len() + READ_CHUNK / 2);
        if wire.rbuf.capacity() < want {
            wire.rbuf.reserve((want - wire.rbuf.len()).max(READ_CHUNK));
        }
        match read_available(&wire.stream, &mut wire.rbuf) {
            Ok(0) => {
                if self.peer_close.is_none() {
                    self.vanished();
                }
                return false;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                self.vanished();
                return false;
            }
        }
        self.process(wire, handler, session, limits);
        if wire.rbuf.is_empty() {
            // Hold no read buffer while idle: give it back to the thread,
            // unless a large message made it large.
            let buf = std::mem::take(&mut wire.rbuf);
            if buf.capacity() <= 2 * READ_CHUNK {
                READ_SPARE.set(buf);
            }
        }
        true
    }

    /// Handles every complete frame in the read buffer.
    fn process(
        &mut self,
        wire: &mut Wire,
        handler: &mut Option<Box<dyn Handler>>,
        session: &mut ConnSession<'_>,
        limits: &Limits,
    ) {
        loop {
            if matches!(
                self.phase,
                Phase::Closing {
                    wait_peer: false,
                    ..
                }
            ) {
                // Nothing more is read after a failure or a completed close.
                wire.rbuf.clear();
                return;
            }
            let event = match wire
                .decoder
                .decode(&mut wire.rbuf, limits.max_message_bytes)
            {
                Ok(Ok(event)) => event,
                Ok(Err(Need::Bytes(n))) => {
                    wire.need = n;
                    return;
                }
                Err(e) => {
                    tracing::debug!(conn = self.conn.id, error = %e, "protocol failure");
                    self.start_close(wire, e.close_code(), &e.to_string(), false);
                    continue;
                }
            };
            wire.need = 0;
            match event {
                Event::Text(data) if self.phase == Phase::Open => {
                    self.on_data(wire, handler, session, limits, data, true)
                }
                Event::Binary(data) if self.phase == Phase::Open => {
                    self.on_data(wire, handler, session, limits, data, false)
                }
                Event::Text(_) | Event::Binary(_) => {}
                Event::Ping(payload) => codec::encode(&mut wire.wbuf, OpCode::Pong, &payload),
                Event::Pong(payload) => self.on_pong(&payload),
                Event::Close(code, _reason) => {
                    self.peer_close = Some(code.unwrap_or(close::NORMAL));
                    match self.phase {
                        Phase::Open => {
                            // Answer with the same code, then end.
                            codec::encode_close(&mut wire.wbuf, code, "");
                            self.ending = Some(Ending {
                                code: code.unwrap_or(close::NORMAL),
                                reason: "closed by client".into(),
                            });
                            self.phase = Phase::Closing {
                                deadline: Instant::now()
                                    + self.daemon.settings().config.server.close_timeout,
                                wait_peer: false,
                            };
                        }
                        Phase::Closing { deadline, .. } => {
                            self.phase = Phase::Closing {
                                deadline,
                                wait_peer: false,
                            };
                        }
                    }
                }
            }
        }
    }

    /// One inbound data message: counters, idle timer, rate limit, router.
    fn on_data(
        &mut self,
        wire: &mut Wire,
        handler: &mut Option<Box<dyn Handler>>,
        session: &mut ConnSession<'_>,
        limits: &Limits,
        data: Bytes,
        text: bool,
    ) {
        let now = Instant::now();
        self.last_active = now;
        self.timers.idle_due = after(now, limits.idle_timeout);
        let stats = &self.conn.stats;
        stats.last_active_ms.store(
            now.duration_since(self.conn.started).as_millis() as u64,
            Ordering::Relaxed,
        );
        stats.msgs_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let metrics = &self.daemon.metrics;

        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            match limits.on_rate_limit {
                OnRateLimit::Close => {
                    metrics.rate_limited("closed");
                    self.start_close(wire, close::POLICY, "rate limit exceeded", true);
                }
                OnRateLimit::Drop => {
                    metrics.rate_limited("dropped");
                    if let Some(h) = handler.as_mut() {
                        h.on_rate_limited(session);
                    }
                }
            }
            return;
        }
        let Some(h) = handler.as_mut() else {
            return;
        };
        let message = if text {
            // Validated by the decoder; checked again because the type
            // system cannot carry that across `Bytes` without `unsafe`.
            match simdutf8::basic::from_utf8(&data) {
                Ok(s) => Message::Text(s),
                Err(_) => return,
            }
        } else {
            Message::Binary(&data)
        };
        if let Err(c) = h.on_message(session, message) {
            self.router_close(wire, c);
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        if self.timers.pong_due.is_some() && payload == self.timers.ping_payload {
            self.timers.pong_due = None;
            let sent = u64::from_be_bytes(self.timers.ping_payload);
            let now = self.conn.started.elapsed().as_micros() as u64;
            self.conn
                .stats
                .rtt_us
                .store(now.saturating_sub(sent).max(1), Ordering::Relaxed);
        }
    }

    /// Handles due timers; `false` ends the loop.
    fn fire(&mut self, wire: &mut Wire, limits: &Limits) -> bool {
        let now = Instant::now();
        if let Phase::Closing { deadline, .. } = self.phase {
            return now < deadline;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.timers.drain_due) {
            self.start_close(wire, close::GOING_AWAY, "server shutting down", true);
        } else if due(self.timers.pong_due) {
            self.start_close(wire, close::HEARTBEAT_TIMEOUT, "no pong in time", false);
        } else if due(self.timers.idle_due) {
            self.start_close(wire, close::IDLE_TIMEOUT, "idle timeout", true);
        } else if due(self.timers.lifetime_due) {
            self.start_close(wire, close::MAX_LIFETIME, "max lifetime reached", true);
        } else if due(self.timers.next_ping) {
            // One ping at a time: its payload identifies the pong that
            // answers it, and the pong deadline runs from it.
            if self.timers.pong_due.is_none() {
                let micros = self.conn.started.elapsed().as_micros() as u64;
                self.timers.ping_payload = micros.to_be_bytes();
                codec::encode(&mut wire.wbuf, OpCode::Ping, &self.timers.ping_payload);
                self.timers.pong_due = Some(now + limits.pong_timeout);
            }
            self.timers.next_ping = after(now, limits.ping_interval);
        }
        true
    }
}
