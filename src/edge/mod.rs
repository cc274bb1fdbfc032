//! What is refused at the door, before any WebSocket state: connect storms
//! (a token bucket per client IP and one for the daemon), memory pressure
//! (resident memory over `max_memory`), and the cap on connections still in
//! their HTTP phase (`max_pending_handshakes`).
//!
//! - [`connect_rate`]: the buckets, and the bound on the per-IP table;
//! - [`memory`]: the resident set, and the pressure state with its
//!   low-water mark;
//! - [`pending`]: the resizable semaphore the accept loop takes a permit of;
//! - [`proxy_header`]: the PROXY protocol header (v1, v2) a load balancer
//!   sends before the request, read to the byte;
//! - [`storm_log`]: refusals logged once, then counted.
//!
//! [`Edge::configure`] applies a config (at start and on every reload):
//! changed rates rebuild the buckets (their state is lost, so every address
//! starts with a full bucket), the semaphore is resized, and memory is
//! sampled at once against the new bounds.

pub mod connect_rate;
pub mod memory;
pub mod pending;
pub mod proxy_header;
pub mod storm_log;

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::Settings;
use crate::handle::lock;
use crate::metrics::Metrics;
use connect_rate::{ConnectRates, Over, Shape};
use memory::{Pressure, Watch};
use pending::{Pending, PendingPermit};
use storm_log::{Note, StormLog};

/// The storm log of per-IP table resets (after the three refusals).
const RESET_LOG: usize = 3;
/// The storm log of PROXY headers from untrusted senders.
const UNTRUSTED_PROXY_LOG: usize = 4;

/// Why an upgrade was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the client IP's connect bucket: 429.
    ConnectRateIp { retry_after: u64 },
    /// Over the daemon-wide connect bucket: 503.
    ConnectRateGlobal { retry_after: u64 },
    /// Resident memory over `max_memory`: 503, `retry_after` of the config.
    MemoryPressure,
}

impl Refusal {
    /// The label of `wsgate_rejections_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::ConnectRateIp { .. } => "connect_rate_ip",
            Refusal::ConnectRateGlobal { .. } => "connect_rate_global",
            Refusal::MemoryPressure => "memory_pressure",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Refusal::ConnectRateIp { .. } => "too many connects from this address",
            Refusal::ConnectRateGlobal { .. } => "too many connects to this server",
            Refusal::MemoryPressure => "server memory is over its limit",
        }
    }

    /// Whole seconds for `Retry-After`; `None`: the configured `retry_after`.
    pub fn retry_after(&self) -> Option<u64> {
        match *self {
            Refusal::ConnectRateIp { retry_after } | Refusal::ConnectRateGlobal { retry_after } => {
                Some(retry_after)
            }
            Refusal::MemoryPressure => None,
        }
    }

    fn index(&self) -> usize {
        match self {
            Refusal::ConnectRateIp { .. } => 0,
            Refusal::ConnectRateGlobal { .. } => 1,
            Refusal::MemoryPressure => 2,
        }
    }
}

/// The parts of the config read outside [`Edge::configure`].
#[derive(Debug, Clone, Copy, Default)]
struct Current {
    watch: Watch,
    log_interval: Duration,
}

pub struct Edge {
    metrics: Arc<Metrics>,
    rates: ArcSwap<ConnectRates>,
    pending: Arc<Pending>,
    pressure: Pressure,
    current: Mutex<Current>,
    /// Set while resident memory cannot be read, so that it is said once.
    unmeasured: AtomicBool,
    /// Wakes the sampler when the watch changed.
    rewatch: Notify,
    /// One per [`Refusal`] kind, one for resets of the per-IP table, one
    /// for PROXY headers from untrusted senders.
    logs: [StormLog; 5],
}

impl Edge {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Arc<Self> {
        let server = &settings.config.server;
        let edge = Arc::new(Edge {
            rates: ArcSwap::from_pointee(ConnectRates::new(Shape::of(server))),
            pending: Pending::new(
                server.max_pending_handshakes,
                metrics.pending_handshakes.clone(),
            ),
            metrics,
            pressure: Pressure::default(),
            current: Mutex::default(),
            unmeasured: AtomicBool::new(false),
            rewatch: Notify::new(),
            logs: Default::default(),
        });
        edge.configure(settings);
        edge
    }

    /// Applies a config: at start, and on every reload.
    pub fn configure(&self, settings: &Settings) {
        let server = &settings.config.server;
        let shape = Shape::of(server);
        if self.rates.load().shape != shape {
            self.rates.store(Arc::new(ConnectRates::new(shape)));
        }
        self.pending.resize(server.max_pending_handshakes);
        let watch = Watch {
            bounds: settings.memory,
            interval: server.memory_sample_interval,
        };
        *lock(&self.current) = Current {
            watch,
            log_interval: server.refusal_log_interval,
        };
        self.sample(watch);
        self.rewatch.notify_one();
    }

    /// Whether an upgrade from `ip` may go on: memory first (it costs no
    /// token), then the address's bucket, then the daemon's.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.pressure.is_on() {
            return Err(Refusal::MemoryPressure);
        }
        let rates = self.rates.load();
        let (checked, housekeeping) = rates.check(ip);
        if housekeeping.reset > 0 {
            self.note_reset(ip, housekeeping.reset);
        }
        checked.map_err(|over| match over {
            Over::Ip(wait) => Refusal::ConnectRateIp {
                retry_after: connect_rate::retry_after_secs(wait),
            },
            Over::Global(wait) => Refusal::ConnectRateGlobal {
                retry_after: connect_rate::retry_after_secs(wait),
            },
        })
    }

    /// Whether `/readyz` should say 503 for memory.
    pub fn under_memory_pressure(&self) -> bool {
        self.pressure.is_on()
    }

    /// A place in the HTTP phase, waited for before `accept`.
    pub async fn pending_permit(&self) -> Option<PendingPermit> {
        self.pending.acquire().await
    }

    /// Whether a refusal is to be logged in full (the first of a storm);
    /// the rest are summed up in one line per `interval`.
    pub fn log_refusal(&self, refusal: Refusal, ip: IpAddr) -> bool {
        let reason = refusal.reason();
        let interval = self.log_interval();
        let note = self.logs[refusal.index()].note(ip, interval, move |n, last_ip, every| {
            let last_ip = last_ip.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::info!(
                reason,
                refused = n,
                last_ip,
                "upgrades refused: {n} more for {reason} in the last {}",
                crate::config::settings::human(every)
            );
        });
        note == Note::Log
    }

    /// Whether a PROXY header from a sender not in `trusted_proxies` is to
    /// be logged in full (the first of a storm; a misconfigured balancer
    /// sends one with every connection).
    pub fn log_untrusted_proxy(&self, ip: IpAddr) -> bool {
        let summary = |n: u64, last_ip: Option<IpAddr>, every: Duration| {
            let last_ip = last_ip.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::info!(
                refused = n,
                last_ip,
                "connections refused: {n} more PROXY headers from addresses not in \
                 trusted_proxies in the last {}",
                crate::config::settings::human(every)
            );
        };
        self.logs[UNTRUSTED_PROXY_LOG].note(ip, self.log_interval(), summary) == Note::Log
    }

    fn note_reset(&self, ip: IpAddr, forgotten: usize) {
        let summary = |n: u64, _: Option<IpAddr>, every: Duration| {
            tracing::warn!(
                resets = n,
                "the per-IP connect table was emptied {n} more times in the last {}",
                crate::config::settings::human(every)
            );
        };
        if self.logs[RESET_LOG].note(ip, self.log_interval(), summary) == Note::Log {
            tracing::warn!(
                forgotten,
                "the per-IP connect table is full of live buckets (connect_tracked_ips): every \
                 address was forgotten and starts again with a full bucket"
            );
        }
    }

    fn log_interval(&self) -> Duration {
        lock(&self.current).log_interval
    }

    /// Samples memory on the configured interval until `stopped`.
    pub async fn watch_memory(self: Arc<Self>, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        loop {
            let watch = lock(&self.current).watch;
            let rewatched = self.rewatch.notified();
            if watch.bounds.is_some() {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = rewatched => continue,
                    _ = tokio::time::sleep(watch.interval) => self.sample(watch),
                }
            } else {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = rewatched => continue,
                }
            }
        }
    }

    fn sample(&self, watch: Watch) {
        let transition = match watch.bounds {
            None => self.pressure.release(),
            Some(bounds) => match memory::resident_bytes() {
                Ok(rss) => {
                    self.unmeasured.store(false, Ordering::Relaxed);
                    self.pressure.update(rss, bounds)
                }
                Err(e) => {
                    if !self.unmeasured.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "cannot measure resident memory; max_memory is not enforced until it can be");
                    }
                    self.pressure.release()
                }
            },
        };
        if let Some(t) = transition {
            self.metrics
                .memory_pressure
                .set(i64::from(self.pressure.is_on()));
            memory::log(t);
        }
    }
}
