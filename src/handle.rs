//! A connection's shared handle ([`Conn`]): what others may do to a live
//! connection without touching its task.
//!
//! - the send queue, bounded by `send_queue` messages and `send_queue_bytes`
//!   bytes, that fan-out and the router offer messages to without ever
//!   waiting ([`Conn::offer`]);
//! - the close and drain mailbox: a close asked for from outside (an
//!   operator, a reload, a per-user eviction, the drain) wins once;
//! - the wake-up that tells the task to look at both;
//! - the counters the task keeps without locks ([`ConnStats`]) and the
//!   topics it is subscribed to.
//!
//! Who may connect, and the counts the caps are checked against, are the
//! registry's ([`crate::registry`]).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use atomic_waker::AtomicWaker;
use wsgate_plugin_api::{Outbound, Upstream};

use crate::metrics::{SlowConsumer, Traffic};
use crate::ws::close;

/// A connection id, unique for the daemon's run.
pub type ConnId = u64;

/// A close asked for from outside the connection task (operator, hub,
/// per-user eviction, drain, reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
    /// Drop queued messages instead of sending them before the close frame
    /// (a slow consumer's queue is what is stuck).
    pub discard_queue: bool,
}

/// Outcome of offering a message to a connection's send queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The queue was full (in messages or in bytes): the connection is
    /// being closed with 4002.
    Full(SlowConsumer),
    /// The connection is closing; nothing was queued.
    Closing,
}

/// A graceful drain of one connection: tell the client when to come back,
/// then close with 1001 at `close_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub close_at: Instant,
    pub reconnect_after_ms: u64,
}

#[derive(Default)]
struct Queue {
    items: Items,
    close: Option<CloseRequest>,
    /// Taken by the connection task once it has acted on it.
    drain: Option<Drain>,
}

/// A FIFO that holds its first message inline: a connection that keeps up
/// (the usual case: its task drains the queue as soon as it is woken)
/// never allocates for its queue, and an idle one holds no queue memory.
#[derive(Default)]
struct Items {
    /// The oldest message, when `rest` is empty or holds younger ones.
    head: Option<Outbound>,
    rest: VecDeque<Outbound>,
    /// Payload bytes held.
    bytes: usize,
}

fn payload_len(m: &Outbound) -> usize {
    match m {
        Outbound::Text(b) | Outbound::Binary(b) => b.len(),
    }
}

impl Items {
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.head.is_none() && self.rest.is_empty()
    }

    fn push(&mut self, m: Outbound, len: usize) {
        self.bytes += len;
        if self.is_empty() {
            self.head = Some(m);
        } else {
            self.rest.push_back(m);
        }
    }

    fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
        self.bytes = 0;
    }

    /// Moves up to `max` of the oldest messages into `out`; returns their
    /// payload bytes.
    fn take_into(&mut self, out: &mut Vec<Outbound>, max: usize) -> usize {
        let before = self.bytes;
        let mut left = max;
        let mut taken = 0;
        if left > 0 {
            if let Some(h) = self.head.take() {
                taken += payload_len(&h);
                out.push(h);
                left -= 1;
            }
        }
        let n = self.rest.len().min(left);
        if n == self.rest.len() && self.head.is_none() {
            // All of it (the usual case): no need to add up the sizes.
            out.extend(self.rest.drain(..));
            // Give a burst's memory back.
            self.rest = VecDeque::new();
            self.bytes = 0;
            return before;
        }
        for m in self.rest.drain(..n) {
            taken += payload_len(&m);
            out.push(m);
        }
        self.bytes -= taken;
        taken
    }
}

/// Live counters of one connection, updated by its task without locks.
#[derive(Default)]
pub struct ConnStats {
    pub msgs_in: AtomicU64,
    pub msgs_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Milliseconds after `started` of the last inbound data message.
    pub last_active_ms: AtomicU64,
    /// The last ping round trip in microseconds (0 = none yet).
    pub rtt_us: AtomicU64,
}

/// Adds to a counter that only the connection's task writes: a plain load
/// and store, without the locked read-modify-write of `fetch_add` (readers
/// see the old or the new value, never a torn one).
#[inline]
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl ConnStats {
    /// The traffic counted so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            msgs_in: self.msgs_in.load(Ordering::Relaxed),
            msgs_out: self.msgs_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// One live connection as others see it: its identity, counters, send
/// queue, subscriptions and a way to close it.
pub struct Conn {
    pub id: ConnId,
    pub route: Arc<str>,
    pub user: Option<Arc<str>>,
    pub ip: IpAddr,
    pub connected_at: SystemTime,
    pub started: Instant,
    pub stats: ConnStats,
    /// The send queue bound in force (updated live on reload).
    pub queue_limit: AtomicUsize,
    /// The `send_queue_bytes` bound in force (updated live on reload).
    pub queue_bytes_limit: AtomicUsize,
    /// Payload and frame bytes the task took from the queue that the socket
    /// has not accepted yet; counted against `queue_bytes_limit` with the
    /// queue. Written only by the connection's task.
    unsent: AtomicUsize,
    queue: Mutex<Queue>,
    wake: Wakeup,
    subscriptions: Mutex<Vec<Arc<str>>>,
    /// Set, under the `subscriptions` lock, once the connection's
    /// subscriptions were removed for good: a subscribe from another task
    /// (a router's outlet) after that subscribes nothing.
    unsubscribed: AtomicBool,
    /// A drain request waits in the queue (set and cleared under its lock).
    drain_requested: AtomicBool,
    /// The route's `max_subscriptions` in force (updated live on reload),
    /// for subscribes from any task.
    max_subscriptions: AtomicUsize,
    /// Set once the per-user share of this connection was handed to a newer
    /// connection (evict_oldest), so the slot does not release it twice.
    user_released: AtomicBool,
    /// Set while the router cannot take more input: the task does not read
    /// the socket (backpressure to the client's TCP).
    reads_paused: AtomicBool,
    /// The router's upstream leg, as the admin table shows it.
    upstream: Mutex<Option<Box<Upstream>>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data is plain.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// A new connection's handle, with an empty queue bounded by
    /// `queue_limit` messages and `queue_bytes_limit` bytes.
    pub fn new(
        id: ConnId,
        route: Arc<str>,
        user: Option<Arc<str>>,
        ip: IpAddr,
        queue_limit: usize,
        queue_bytes_limit: usize,
        max_subscriptions: usize,
    ) -> Self {
        Self {
            id,
            route,
            user,
            ip,
            connected_at: SystemTime::now(),
            started: Instant::now(),
            stats: ConnStats::default(),
            queue_limit: AtomicUsize::new(queue_limit),
            queue_bytes_limit: AtomicUsize::new(queue_bytes_limit),
            unsent: AtomicUsize::new(0),
            queue: Mutex::default(),
            wake: Wakeup::default(),
            subscriptions: Mutex::default(),
            unsubscribed: AtomicBool::new(false),
            drain_requested: AtomicBool::new(false),
            max_subscriptions: AtomicUsize::new(max_subscriptions),
            user_released: AtomicBool::new(false),
            reads_paused: AtomicBool::new(false),
            upstream: Mutex::default(),
        }
    }

    /// Marks this connection's per-user share as handed to a newer
    /// connection (evict_oldest), so that it is not released twice.
    pub(crate) fn hand_over_user_share(&self) {
        self.user_released.store(true, Ordering::Relaxed);
    }

    /// The user whose share this connection still holds.
    pub(crate) fn user_share(&self) -> Option<&str> {
        if self.user_released.load(Ordering::Relaxed) {
            None
        } else {
            self.user.as_deref()
        }
    }

    /// Offers a message to the send queue; never waits.
    pub fn offer(&self, message: Outbound) -> Offer {
        self.offer_inner(message, true)
    }

    /// Offers a message from the connection's own task (a router replying),
    /// which looks at its queue before it waits again: no wake-up needed.
    pub(crate) fn offer_own(&self, message: Outbound) -> Offer {
        self.offer_inner(message, false)
    }

    fn offer_inner(&self, message: Outbound, wake: bool) -> Offer {
        let mut q = lock(&self.queue);
        if q.close.is_some() {
            return Offer::Closing;
        }
        let len = payload_len(&message);
        let full = if q.items.len() >= self.queue_limit.load(Ordering::Relaxed) {
            Some((SlowConsumer::QueueFull, "slow consumer: send queue full"))
        } else if q.items.bytes + self.unsent.load(Ordering::Relaxed) + len
            > self.queue_bytes_limit.load(Ordering::Relaxed)
        {
            Some((
                SlowConsumer::QueueBytes,
                "slow consumer: send queue over send_queue_bytes",
            ))
        } else {
            None
        };
        if let Some((why, reason)) = full {
            q.close = Some(CloseRequest {
                code: close::SLOW_CONSUMER,
                reason: reason.into(),
                discard_queue: true,
            });
            drop(q);
            self.wake.wake();
            return Offer::Full(why);
        }
        q.items.push(message, len);
        drop(q);
        if wake {
            self.wake.wake();
        }
        Offer::Queued
    }

    /// Asks the connection to close; the first request wins.
    pub fn request_close(&self, code: u16, reason: impl Into<String>) -> bool {
        self.request(CloseRequest {
            code,
            reason: reason.into(),
            discard_queue: false,
        })
    }

    fn request(&self, request: CloseRequest) -> bool {
        let mut q = lock(&self.queue);
        if q.close.is_some() {
            return false;
        }
        q.close = Some(request);
        drop(q);
        self.wake.wake();
        true
    }

    /// Closes without sending what is queued (the connection's task asks,
    /// when its socket stopped taking bytes); the first request wins.
    pub(crate) fn discard_and_close(&self, code: u16, reason: &str) -> bool {
        self.request(CloseRequest {
            code,
            reason: reason.into(),
            discard_queue: true,
        })
    }

    /// Asks the connection to drain (ignored once it is closing).
    pub fn request_drain(&self, drain: Drain) {
        let mut q = lock(&self.queue);
        if q.close.is_some() {
            return;
        }
        q.drain = Some(drain);
        self.drain_requested.store(true, Ordering::Release);
        drop(q);
        self.wake.wake();
    }

    /// The drain request, once (the task asks on every turn: without a
    /// request, that costs no lock).
    pub(crate) fn take_drain(&self) -> Option<Drain> {
        if !self.drain_requested.load(Ordering::Acquire) {
            return None;
        }
        let mut q = lock(&self.queue);
        self.drain_requested.store(false, Ordering::Relaxed);
        q.drain.take()
    }

    /// Stops the task reading the socket until [`Conn::resume_reads`].
    pub fn pause_reads(&self) {
        self.reads_paused.store(true, Ordering::Release);
    }

    /// Lets the task read again (and wakes it to do so).
    pub fn resume_reads(&self) {
        if self.reads_paused.swap(false, Ordering::AcqRel) {
            self.wake.wake();
        }
    }

    /// Whether reading is paused.
    #[inline]
    pub fn reads_paused(&self) -> bool {
        self.reads_paused.load(Ordering::Acquire)
    }

    /// What the admin table shows of the router's upstream leg.
    pub fn set_upstream(&self, upstream: Option<Upstream>) {
        *lock(&self.upstream) = upstream.map(Box::new);
    }

    pub fn upstream(&self) -> Option<Upstream> {
        lock(&self.upstream).as_deref().cloned()
    }

    /// Wakes the connection task so that it re-reads its limits.
    pub fn nudge(&self) {
        self.wake.wake();
    }

    /// Moves queued messages out (up to `max`), and the close request once
    /// the queue is empty or is to be discarded.
    pub(crate) fn take(&self, out: &mut Vec<Outbound>, max: usize) -> Option<CloseRequest> {
        let mut q = lock(&self.queue);
        if let Some(c) = &q.close {
            if c.discard_queue {
                q.items.clear();
            }
        }
        let taken = q.items.take_into(out, max);
        if taken > 0 {
            // Until the task says what the socket took, what it took from
            // the queue still counts (the task is the only writer).
            let unsent = self.unsent.load(Ordering::Relaxed);
            self.unsent.store(unsent + taken, Ordering::Relaxed);
        }
        if q.items.is_empty() {
            q.close.clone()
        } else {
            None
        }
    }

    /// After a write: the bytes the socket has not accepted yet.
    #[inline]
    pub(crate) fn set_unsent(&self, bytes: usize) {
        if self.unsent.load(Ordering::Relaxed) != bytes {
            self.unsent.store(bytes, Ordering::Relaxed);
        }
    }

    /// Messages waiting in the send queue.
    pub fn queue_depth(&self) -> usize {
        lock(&self.queue).items.len()
    }

    /// Whether a close was requested.
    pub fn closing(&self) -> bool {
        lock(&self.queue).close.is_some()
    }

    /// Ready once a message was queued, a close or drain requested, or a
    /// nudge given since the last time it was ready.
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.wake.poll(cx)
    }

    pub fn subscriptions(&self) -> Vec<Arc<str>> {
        lock(&self.subscriptions).clone()
    }

    pub fn subscription_count(&self) -> usize {
        lock(&self.subscriptions).len()
    }

    pub(crate) fn with_subscriptions<R>(&self, f: impl FnOnce(&mut Vec<Arc<str>>) -> R) -> R {
        f(&mut lock(&self.subscriptions))
    }

    /// Whether the subscriptions were removed for good (read under the
    /// `subscriptions` lock, in [`Conn::with_subscriptions`]).
    pub(crate) fn unsubscribed(&self) -> bool {
        self.unsubscribed.load(Ordering::Relaxed)
    }

    /// The route's `max_subscriptions` in force for this connection.
    pub fn max_subscriptions(&self) -> usize {
        self.max_subscriptions.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_subscriptions(&self, max: usize) {
        self.max_subscriptions.store(max, Ordering::Relaxed);
    }

    /// Marks the subscriptions removed for good (under the lock).
    pub(crate) fn set_unsubscribed(&self) {
        self.unsubscribed.store(true, Ordering::Relaxed);
    }

    /// Seconds since the last inbound data message (or the connect).
    pub fn idle_secs(&self) -> f64 {
        let last = self.stats.last_active_ms.load(Ordering::Relaxed);
        (self.started.elapsed().as_millis() as u64).saturating_sub(last) as f64 / 1000.0
    }
}

/// Wakes a connection's task from anywhere: a flag that stays set until
/// the task has looked, and the task's waker. Polling it is two atomic
/// operations; a `tokio::sync::Notify` takes a lock on every poll once its
/// waiter is registered, i.e. on every turn of the connection loop.
#[derive(Default)]
struct Wakeup {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Wakeup {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake between the swap and the registration found no waker:
        // look at the flag once more.
        if self.pending.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
