//! What a connection does with its frames and deadlines: the close
//! handshake, ping/pong (pongs coalesced), the message rate limit and the
//! frame budget, the write-progress deadline, and the dispatch of data
//! messages to its router. It sees frames, never the socket ([`Wire`] does
//! that).

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::MonotonicClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use wsgate_plugin_api::{Close, Closing, DynRouter, Handler, Inbound, Outbound};

use super::session::ConnSession;
use super::timers::{Due, Timers};
use super::wire::{Framed, Wire};
use crate::config::{Limits, OnRateLimit};
use crate::handle::{bump, Conn};
use crate::metrics::{Metrics, SlowConsumer};
use crate::ws::close;
use crate::ws::codec::{Event, OpCode, SmallFragments};

type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock>;

/// A token bucket of `rate` per second holding `burst`; `None` when the
/// rate is 0 (off).
fn bucket(rate: u32, burst: u32) -> Option<Limiter> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::direct_with_clock(
        Quota::per_second(rate).allow_burst(burst),
        MonotonicClock,
    ))
}

fn limiter(limits: &Limits) -> Option<Limiter> {
    bucket(limits.messages_per_second, limits.message_burst)
}

/// What a frame over the frame budget may become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Excess {
    /// Leaving it out changes nothing for the protocol (a ping, a pong, an
    /// empty fragment): dropped under `on_rate_limit = "drop"`.
    Droppable,
    /// A fragment carrying data: leaving it out would corrupt its message,
    /// so the connection is closed with 1008 whatever `on_rate_limit` says.
    Binding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// A close frame is queued; `wait_peer`: wait for the client's close
    /// frame (until `deadline`) before dropping TCP.
    Closing {
        deadline: Instant,
        wait_peer: bool,
    },
}

/// Why the connection ended, for the close counter and the log.
pub struct Ending {
    pub code: u16,
    pub reason: String,
}

/// One connection's protocol state and its router.
pub struct Task<'a> {
    pub conn: &'a Arc<Conn>,
    metrics: &'a Metrics,
    pub phase: Phase,
    pub timers: Timers,
    limiter: Option<Limiter>,
    /// The frame budget (`frames_per_second`), made on the first frame it
    /// counts: a connection that sends none holds only the pointer.
    frames: Option<Box<Limiter>>,
    /// Whether dropping frames over the budget was logged (once).
    frames_logged: bool,
    last_active: Instant,
    ending: Option<Ending>,
    /// The client's close code, once its close frame arrived.
    peer_close: Option<u16>,
    /// `[server] close_timeout` in force.
    close_timeout: Duration,
    /// The router's per-connection handler (`None` once it refused to open).
    handler: Option<Box<dyn Handler>>,
    pub session: ConnSession<'a>,
}

impl<'a> Task<'a> {
    pub fn new(
        session: ConnSession<'a>,
        metrics: &'a Metrics,
        limits: &Limits,
        close_timeout: Duration,
    ) -> Self {
        let conn = session.conn;
        Self {
            conn,
            metrics,
            phase: Phase::Open,
            timers: Timers::new(limits, conn.started),
            limiter: limiter(limits),
            frames: None,
            frames_logged: false,
            last_active: conn.started,
            ending: None,
            peer_close: None,
            close_timeout,
            handler: None,
            session,
        }
    }

    /// Opens the router's side of the connection.
    pub fn open(&mut self, wire: &mut Wire, router: &dyn DynRouter) {
        match router.open(&mut self.session) {
            Ok(h) => self.handler = Some(h),
            Err(c) => self.router_close(wire, c),
        }
    }

    /// After a reload: moves the handler onto the route's new router
    /// instance (new options, same state); `false` when it cannot (the
    /// router is of another kind now).
    pub fn rebind(&mut self, router: &dyn DynRouter) -> bool {
        self.handler
            .as_mut()
            .is_none_or(|h| router.rebind(h.as_mut()))
    }

    /// After a reload: new limits apply from now on.
    pub fn apply(&mut self, new: &Limits, old: &Limits, now: Instant) {
        self.conn
            .queue_limit
            .store(new.send_queue, Ordering::Relaxed);
        self.conn
            .queue_bytes_limit
            .store(new.send_queue_bytes, Ordering::Relaxed);
        if (new.messages_per_second, new.message_burst)
            != (old.messages_per_second, old.message_burst)
        {
            self.limiter = limiter(new);
        }
        if (new.frames_per_second, new.frame_burst) != (old.frames_per_second, old.frame_burst) {
            self.frames = None;
        }
        self.timers
            .reset(new, self.conn.started, self.last_active, now);
        self.session.apply(new, self.close_timeout);
    }

    /// After a reload: the server's `close_timeout` in force.
    pub fn set_close_timeout(&mut self, close_timeout: Duration) {
        self.close_timeout = close_timeout;
        self.session.limits.close_timeout = close_timeout;
    }

    /// The daemon is draining: the router may tell its client, and the
    /// connection closes with 1001 at `close_at`.
    pub fn drain(&mut self, close_at: Instant, reconnect_after_ms: u64) {
        if let Some(h) = self.handler.as_mut() {
            h.on_shutdown(&mut self.session, reconnect_after_ms);
        }
        self.timers.drain_at(close_at);
    }

    #[inline]
    fn count_out(&self, framed: Framed) {
        if framed.messages > 0 {
            let stats = &self.conn.stats;
            bump(&stats.msgs_out, framed.messages);
            bump(&stats.bytes_out, framed.bytes);
        }
    }

    /// Frames taken messages behind what is pending.
    #[inline]
    pub fn queue(&mut self, wire: &mut Wire, taken: &mut Vec<Outbound>) {
        let framed = wire.queue(taken);
        self.count_out(framed);
    }

    /// Frames and writes taken messages; `false` when the socket failed.
    #[inline]
    pub fn send(&mut self, wire: &mut Wire, taken: &mut Vec<Outbound>) -> bool {
        match wire.send(taken) {
            Ok(framed) => {
                self.count_out(framed);
                true
            }
            Err(_) => false,
        }
    }

    /// After a write: output is still pending (`progressed`: the socket
    /// took some of it) or, with `pending` 0, everything was written.
    #[inline]
    pub fn wrote(&mut self, limits: &Limits, pending: usize, progressed: bool) {
        self.conn.set_unsent(pending);
        if pending == 0 {
            self.timers.output_drained();
        } else {
            self.timers.output_pending(limits, progressed, Instant::now);
        }
    }

    /// A close a router asked for; a code that may not go on the wire
    /// becomes 1011.
    fn router_close(&mut self, wire: &mut Wire, c: Close) {
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
    pub fn start_close(&mut self, wire: &mut Wire, code: u16, reason: &str, wait_peer: bool) {
        if self.phase != Phase::Open {
            return;
        }
        // What the client was already sent (queued) goes out before the
        // close frame, unless the close request discarded the queue.
        let mut queued = Vec::new();
        let _ = self.conn.take(&mut queued, usize::MAX);
        self.queue(wire, &mut queued);
        wire.close_frame(Some(code), reason);
        self.phase = Phase::Closing {
            deadline: Instant::now() + self.close_timeout,
            wait_peer,
        };
        self.ending.get_or_insert(Ending {
            code,
            reason: reason.to_string(),
        });
        self.closing(code, reason, false);
    }

    /// Tells the router that the close has started.
    fn closing(&mut self, code: u16, reason: &str, by_client: bool) {
        if let Some(h) = self.handler.as_mut() {
            let closing = Closing {
                code,
                reason: reason.to_string(),
                by_client,
            };
            h.on_closing(&mut self.session, &closing);
        }
    }

    /// The peer is gone without a close handshake.
    pub fn vanished(&mut self) {
        self.ending.get_or_insert(Ending {
            code: close::ABNORMAL,
            reason: "connection lost".into(),
        });
    }

    /// Reads what is available and handles it; `false` ends the loop.
    #[inline]
    pub fn read(&mut self, wire: &mut Wire, limits: &Limits) -> bool {
        match wire.fill() {
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
        self.process(wire, limits);
        wire.release_input();
        true
    }

    /// Handles every complete frame in the read buffer.
    ///
    /// A client that takes its output gets a pong for each ping. Once the
    /// socket has left output unsent, pongs are coalesced (RFC 6455 5.5.3
    /// allows it for pings whose pongs were not sent yet): of the pings
    /// that arrive back to back, only the latest is answered, once the run
    /// ends (at another frame or at the end of what was read), and its pong
    /// takes the place of an unsent pong that ends the write buffer. A
    /// pong is never longer than its ping, so a reading client's pongs are
    /// bounded by what it sent, and a client that does not read holds at
    /// most one pong behind its other output.
    pub fn process(&mut self, wire: &mut Wire, limits: &Limits) {
        let coalesce = wire.pending() > 0;
        let mut pong: Option<Bytes> = None;
        let mut dropped = 0u64;
        loop {
            if matches!(
                self.phase,
                Phase::Closing {
                    wait_peer: false,
                    ..
                }
            ) {
                // Nothing more is read after a failure or a completed close.
                wire.discard_input();
                pong = None;
                break;
            }
            let next = wire.next_event(limits.max_message_bytes);
            let small = wire.take_small_fragments();
            if !small.is_empty() {
                self.charge_fragments(wire, limits, small, &mut dropped, &mut pong);
            }
            let event = match next {
                None => break,
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::debug!(conn = self.conn.id, error = %e, "protocol failure");
                    answer_pong(wire, &mut pong);
                    self.start_close(wire, e.close_code(), &e.to_string(), false);
                    continue;
                }
            };
            match event {
                Event::Ping(payload) => {
                    if !self.frame_allowed(limits) {
                        self.over_budget(wire, limits, Excess::Droppable, &mut dropped, &mut pong);
                    } else if coalesce {
                        pong = Some(payload);
                    } else {
                        wire.control(OpCode::Pong, &payload);
                    }
                    continue;
                }
                Event::Pong(payload) => {
                    if self.frame_allowed(limits) {
                        self.on_pong(&payload);
                    } else {
                        self.over_budget(wire, limits, Excess::Droppable, &mut dropped, &mut pong);
                    }
                    continue;
                }
                _ => answer_pong(wire, &mut pong),
            }
            match event {
                Event::Text(data) if self.phase == Phase::Open => {
                    self.on_data(wire, limits, data, true)
                }
                Event::Binary(data) if self.phase == Phase::Open => {
                    self.on_data(wire, limits, data, false)
                }
                Event::Text(_) | Event::Binary(_) | Event::Ping(_) | Event::Pong(_) => {}
                Event::Close(code, reason) => self.on_peer_close(wire, code, &reason),
            }
        }
        answer_pong(wire, &mut pong);
        if dropped > 0 {
            self.metrics.frames_rate_limited(dropped, false);
        }
    }

    /// Takes one frame from the frame budget; `true` when it fits (or the
    /// budget is off).
    #[inline]
    fn frame_allowed(&mut self, limits: &Limits) -> bool {
        if limits.frames_per_second == 0 {
            return true;
        }
        let frames = match &mut self.frames {
            Some(f) => f,
            none => match bucket(limits.frames_per_second, limits.frame_burst) {
                Some(b) => none.insert(Box::new(b)),
                None => return true,
            },
        };
        frames.check().is_ok()
    }

    /// Small fragments the decoder went through take from the frame budget
    /// as control frames do. Those carrying data take first: when the
    /// budget runs out, what is left over falls on the empty ones, which
    /// may be dropped.
    fn charge_fragments(
        &mut self,
        wire: &mut Wire,
        limits: &Limits,
        small: SmallFragments,
        dropped: &mut u64,
        pong: &mut Option<Bytes>,
    ) {
        for (n, excess) in [
            (small.data, Excess::Binding),
            (small.empty, Excess::Droppable),
        ] {
            for _ in 0..n {
                if self.phase != Phase::Open {
                    return;
                }
                if !self.frame_allowed(limits) {
                    self.over_budget(wire, limits, excess, dropped, pong);
                }
            }
        }
    }

    /// A frame over the frame budget: dropped (`on_rate_limit = "drop"`,
    /// and leaving it out is safe) or the connection closes with 1008.
    fn over_budget(
        &mut self,
        wire: &mut Wire,
        limits: &Limits,
        excess: Excess,
        dropped: &mut u64,
        pong: &mut Option<Bytes>,
    ) {
        if self.phase != Phase::Open {
            // Closing already: nothing more is answered or counted.
            return;
        }
        if limits.on_rate_limit == OnRateLimit::Drop && excess == Excess::Droppable {
            *dropped += 1;
            if !self.frames_logged {
                self.frames_logged = true;
                tracing::info!(
                    conn = self.conn.id,
                    ip = %self.conn.ip,
                    frames_per_second = limits.frames_per_second,
                    "frame budget exceeded: dropping pings, pongs and empty fragments over it"
                );
            }
            return;
        }
        self.metrics.frames_rate_limited(0, true);
        answer_pong(wire, pong);
        self.start_close(wire, close::POLICY, "frame rate limit exceeded", true);
    }

    /// The client's close frame: answer it (with the same code) unless we
    /// started the close, then end.
    fn on_peer_close(&mut self, wire: &mut Wire, code: Option<u16>, reason: &str) {
        self.peer_close = Some(code.unwrap_or(close::NORMAL));
        let (deadline, opened) = match self.phase {
            Phase::Open => {
                wire.close_frame(code, "");
                self.ending = Some(Ending {
                    code: code.unwrap_or(close::NORMAL),
                    reason: "closed by client".into(),
                });
                (Instant::now() + self.close_timeout, true)
            }
            Phase::Closing { deadline, .. } => (deadline, false),
        };
        self.phase = Phase::Closing {
            deadline,
            wait_peer: false,
        };
        if opened {
            // An empty close frame says 1005 (no code), which the router
            // would relay as a normal close.
            self.closing(code.unwrap_or(close::NORMAL), reason, true);
        }
    }

    /// One inbound data message: counters, idle timer, rate limit, router.
    fn on_data(&mut self, wire: &mut Wire, limits: &Limits, data: Bytes, text: bool) {
        let now = Instant::now();
        self.last_active = now;
        self.timers.active(limits, now);
        let stats = &self.conn.stats;
        stats.last_active_ms.store(
            now.duration_since(self.conn.started).as_millis() as u64,
            Ordering::Relaxed,
        );
        bump(&stats.msgs_in, 1);
        bump(&stats.bytes_in, data.len() as u64);

        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            match limits.on_rate_limit {
                OnRateLimit::Close => {
                    self.metrics.rate_limited("closed");
                    self.start_close(wire, close::POLICY, "rate limit exceeded", true);
                }
                OnRateLimit::Drop => {
                    self.metrics.rate_limited("dropped");
                    if let Some(h) = self.handler.as_mut() {
                        h.on_rate_limited(&mut self.session);
                    }
                }
            }
            return;
        }
        let Some(h) = self.handler.as_mut() else {
            return;
        };
        // Text was validated by the decoder.
        let message = if text {
            Inbound::text(data)
        } else {
            Inbound::binary(data)
        };
        if let Err(c) = h.on_inbound(&mut self.session, message) {
            self.router_close(wire, c);
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        if let Some(rtt) = self.timers.pong(payload, self.conn.started.elapsed()) {
            self.conn.stats.rtt_us.store(rtt, Ordering::Relaxed);
            self.metrics.ping_rtt.observe(rtt as f64 / 1e6);
        }
    }

    /// Handles what is due; `false` ends the loop.
    #[inline]
    pub fn fire(&mut self, wire: &mut Wire, limits: &Limits) -> bool {
        let now = Instant::now();
        if let Phase::Closing { deadline, .. } = self.phase {
            return now < deadline;
        }
        let due = self.timers.due(now);
        if self.conn.reads_paused() && matches!(due, Some(Due::PongTimeout | Due::Idle)) {
            // The client's pong or message may be waiting unread behind
            // the pause: its silence is not held against it.
            self.timers.held(limits, now);
            return true;
        }
        match due {
            // Otherwise the socket took bytes meanwhile: the deadline moved.
            Some(Due::Write) if self.timers.write_stalled(limits, now) => {
                self.metrics.slow_consumer(SlowConsumer::NoWriteProgress);
                // The queue is dropped; what the socket may still take goes
                // out until close_timeout, then TCP is dropped.
                self.conn
                    .discard_and_close(close::SLOW_CONSUMER, "slow consumer: no write progress");
                self.start_close(
                    wire,
                    close::SLOW_CONSUMER,
                    "slow consumer: no write progress",
                    false,
                );
            }
            Some(Due::Write) => {}
            Some(Due::Drain) => {
                self.start_close(wire, close::GOING_AWAY, "server shutting down", true)
            }
            Some(Due::PongTimeout) => {
                self.start_close(wire, close::HEARTBEAT_TIMEOUT, "no pong in time", false)
            }
            Some(Due::Idle) => self.start_close(wire, close::IDLE_TIMEOUT, "idle timeout", true),
            Some(Due::Lifetime) => {
                self.start_close(wire, close::MAX_LIFETIME, "max lifetime reached", true)
            }
            Some(Due::Ping) => {
                if let Some(payload) = self.timers.ping(limits, now, self.conn.started.elapsed()) {
                    wire.control(OpCode::Ping, &payload);
                }
            }
            None => {}
        }
        true
    }

    /// The connection is over: the router's last hook, and why it ended.
    pub fn finish(mut self) -> Ending {
        if let Some(h) = self.handler.take() {
            h.on_close(&mut self.session);
        }
        self.ending.take().unwrap_or(Ending {
            code: close::ABNORMAL,
            reason: "connection lost".into(),
        })
    }
}

/// Answers the latest of a run of pings, once.
#[inline]
fn answer_pong(wire: &mut Wire, pong: &mut Option<Bytes>) {
    if let Some(payload) = pong.take() {
        wire.replace_pong(&payload);
    }
}
