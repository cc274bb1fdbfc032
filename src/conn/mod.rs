//! One connection's life, in one task: the loop that waits, and what it
//! hands each wake-up to.
//!
//! The task waits on four things at once: the socket being readable, the
//! socket being writable (only while there is something to write), its send
//! queue or a close request ([`Conn::poll_woken`]), and one timer set to the
//! nearest deadline. The layers below the loop:
//!
//! - [`wire`]: the socket, its buffers and the frames in and out;
//! - [`timers`]: the deadlines, pure;
//! - [`task`]: the close handshake, ping/pong, the rate limit and the
//!   frame budget, the write-progress deadline and the dispatch to the
//!   router;
//! - [`session`]: what the router sees of its connection.
//!
//! Limits are read from the route in force: a reload applies to a live
//! connection at its next event (message size, rate, timers, queue bound,
//! subscription cap), and its router handler is rebound to the new router.

mod outlet;
mod records;
pub mod session;
pub mod task;
pub mod timers;
mod tls;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use std::any::Any;

use wsgate_plugin_api::{Identity, Outbound};

use crate::config::Route;
use crate::daemon::Daemon;
use crate::handle::{CloseRequest, Conn, Drain};
use crate::registry::Slot;
use crate::ws::close;
use session::ConnSession;
use task::{Phase, Task};
pub use wire::Wire;
use wire::WRITE_BATCH;
use wsgate_admin_proto::Event as AdminEvent;

/// Queued messages moved into the write buffer at a time.
const TAKE_BATCH: usize = 256;

thread_local! {
    /// Where messages taken from a send queue wait for the framing, lent to
    /// whichever connection of this thread sends next: a list of its own
    /// would keep, for the connection's whole life, room for the largest
    /// batch it ever took (up to `TAKE_BATCH` messages).
    static TAKEN: std::cell::Cell<Vec<Outbound>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An upgraded connection, admitted and ready to run.
pub struct Accepted {
    pub wire: Wire,
    pub slot: Slot,
    /// The connection's id as text (what `Session::id` gives).
    pub id: String,
    pub route: Arc<Route>,
    pub identity: Identity,
    pub query: Option<String>,
    /// What the router's `accept` hook prepared.
    pub prepared: Option<Box<dyn Any + Send>>,
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

/// Runs a connection to its end.
///
/// `accepted` comes boxed: an async fn keeps its arguments for its whole
/// life, and the box is freed once its parts are moved out.
pub async fn run(daemon: Arc<Daemon>, accepted: Box<Accepted>) {
    let Accepted {
        mut wire,
        slot,
        id,
        mut route,
        identity,
        query,
        prepared,
    } = *accepted;
    let conn = Arc::clone(slot.conn());
    let mut generation = daemon.generation();
    let close_timeout = daemon.settings().config.server.close_timeout;
    let session = ConnSession {
        daemon: &daemon,
        hub: daemon.hub(),
        metrics: daemon.metrics_handle(),
        tasks: daemon.tasks(),
        conn: &conn,
        id,
        identity,
        query,
        limits: session::conn_limits(&route.limits, close_timeout),
        prepared,
    };
    let mut task = Task::new(session, daemon.metrics(), &route.limits, close_timeout);
    tracing::debug!(conn = conn.id, route = %route.path, ip = %conn.ip, user = ?conn.user, "connected");
    daemon.emit(|| AdminEvent::Connected {
        id: conn.id,
        route: route.path.clone(),
        ip: conn.ip.to_string(),
        user: conn.user.as_ref().map(|u| u.to_string()),
    });

    task.open(&mut wire, route.router.as_ref());
    // Admitted while a drain was starting: go at once.
    if daemon.is_draining() {
        conn.request_drain(Drain {
            close_at: Instant::now(),
            reconnect_after_ms: 0,
        });
    }
    // A client that sent frames right behind its upgrade request.
    if wire.has_input() {
        task.process(&mut wire, &route.limits);
    }

    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    // The deadline `sleep` is set to: re-arming a timer costs a lock on the
    // timer wheel, so it is done only when the deadline moves.
    let mut armed: Option<Instant> = None;
    // The waker `sleep` was last polled with: while it is this task's and
    // the deadline has not passed, a turn does not poll the timer again
    // (it keeps the waker it registered).
    let mut sleep_waker: Option<std::task::Waker> = None;

    loop {
        // A reload reaches a live connection at its next event.
        let now_generation = daemon.generation();
        if now_generation != generation {
            generation = now_generation;
            let settings = daemon.settings();
            task.set_close_timeout(settings.config.server.close_timeout);
            if let Some(r) = settings.route(&route.path) {
                // New router options (e.g. topic permissions) apply to this
                // connection from its next message on.
                if !Arc::ptr_eq(&r.router, &route.router) && !task.rebind(r.router.as_ref()) {
                    task.start_close(&mut wire, close::GOING_AWAY, "route changed", true);
                }
                if r.limits != route.limits {
                    task.apply(&r.limits, &route.limits, Instant::now());
                }
                route = Arc::clone(r);
            }
        }

        if task.phase == Phase::Open {
            if let Some(drain) = conn.take_drain() {
                task.drain(drain.close_at, drain.reconnect_after_ms);
            }
        }
        // Whether the queue may still hold work that was not taken (the
        // write buffer was full, or a whole batch was taken): then the loop
        // goes round again as soon as the buffer has room, instead of
        // waiting for a wake-up that was already spent.
        let mut backlog = task.phase == Phase::Open && wire.pending() >= WRITE_BATCH;
        if task.phase == Phase::Open && wire.pending() < WRITE_BATCH {
            // Taken, framed and given back before the next await: the task
            // does not move to another thread in between.
            let mut scratch = TAKEN.take();
            let request = conn.take(&mut scratch, TAKE_BATCH);
            backlog = scratch.len() == TAKE_BATCH;
            let sent = if let Some(request) = request {
                task.queue(&mut wire, &mut scratch);
                task.start_close(
                    &mut wire,
                    request.code,
                    &request.reason,
                    !is_fatal(&request),
                );
                true
            } else {
                task.send(&mut wire, &mut scratch)
            };
            // Framing moved every message out; only the room is kept.
            scratch.clear();
            TAKEN.set(scratch);
            if !sent {
                task.vanished();
                break;
            }
        }
        match wire.flush() {
            Ok(true) => {
                task.wrote(&route.limits, 0, false);
                if let Phase::Closing {
                    wait_peer: false, ..
                } = task.phase
                {
                    break;
                }
            }
            // Output the socket did not take: `send_timeout` runs.
            Ok(false) => task.wrote(&route.limits, wire.pending(), wire.take_progress()),
            Err(_) => {
                task.vanished();
                break;
            }
        }
        if backlog && wire.pending() < WRITE_BATCH {
            continue;
        }
        let deadline = match task.phase {
            Phase::Open => task.timers.next(),
            Phase::Closing { deadline, .. } => Some(deadline),
        };
        if let Some(d) = deadline.filter(|d| armed != Some(*d)) {
            sleep.as_mut().reset(d.into());
            armed = Some(d);
            sleep_waker = None;
        }
        // Stop reading while a large write is pending (a client flooding
        // pings without reading its pongs), so memory stays bounded, and
        // while the router cannot take more.
        let read = wire.pending() < WRITE_BATCH && !conn.reads_paused();
        let write = wire.pending() > 0;
        let wake = std::future::poll_fn(|cx| {
            if conn.poll_woken(cx).is_ready() {
                return Poll::Ready(Wake::Queue);
            }
            if read {
                if let Poll::Ready(ok) = wire.poll_readable(cx) {
                    return Poll::Ready(Wake::Read(ok));
                }
            }
            if write {
                if let Poll::Ready(ok) = wire.poll_writable(cx) {
                    return Poll::Ready(Wake::Write(ok));
                }
            }
            if deadline.is_some() {
                let registered = sleep_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()));
                if !registered || sleep.is_elapsed() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                    sleep_waker = Some(cx.waker().clone());
                }
            }
            Poll::Pending
        })
        .await;
        match wake {
            // The next turn takes what was queued, or re-reads the limits.
            Wake::Queue => {}
            Wake::Read(ok) => {
                if !ok || !task.read(&mut wire, &route.limits) {
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

    let phase = task.phase;
    let ending = task.finish();
    daemon.hub().unsubscribe_all(&conn);
    daemon.metrics().closed(ending.code);
    daemon.emit(|| AdminEvent::Closed {
        id: conn.id,
        route: route.path.clone(),
        code: ending.code,
        reason: ending.reason.clone(),
    });
    log_close(&conn, &route.path, ending.code, &ending.reason);
    if let Phase::Closing { deadline, .. } = phase {
        wire.linger(deadline).await;
    }
    drop(slot);
}

/// Expected closes log quietly; the others say who and why.
fn log_close(conn: &Conn, route: &str, code: u16, reason: &str) {
    let age = conn.started.elapsed();
    if matches!(code, close::NORMAL | close::GOING_AWAY | close::ABNORMAL) {
        tracing::debug!(conn = conn.id, route = %route, ip = %conn.ip, code, reason = %reason, age = ?age, "closed");
    } else {
        tracing::info!(conn = conn.id, route = %route, ip = %conn.ip, user = ?conn.user, code, reason = %reason, age = ?age, "closed");
    }
}
