//! One soak connection: a subscriber that counts its deliveries, records
//! their latency in the window of their send time and, on an echoing
//! connection, also does application-level round trips (`ping`/`pong`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastwebsockets::OpCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::{Conn, Incoming};
use crate::dial::lock;
use crate::latency::Latency;
use crate::payload::{self, Delivery};
use crate::seen::Seen;

/// Publishing has not started yet.
pub const NOT_STARTED: u64 = u64::MAX;

/// What every connection shares with the run.
pub struct Shared {
    /// Times are microseconds since this instant.
    pub epoch: Instant,
    /// Tells this run's messages from other traffic on the topic.
    pub run: u32,
    /// When the first measured message was published, in µs since
    /// `epoch`; [`NOT_STARTED`] before.
    pub start_us: AtomicU64,
    /// The length of a window, in µs.
    pub window_us: u64,
    /// Connections that have received a warm-up message.
    pub warm: AtomicUsize,
    /// Measured deliveries so far (the progress bar's counter).
    pub deliveries: Arc<AtomicU64>,
    /// Delivery latency, per window of the send time.
    pub delivery: Vec<Mutex<Latency>>,
    /// Round-trip latency of the echoing connections, per window of the
    /// ping's send time.
    pub echo: Vec<Mutex<Latency>>,
    /// Time between two pings of one echoing connection.
    pub echo_every: Duration,
    /// Connections that have stopped reading (all seen, closed, failed or
    /// out of time).
    pub finished: AtomicUsize,
    /// Set once the run has taken its last reading of the target: only
    /// then do the connections close, so that the reading is not taken in
    /// the middle of thousands of closes.
    pub release: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The window of a time in µs since `epoch` (the last window for
    /// anything after it, the first for anything before the start).
    pub fn window(&self, t_us: u64) -> usize {
        let start = self.start_us.load(Ordering::Relaxed);
        let k = t_us.saturating_sub(start) / self.window_us.max(1);
        usize::try_from(k)
            .unwrap_or(usize::MAX)
            .min(self.delivery.len().saturating_sub(1))
    }

    fn started(&self) -> bool {
        self.start_us.load(Ordering::Relaxed) != NOT_STARTED
    }
}

/// One connection's account, kept outside its task so that it survives
/// the task being given up on.
pub struct Tally {
    pub seen: Seen,
    /// The server closed the connection with this code.
    pub closed: Option<u16>,
    pub error: Option<String>,
    pub pings: u64,
    pub pongs: u64,
}

impl Tally {
    pub fn new(msgs: u64) -> Tally {
        Tally {
            seen: Seen::new(msgs),
            closed: None,
            error: None,
            pings: 0,
            pongs: 0,
        }
    }
}

/// The pubsub route's answer to a `ping`.
#[derive(Deserialize)]
struct Pong {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
}

/// The ping in flight on an echoing connection.
struct Pending {
    id: u64,
    sent: Instant,
    window: usize,
}

/// Reads deliveries until every message was seen (and the last ping was
/// answered), the server closed, or `deadline`; then waits for the run's
/// release (or `deadline`) and closes politely.
///
/// An echoing connection sends `{"type":"ping","id":n}` once publishing
/// has started, right after reading a frame when `echo_every` has passed
/// since its previous ping and no ping is in flight. (A connection is read
/// and written by one task, and a read is never cut off but by the run's
/// deadline; the deliveries, 10 a second by default, give the turns.)
pub async fn run(
    mut conn: Conn,
    echoing: bool,
    shared: Arc<Shared>,
    tally: Arc<Mutex<Tally>>,
    deadline: Instant,
) {
    let mut warm = false;
    let mut pending: Option<Pending> = None;
    let mut next_ping = Instant::now();
    let mut next_id = 0u64;
    let result: anyhow::Result<()> = async {
        loop {
            let frame = match conn.recv_until(deadline).await? {
                Incoming::Text(b) | Incoming::Binary(b) => b,
                Incoming::Closed(code) => {
                    lock(&tally)?.closed = Some(code);
                    return Ok(());
                }
                Incoming::Deadline => return Ok(()),
            };
            let complete = match payload::parse(&frame, shared.run) {
                Some(Delivery::Warmup) => {
                    if !warm {
                        warm = true;
                        shared.warm.fetch_add(1, Ordering::Relaxed);
                    }
                    false
                }
                Some(Delivery::Measured { seq, t_us }) => {
                    let now = shared.now_us();
                    let w = shared.window(t_us);
                    if let Some(h) = shared.delivery.get(w) {
                        lock(h)?.record(now.saturating_sub(t_us));
                    }
                    shared.deliveries.fetch_add(1, Ordering::Relaxed);
                    let mut t = lock(&tally)?;
                    t.seen.record(seq);
                    t.seen.complete()
                }
                None => {
                    if let Some(p) = pending.as_ref().filter(|p| is_pong(&frame, p.id)) {
                        let micros = u64::try_from(p.sent.elapsed().as_micros()).unwrap_or(0);
                        if let Some(h) = shared.echo.get(p.window) {
                            lock(h)?.record(micros);
                        }
                        lock(&tally)?.pongs += 1;
                        pending = None;
                    }
                    lock(&tally)?.seen.complete()
                }
            };
            if complete && pending.is_none() {
                return Ok(());
            }
            if echoing && !complete && pending.is_none() && shared.started() {
                let now = Instant::now();
                if now >= next_ping {
                    let ping = format!(r#"{{"type":"ping","id":{next_id}}}"#);
                    conn.send(OpCode::Text, ping.as_bytes()).await?;
                    pending = Some(Pending {
                        id: next_id,
                        sent: now,
                        window: shared.window(shared.now_us()),
                    });
                    lock(&tally)?.pings += 1;
                    next_id += 1;
                    next_ping = now + shared.echo_every;
                }
            }
        }
    }
    .await;
    let mut release = shared.release.subscribe();
    shared.finished.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = result {
        if let Ok(mut t) = tally.lock() {
            t.error = Some(format!("{e:#}"));
        }
        return;
    }
    let _ = tokio::time::timeout_at(deadline, release.wait_for(|r| *r)).await;
    conn.close().await;
}

/// Whether a frame is the `pong` answering ping `id`.
fn is_pong(frame: &[u8], id: u64) -> bool {
    serde_json::from_slice::<Pong>(frame).is_ok_and(|p| p.kind == "pong" && p.id == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pongs_are_matched_by_id() {
        assert!(is_pong(br#"{"type":"pong","id":3}"#, 3));
        assert!(!is_pong(br#"{"type":"pong","id":4}"#, 3));
        assert!(!is_pong(br#"{"type":"pong"}"#, 3));
        assert!(!is_pong(br#"{"type":"message","topic":"t","data":{}}"#, 3));
        assert!(!is_pong(b"not json", 3));
    }

    #[test]
    fn times_fall_in_their_window() {
        let shared = Shared {
            epoch: Instant::now(),
            run: 1,
            start_us: AtomicU64::new(1_000),
            window_us: 100,
            warm: AtomicUsize::new(0),
            deliveries: Arc::new(AtomicU64::new(0)),
            delivery: (0..3)
                .map(|_| Mutex::new(Latency::new().expect("histogram")))
                .collect(),
            echo: Vec::new(),
            echo_every: Duration::from_millis(100),
            finished: AtomicUsize::new(0),
            release: tokio::sync::watch::Sender::new(false),
        };
        assert_eq!(shared.window(1_000), 0);
        assert_eq!(shared.window(1_099), 0);
        assert_eq!(shared.window(1_100), 1);
        assert_eq!(shared.window(1_250), 2);
        assert_eq!(shared.window(9_999), 2, "after the end: the last");
        assert_eq!(shared.window(5), 0, "before the start: the first");
    }
}
