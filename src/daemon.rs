//! The daemon's shared state: one owner for each piece, handles for the rest.
//!
//! - the config in force, behind one swap point ([`Daemon::settings`]);
//! - the [`Registry`] of connections and the [`Hub`] of topics;
//! - the [`Metrics`];
//! - the [`Edge`]: connect rates, memory pressure, pending handshakes;
//! - the drain and the stop, which flow down to the accept loop and every
//!   connection ([`Daemon::start_drain`], [`Daemon::stop`]), and the tracker
//!   through which completion flows back up ([`Daemon::wait_connections`]);
//! - the last reload's outcome ([`ReloadStatus`]) and the event stream for
//!   admin `watch` clients.
//!
//! Nothing outside can cancel a token or reach a field: the rest of the
//! daemon says what it wants done.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::edge::Edge;
use crate::handle::lock;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::registry::Registry;
use wsgate_admin_proto::Event;

/// The last reload's outcome, for the admin `stats`.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub origin: String,
    pub ok: bool,
    pub error: Option<String>,
    pub restart_required: Vec<String>,
}

pub struct Daemon {
    settings: ArcSwap<Settings>,
    /// Bumped on every swap, so a connection notices a reload with one
    /// atomic load.
    generation: AtomicU64,
    registry: Arc<Registry>,
    hub: Hub,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Cancelled when the daemon starts draining: upgrades are refused with
    /// 503 and `/readyz` answers 503.
    draining: CancellationToken,
    /// Cancelled when the drain is over: the listener closes.
    stopped: CancellationToken,
    /// Every connection task, so that shutdown can wait for them.
    tasks: TaskTracker,
    /// The config file reloads read (`None`: built-in defaults).
    config_path: Option<PathBuf>,
    reload_status: Mutex<Option<ReloadStatus>>,
    /// Events for admin `watch` clients (bounded; laggards lose the oldest).
    events: broadcast::Sender<Event>,
    /// Connect rates, memory pressure and pending handshakes.
    edge: Arc<Edge>,
}

impl Daemon {
    pub fn new(settings: Settings, config_path: Option<PathBuf>) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        let (events, _) = broadcast::channel(settings.config.server.admin_watch_buffer);
        let edge = Edge::new(&settings, Arc::clone(&metrics));
        Arc::new(Self {
            settings: ArcSwap::from_pointee(settings),
            generation: AtomicU64::new(0),
            registry: Registry::new(),
            hub: Hub::new(Arc::clone(&metrics)),
            metrics,
            started: Instant::now(),
            draining: CancellationToken::new(),
            stopped: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config_path,
            reload_status: Mutex::new(None),
            events,
            edge,
        })
    }

    /// The config in force.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// Replaces the config in force, all at once.
    pub fn swap(&self, settings: Settings) -> Arc<Settings> {
        self.edge.configure(&settings);
        let old = self.settings.swap(Arc::new(settings));
        self.generation.fetch_add(1, Ordering::Release);
        old
    }

    /// Changes with every swap.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The config file reloads read (`None`: running on the built-in
    /// defaults).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, as a handle a task may keep.
    pub fn metrics_handle(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What is refused before the upgrade: connect rates, memory pressure,
    /// pending handshakes.
    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exposition in `format`, with the numbers the registry owns
    /// (traffic, connections open) brought up to date first.
    pub fn render_metrics(&self, format: crate::metrics::Format) -> String {
        let registry = &self.registry;
        self.metrics.sync_traffic(registry.traffic());
        let counts = registry.counts();
        self.metrics
            .sync_open(counts.by_route.iter().map(|(r, n, _)| (r.as_str(), *n)));
        let settings = self.settings();
        self.metrics
            .sync_certificates(settings.listeners.iter().flat_map(|l| {
                l.tls.iter().flat_map(move |t| {
                    t.certs
                        .certificates()
                        .iter()
                        .map(move |c| (&*l.name, c.name(), c.expiry_unix()))
                })
            }));
        self.metrics.render_as(format)
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
    pub fn reload_status(&self) -> Option<ReloadStatus> {
        lock(&self.reload_status).clone()
    }

    pub fn set_reload_status(&self, status: ReloadStatus) {
        *lock(&self.reload_status) = Some(status);
    }

    /// From now on upgrades are refused and `/readyz` says so.
    pub fn start_drain(&self) {
        self.draining.cancel();
    }

    /// Ready once a drain (or the stop) has started.
    pub fn draining_started(&self) -> impl Future<Output = ()> + Send + 'static {
        self.draining.clone().cancelled_owned()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Ends the daemon's run: the listener and the admin socket close.
    pub fn stop(&self) {
        self.draining.cancel();
        self.stopped.cancel();
    }

    /// Ready once [`Daemon::stop`] was called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stopped.clone().cancelled_owned()
    }

    /// Runs a connection's task where shutdown can wait for it.
    /// Where connection tasks (and their routers' own) run.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn spawn_connection<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits until every connection task has ended, at most `timeout`;
    /// `false` if some were still running then. A task spawned meanwhile
    /// (an upgrade that completes) is waited for too.
    pub async fn wait_connections(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}
