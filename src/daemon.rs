//! The daemon's shared state: one owner for each piece, handles for the rest.
//!
//! - the config in force, behind one swap point ([`Daemon::settings`]);
//! - the [`Registry`] of connections and the [`Hub`] of topics;
//! - the [`Metrics`];
//! - the drain signal, which flows down to the accept loop and every
//!   connection, and the tracker through which completion flows back up.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::protocol::Event;
use crate::config::Settings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::reload;

pub struct Daemon {
    settings: ArcSwap<Settings>,
    /// Bumped on every swap, so a connection notices a reload with one
    /// atomic load.
    generation: AtomicU64,
    pub registry: Arc<Registry>,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub started_at: SystemTime,
    /// Cancelled when the daemon starts draining: upgrades are refused with
    /// 503 and `/readyz` answers 503.
    pub draining: CancellationToken,
    /// Cancelled when the drain is over: the listener closes.
    pub stopped: CancellationToken,
    /// Every connection task, so that shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The config file reloads read (`None`: built-in defaults).
    pub config_path: Option<PathBuf>,
    reload_status: Mutex<Option<reload::Status>>,
    /// Events for admin `watch` clients (bounded; laggards lose the oldest).
    events: broadcast::Sender<Event>,
}

impl Daemon {
    pub fn new(settings: Settings, config_path: Option<PathBuf>) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        let (events, _) = broadcast::channel(settings.config.server.admin_watch_buffer);
        Arc::new(Self {
            settings: ArcSwap::from_pointee(settings),
            generation: AtomicU64::new(0),
            registry: Registry::new(Arc::clone(&metrics)),
            hub: Hub::new(Arc::clone(&metrics)),
            metrics,
            started: Instant::now(),
            started_at: SystemTime::now(),
            draining: CancellationToken::new(),
            stopped: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config_path,
            reload_status: Mutex::new(None),
            events,
        })
    }

    /// Publishes an event to `watch` clients; builds it only if one listens.
    pub fn emit(&self, event: impl FnOnce() -> Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }

    /// A new `watch` subscription.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> Option<reload::Status> {
        self.reload_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_reload_status(&self, status: reload::Status) {
        *self.reload_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }

    /// The config in force.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// Replaces the config in force, all at once.
    pub fn swap(&self, settings: Settings) -> Arc<Settings> {
        let old = self.settings.swap(Arc::new(settings));
        self.generation.fetch_add(1, Ordering::Release);
        old
    }

    /// Changes with every swap.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }
}
