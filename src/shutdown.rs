//! Stopping: a signal starts the drain, which flows down to the listener
//! and every connection; completion flows back up through the task tracker,
//! under `[server] drain_timeout`.

use std::sync::Arc;

use crate::conn::close;
use crate::daemon::Daemon;

/// Waits for SIGTERM or SIGINT, then drains.
pub async fn run(daemon: Arc<Daemon>) {
    wait_for_signal().await;
    drain(&daemon).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}

/// Stops accepting, closes every connection with 1001 and waits for them.
pub async fn drain(daemon: &Daemon) {
    daemon.draining.cancel();
    for conn in daemon.registry.all() {
        conn.request_close(close::GOING_AWAY, "server shutting down");
    }
    daemon.tasks.close();
    let timeout = daemon.settings().config.server.drain_timeout;
    if tokio::time::timeout(timeout, daemon.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = daemon.registry.len(),
            "drain timeout: exiting with connections open"
        );
    } else {
        tracing::info!("drained");
    }
}
