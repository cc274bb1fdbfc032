//! One control vocabulary. SIGHUP, the config file watcher and the admin
//! `reload` send the same [`Control::Reload`]; SIGTERM/SIGINT and the admin
//! `drain` start the same drain. One loop acts on them in order, so two
//! reloads never race and a drain starts once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::ConfigError;
use crate::daemon::Daemon;
use crate::handle::Drain;
use crate::reload::{self, Report};
use crate::systemd;
use crate::ws::close;

/// Where the control loop's commands come from.
pub type Sender = mpsc::Sender<Control>;

pub enum Control {
    /// Reload the config file (or, `dry_run`, report what it would do).
    Reload {
        origin: &'static str,
        dry_run: bool,
        reply: Option<oneshot::Sender<Result<Report, ConfigError>>>,
    },
    /// Start a graceful drain (a no-op while one runs).
    Drain {
        origin: &'static str,
        timeout: Option<Duration>,
    },
    /// A stop signal: the first drains, the second closes everything at
    /// once and exits.
    Terminate { signal: &'static str },
}

/// Runs until the daemon has drained (or was stopped).
pub async fn run(daemon: Arc<Daemon>, mut rx: mpsc::Receiver<Control>) {
    let mut draining: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                // Every sender is gone: nothing can stop us but a drain.
                None => std::future::pending::<()>().await,
                Some(Control::Reload { origin, dry_run, reply }) => {
                    let result = reload_now(&daemon, origin, dry_run);
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Some(Control::Drain { origin, timeout }) => {
                    if draining.is_none() {
                        tracing::info!(origin, "draining");
                        draining = Some(tokio::spawn(drain(Arc::clone(&daemon), timeout)));
                    }
                }
                Some(Control::Terminate { signal }) => match draining {
                    None => {
                        tracing::info!(signal, "draining");
                        draining = Some(tokio::spawn(drain(Arc::clone(&daemon), None)));
                    }
                    Some(_) => {
                        tracing::warn!(signal, "second stop signal: closing every connection now");
                        stop_now(&daemon).await;
                        daemon.stop();
                        return;
                    }
                },
            },
            _ = async { if let Some(h) = draining.as_mut() { let _ = h.await; } }, if draining.is_some() => {
                daemon.stop();
                return;
            }
        }
    }
}

fn reload_now(daemon: &Daemon, origin: &'static str, dry_run: bool) -> Result<Report, ConfigError> {
    if dry_run {
        return reload::reload(daemon, origin, true);
    }
    systemd::reloading();
    let result = reload::reload(daemon, origin, false);
    systemd::ready();
    systemd::status(daemon);
    result
}

/// Stops accepting, tells every connection to go (spread over
/// `drain_spread`), and waits for them under `drain_timeout`.
pub async fn drain(daemon: Arc<Daemon>, timeout: Option<Duration>) {
    daemon.start_drain();
    systemd::stopping();
    let (spread, window, drain_timeout) = {
        let s = daemon.settings();
        let server = &s.config.server;
        (
            server.drain_spread,
            server.reconnect_window,
            server.drain_timeout,
        )
    };
    let timeout = timeout.unwrap_or(drain_timeout);
    let mut conns = daemon.registry().all();
    conns.sort_by_key(|c| c.id);
    let n = conns.len().max(1) as u32;
    let now = Instant::now();
    for (i, c) in conns.iter().enumerate() {
        let i = i as u32;
        c.request_drain(Drain {
            close_at: now + spread * i / n,
            reconnect_after_ms: (window * i / n).as_millis() as u64,
        });
    }
    tracing::info!(connections = conns.len(), spread = ?spread, timeout = ?timeout, "drain started");
    drop(conns);
    if !daemon.wait_connections(timeout).await {
        tracing::warn!(
            left = daemon.registry().len(),
            "drain timeout: closing the rest now"
        );
        stop_now(&daemon).await;
    } else {
        tracing::info!("drained");
    }
}

/// Closes every connection with 1001 at once and waits at most
/// `close_timeout` for the close frames to go out.
async fn stop_now(daemon: &Daemon) {
    daemon.start_drain();
    for c in daemon.registry().all() {
        c.request_close(close::GOING_AWAY, "server shutting down");
    }
    let wait = daemon.settings().config.server.close_timeout;
    daemon.wait_connections(wait).await;
}
