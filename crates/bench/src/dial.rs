//! Opening N connections with at most C handshakes in flight, measuring
//! each handshake (TCP connect to the 101 answer) and the whole opening.
//!
//! The first failure stops the opening: a run with part of its connections
//! would measure something else than what was asked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::client::{Conn, Dialer};
use super::latency::Latency;
use super::progress::Progress;

/// The connections and what opening them took.
pub struct Opened {
    /// In the order they were opened (not by index).
    pub conns: Vec<Conn>,
    /// From the first connect to the last 101.
    pub elapsed: Duration,
    /// Each handshake, in microseconds.
    pub handshakes: Latency,
}

impl Opened {
    /// Handshakes per second over the whole opening.
    pub fn rate(&self) -> f64 {
        per_second(self.conns.len() as u64, self.elapsed)
    }
}

/// Events per second; 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Opens `n` connections, `concurrency` at a time.
pub async fn open_all(
    dialer: &Dialer,
    n: usize,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<Opened> {
    let dialer = Arc::new(dialer.clone());
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let conns = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let handshakes = Arc::new(Mutex::new(Latency::new()?));
    let done = progress.counter();
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency.min(n));
    for _ in 0..concurrency.min(n) {
        let (dialer, next, stop) = (dialer.clone(), next.clone(), stop.clone());
        let (conns, handshakes, done) = (conns.clone(), handshakes.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let t0 = Instant::now();
                let conn = match dialer.connect(i).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e.context(format!("connection {}", i + 1)));
                    }
                };
                let micros = t0.elapsed().as_micros();
                if let Ok(mut h) = handshakes.lock() {
                    h.record(u64::try_from(micros).unwrap_or(u64::MAX));
                }
                if let Ok(mut c) = conns.lock() {
                    c.push(conn);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut first_error = None;
    for worker in workers {
        let result = worker.await.context("a connecting task failed");
        if let Err(e) = result.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    let elapsed = started.elapsed();
    let conns = std::mem::take(&mut *lock(&conns)?);
    if let Some(e) = first_error {
        let opened = conns.len();
        drop(conns);
        return Err(e.context(format!("after opening {opened} of {n} connections")));
    }
    let handshakes = lock(&handshakes)?.clone();
    Ok(Opened {
        conns,
        elapsed,
        handshakes,
    })
}

/// Locks a mutex, turning poisoning (a panicked task) into an error.
pub fn lock<T>(m: &Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| anyhow::anyhow!("a bench task panicked while holding shared state"))
}
