//! One fan-out subscriber: reads its deliveries and keeps its account
//! (seen, lost, duplicated, how it ended), and the totals over all of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::client::{Conn, Incoming};
use crate::dial::lock;
use crate::latency::Latency;
use crate::payload::{self, Delivery};
use crate::seen::Seen;

/// What every subscriber shares with the run.
pub struct Shared {
    /// Send times are microseconds since this instant.
    pub epoch: Instant,
    /// Tells this run's messages from other traffic on the topic.
    pub run: u32,
    /// Subscribers that have received a warm-up message.
    pub warm: AtomicUsize,
    /// Measured deliveries (the progress bar's counter).
    pub deliveries: Arc<AtomicU64>,
    /// The latest measured delivery, in µs since `epoch`.
    pub last_delivery_us: AtomicU64,
    pub latency: Mutex<Latency>,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// One subscriber's account, kept outside its task so that it survives
/// the task being given up on.
pub struct Tally {
    pub seen: Seen,
    /// The server closed the connection with this code.
    pub closed: Option<u16>,
    pub error: Option<String>,
}

/// Reads deliveries until every message was seen, the server closed, or
/// `deadline`; then closes politely.
pub async fn subscribe(
    mut conn: Conn,
    shared: Arc<Shared>,
    tally: Arc<Mutex<Tally>>,
    deadline: Instant,
) {
    let mut warm = false;
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
            match payload::parse(&frame, shared.run) {
                Some(Delivery::Warmup) if !warm => {
                    warm = true;
                    shared.warm.fetch_add(1, Ordering::Relaxed);
                }
                Some(Delivery::Measured { seq, t_us }) => {
                    let now = shared.now_us();
                    lock(&shared.latency)?.record(now.saturating_sub(t_us));
                    shared.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                    shared.deliveries.fetch_add(1, Ordering::Relaxed);
                    let mut t = lock(&tally)?;
                    t.seen.record(seq);
                    if t.seen.complete() {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }
    .await;
    if let Err(e) = result {
        if let Ok(mut t) = tally.lock() {
            t.error = Some(format!("{e:#}"));
        }
        return;
    }
    conn.close().await;
}

/// Per-run totals over the subscribers.
#[derive(Default)]
pub struct Totals {
    pub lost: u64,
    /// Lost on subscribers the server did not close and that had no error.
    pub lost_unexplained: u64,
    pub duplicated: u64,
    pub out_of_range: u64,
    pub closes: BTreeMap<u16, u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub complete: u64,
}

pub fn totals(tallies: &[Arc<Mutex<Tally>>]) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    for tally in tallies {
        let s = lock(tally)?;
        t.lost += s.seen.lost();
        t.duplicated += s.seen.duplicated();
        t.out_of_range += s.seen.out_of_range();
        if s.seen.complete() {
            t.complete += 1;
        }
        if let Some(code) = s.closed {
            *t.closes.entry(code).or_default() += 1;
        }
        if let Some(e) = &s.error {
            t.errors += 1;
            t.first_error.get_or_insert_with(|| e.clone());
        }
        if s.closed.is_none() && s.error.is_none() {
            t.lost_unexplained += s.seen.lost();
        }
    }
    Ok(t)
}
