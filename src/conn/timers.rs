//! A connection's deadlines (write progress, ping, pong, idle, lifetime,
//! drain): pure state over explicit instants, so every rule is tested
//! without waiting.
//!
//! The connection task arms one timer at [`Timers::next`] and, when it
//! fires, asks [`Timers::due`] what is due; a zero duration turns its timer
//! off.

use std::time::{Duration, Instant};

use crate::config::Limits;

/// Timer deadlines; `None` = off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    next_ping: Option<Instant>,
    /// Set while a ping is unanswered.
    pong_due: Option<Instant>,
    /// The payload of the ping in flight: the microseconds since the
    /// connection started, big-endian, which also gives the round trip.
    ping_payload: [u8; 8],
    idle_due: Option<Instant>,
    lifetime_due: Option<Instant>,
    /// When a drain closes this connection with 1001.
    drain_due: Option<Instant>,
    /// Set while output is pending: the armed `send_timeout` deadline. It
    /// is moved lazily (when it passes), not on every partial write, so a
    /// slow but progressing writer does not re-arm the timer per write.
    write_due: Option<Instant>,
    /// Set while output is pending: when the socket last accepted bytes of
    /// it (or when it became pending).
    write_since: Option<Instant>,
}

/// What is due, most urgent first: only one is acted on per wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The write deadline passed: see [`Timers::write_stalled`].
    Write,
    /// The drain reached this connection: close with 1001.
    Drain,
    /// No pong within `pong_timeout`: close with 4004.
    PongTimeout,
    /// No inbound data message within `idle_timeout`: close with 4003.
    Idle,
    /// `max_lifetime` reached: close with 4005.
    Lifetime,
    /// Time for the next heartbeat ping.
    Ping,
}

fn after(now: Instant, d: Duration) -> Option<Instant> {
    (!d.is_zero()).then(|| now + d)
}

impl Timers {
    /// The timers of a connection that started at `started`.
    pub fn new(limits: &Limits, started: Instant) -> Self {
        Self {
            next_ping: after(started, limits.ping_interval),
            pong_due: None,
            ping_payload: [0; 8],
            idle_due: after(started, limits.idle_timeout),
            lifetime_due: after(started, limits.max_lifetime),
            drain_due: None,
            write_due: None,
            write_since: None,
        }
    }

    /// Re-applies limits after a reload: the ping interval runs from `now`,
    /// a pending pong may only become due sooner, idle and lifetime are
    /// measured from the last activity and the start as before.
    pub fn reset(&mut self, limits: &Limits, started: Instant, last_active: Instant, now: Instant) {
        self.next_ping = after(now, limits.ping_interval);
        if let Some(due) = self.pong_due.as_mut() {
            *due = (*due).min(now + limits.pong_timeout);
        }
        self.idle_due = after(last_active, limits.idle_timeout);
        self.lifetime_due = after(started, limits.max_lifetime);
        // A stall is measured from the last progress, as before.
        self.write_due = self
            .write_since
            .and_then(|since| after(since, limits.send_timeout));
        if self.write_due.is_none() {
            self.write_since = None;
        }
    }

    /// While the connection's reads are paused: what waits on the client
    /// (an unanswered ping, the idle timer) is measured from `now`.
    pub fn held(&mut self, limits: &Limits, now: Instant) {
        if self.pong_due.is_some_and(|t| t <= now) {
            self.pong_due = Some(now + limits.pong_timeout);
        }
        if self.idle_due.is_some_and(|t| t <= now) {
            self.idle_due = after(now, limits.idle_timeout);
        }
    }

    /// The nearest deadline.
    #[inline]
    pub fn next(&self) -> Option<Instant> {
        [
            self.next_ping,
            self.pong_due,
            self.idle_due,
            self.lifetime_due,
            self.drain_due,
            self.write_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The most urgent deadline that has passed at `now`.
    pub fn due(&self, now: Instant) -> Option<Due> {
        let passed = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        [
            (self.write_due, Due::Write),
            (self.drain_due, Due::Drain),
            (self.pong_due, Due::PongTimeout),
            (self.idle_due, Due::Idle),
            (self.lifetime_due, Due::Lifetime),
            (self.next_ping, Due::Ping),
        ]
        .into_iter()
        .find_map(|(t, due)| passed(t).then_some(due))
    }

    /// An inbound data message at `now` restarts the idle timer.
    #[inline]
    pub fn active(&mut self, limits: &Limits, now: Instant) {
        self.idle_due = after(now, limits.idle_timeout);
    }

    /// A write left output pending; `progressed`: the socket accepted some
    /// of it. The first such write starts the `send_timeout` clock; later
    /// progress only records when (`now` is read only then).
    #[inline]
    pub fn output_pending(
        &mut self,
        limits: &Limits,
        progressed: bool,
        now: impl FnOnce() -> Instant,
    ) {
        if self.write_due.is_none() {
            if !limits.send_timeout.is_zero() {
                let now = now();
                self.write_since = Some(now);
                self.write_due = Some(now + limits.send_timeout);
            }
        } else if progressed {
            self.write_since = Some(now());
        }
    }

    /// Nothing is pending any more: the `send_timeout` clock stops.
    #[inline]
    pub fn output_drained(&mut self) {
        self.write_due = None;
        self.write_since = None;
    }

    /// The write deadline passed at `now`: `true` when the socket has
    /// accepted nothing for `send_timeout` (close with 4002); otherwise the
    /// deadline moves to `send_timeout` after the last progress.
    pub fn write_stalled(&mut self, limits: &Limits, now: Instant) -> bool {
        let Some(since) = self.write_since else {
            self.write_due = None;
            return false;
        };
        match after(since, limits.send_timeout) {
            Some(due) if due <= now => true,
            due => {
                self.write_due = due;
                false
            }
        }
    }

    /// The drain closes this connection at `at`.
    pub fn drain_at(&mut self, at: Instant) {
        self.drain_due = Some(at);
    }

    /// The ping deadline passed at `now`; `since_start` is the connection's
    /// age. Returns the payload of a ping to send, unless one is still
    /// unanswered (one ping at a time: its payload identifies the pong that
    /// answers it, and the pong deadline runs from it). The next ping is
    /// due one interval later either way.
    pub fn ping(
        &mut self,
        limits: &Limits,
        now: Instant,
        since_start: Duration,
    ) -> Option<[u8; 8]> {
        let send = self.pong_due.is_none().then(|| {
            self.ping_payload = (since_start.as_micros() as u64).to_be_bytes();
            self.pong_due = Some(now + limits.pong_timeout);
            self.ping_payload
        });
        self.next_ping = after(now, limits.ping_interval);
        send
    }

    /// A pong arrived. If it answers the ping in flight, the pong deadline
    /// is cleared and the round trip (in microseconds, at least 1) is
    /// returned; `since_start` is the connection's age now.
    pub fn pong(&mut self, payload: &[u8], since_start: Duration) -> Option<u64> {
        if self.pong_due.is_none() || payload != self.ping_payload {
            return None;
        }
        self.pong_due = None;
        let sent = u64::from_be_bytes(self.ping_payload);
        let now = since_start.as_micros() as u64;
        Some(now.saturating_sub(sent).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(ping: u64, pong: u64, idle: u64, lifetime: u64) -> Limits {
        Limits {
            ping_interval: S * ping as u32,
            pong_timeout: S * pong as u32,
            idle_timeout: S * idle as u32,
            max_lifetime: S * lifetime as u32,
            ..Limits::default()
        }
    }

    #[test]
    fn zero_durations_turn_timers_off() {
        let t0 = Instant::now();
        let t = Timers::new(&limits(0, 10, 0, 0), t0);
        assert_eq!(t.next(), None);
        assert_eq!(t.due(t0 + S * 100_000), None);
    }

    #[test]
    fn the_nearest_deadline_is_armed_and_the_most_urgent_acted_on() {
        let t0 = Instant::now();
        let mut t = Timers::new(&limits(30, 10, 60, 3600), t0);
        assert_eq!(t.next(), Some(t0 + S * 30));
        assert_eq!(t.due(t0 + S * 29), None);
        assert_eq!(t.due(t0 + S * 30), Some(Due::Ping));
        // Idle outranks the ping once both have passed.
        assert_eq!(t.due(t0 + S * 60), Some(Due::Idle));
        t.drain_at(t0 + S * 5);
        assert_eq!(t.next(), Some(t0 + S * 5));
        assert_eq!(t.due(t0 + S * 3600), Some(Due::Drain));
    }

    #[test]
    fn activity_restarts_only_the_idle_timer() {
        let t0 = Instant::now();
        let l = limits(0, 10, 60, 100);
        let mut t = Timers::new(&l, t0);
        t.active(&l, t0 + S * 50);
        assert_eq!(t.due(t0 + S * 60), None);
        assert_eq!(t.due(t0 + S * 100), Some(Due::Lifetime));
        assert_eq!(t.due(t0 + S * 110), Some(Due::Idle));
    }

    #[test]
    fn one_ping_at_a_time_and_its_pong_gives_the_round_trip() {
        let t0 = Instant::now();
        let l = limits(30, 10, 0, 0);
        let mut t = Timers::new(&l, t0);
        let payload = t.ping(&l, t0 + S * 30, S * 30).expect("a ping to send");
        assert_eq!(u64::from_be_bytes(payload), 30_000_000);
        assert_eq!(t.next(), Some(t0 + S * 40), "the pong is due first");
        // The next ping is due while the first is unanswered: none is sent.
        assert_eq!(t.ping(&l, t0 + S * 60, S * 60), None);
        assert_eq!(t.due(t0 + S * 40), Some(Due::PongTimeout));

        let mut t = Timers::new(&l, t0);
        let payload = t.ping(&l, t0 + S * 30, S * 30).expect("ping");
        assert_eq!(t.pong(b"other", S * 31), None, "not our ping");
        assert_eq!(t.pong(&payload, S * 31), Some(1_000_000));
        assert_eq!(t.due(t0 + S * 40), None, "answered in time");
        assert_eq!(t.pong(&payload, S * 32), None, "answered once");
        assert_eq!(t.next(), Some(t0 + S * 60));
    }

    #[test]
    fn a_reload_while_a_pong_is_pending_can_only_bring_it_forward() {
        let t0 = Instant::now();
        let l = limits(30, 20, 0, 0);
        let mut t = Timers::new(&l, t0);
        t.ping(&l, t0 + S * 30, S * 30).expect("ping");
        assert_eq!(t.due(t0 + S * 49), None);

        // A shorter pong_timeout: due 5 s after the reload, not 20 s after
        // the ping.
        let shorter = limits(30, 5, 0, 0);
        t.reset(&shorter, t0, t0, t0 + S * 35);
        assert_eq!(t.due(t0 + S * 40), Some(Due::PongTimeout));

        // A longer one does not give the pending ping more time.
        let mut t = Timers::new(&l, t0);
        t.ping(&l, t0 + S * 30, S * 30).expect("ping");
        t.reset(&limits(30, 120, 0, 0), t0, t0, t0 + S * 35);
        assert_eq!(t.due(t0 + S * 50), Some(Due::PongTimeout));
    }

    fn with_send_timeout(ms: u64) -> Limits {
        Limits {
            ping_interval: Duration::ZERO,
            send_timeout: Duration::from_millis(ms),
            ..Limits::default()
        }
    }

    #[test]
    fn pending_output_that_the_socket_never_takes_is_due_after_send_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let l = with_send_timeout(300);
        let mut t = Timers::new(&l, t0);
        assert_eq!(t.next(), None);
        t.output_pending(&l, false, || t0);
        assert_eq!(t.next(), Some(t0 + ms * 300));
        // Later writes that take nothing do not restart the clock.
        t.output_pending(&l, false, || t0 + ms * 200);
        assert_eq!(t.due(t0 + ms * 299), None);
        assert_eq!(t.due(t0 + ms * 300), Some(Due::Write));
        assert!(t.write_stalled(&l, t0 + ms * 300));
    }

    #[test]
    fn progress_moves_the_write_deadline_lazily_and_draining_stops_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let l = with_send_timeout(300);
        let mut t = Timers::new(&l, t0);
        t.output_pending(&l, false, || t0);
        // Some bytes accepted at 250 ms: the armed deadline stays (no
        // re-arm per write) ...
        t.output_pending(&l, true, || t0 + ms * 250);
        assert_eq!(t.next(), Some(t0 + ms * 300));
        assert_eq!(t.due(t0 + ms * 300), Some(Due::Write));
        // ... and when it passes, it moves to 300 ms after the progress.
        assert!(!t.write_stalled(&l, t0 + ms * 300));
        assert_eq!(t.next(), Some(t0 + ms * 550));
        assert_eq!(t.due(t0 + ms * 549), None);
        assert!(t.write_stalled(&l, t0 + ms * 550));

        // Everything written: no deadline; the next stall starts afresh.
        t.output_drained();
        assert_eq!(t.next(), None);
        t.output_pending(&l, true, || t0 + ms * 1000);
        assert_eq!(t.next(), Some(t0 + ms * 1300));
    }

    #[test]
    fn send_timeout_zero_never_arms_and_a_reload_counts_from_the_last_progress() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let off = with_send_timeout(0);
        let mut t = Timers::new(&off, t0);
        t.output_pending(&off, false, || t0);
        assert_eq!(t.next(), None);

        let l = with_send_timeout(30_000);
        let mut t = Timers::new(&l, t0);
        t.output_pending(&l, false, || t0);
        t.output_pending(&l, true, || t0 + ms * 100);
        // 30 s -> 200 ms at 250 ms: due 200 ms after the progress.
        let short = with_send_timeout(200);
        t.reset(&short, t0, t0, t0 + ms * 250);
        assert_eq!(t.next(), Some(t0 + ms * 300));
        assert!(t.write_stalled(&short, t0 + ms * 300));
        // Turned off while pending: no deadline.
        t.reset(&off, t0, t0, t0 + ms * 350);
        assert_eq!(t.next(), None);
        assert!(!t.write_stalled(&off, t0 + ms * 400));
    }

    #[test]
    fn a_stalled_writer_outranks_every_other_deadline() {
        let t0 = Instant::now();
        let l = Limits {
            send_timeout: S,
            idle_timeout: S,
            ..limits(1, 1, 1, 1)
        };
        let mut t = Timers::new(&l, t0);
        t.output_pending(&l, false, || t0);
        t.drain_at(t0);
        assert_eq!(t.due(t0 + S), Some(Due::Write));
    }

    #[test]
    fn a_reload_measures_idle_and_lifetime_from_before() {
        let t0 = Instant::now();
        let mut t = Timers::new(&limits(0, 10, 600, 0), t0);
        // idle_timeout 600 s -> 60 s, 50 s after the last message: 10 s left.
        t.reset(&limits(0, 10, 60, 90), t0, t0 + S * 100, t0 + S * 150);
        assert_eq!(t.due(t0 + S * 89), None);
        assert_eq!(t.due(t0 + S * 90), Some(Due::Lifetime));
        assert_eq!(t.due(t0 + S * 160), Some(Due::Idle));
        // Turning the ping on starts its interval at the reload.
        t.reset(&limits(30, 10, 0, 0), t0, t0, t0 + S * 150);
        assert_eq!(t.next(), Some(t0 + S * 180));
    }
}
