//! systemd integration through `sd_notify`: READY, RELOADING, STOPPING,
//! STATUS and watchdog pings. Without `NOTIFY_SOCKET` every call does
//! nothing.

use std::sync::Arc;

use sd_notify::NotifyState;

use crate::daemon::Daemon;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `STATUS=`: connections and the last reload, in one line.
pub fn status(daemon: &Daemon) {
    let reload = match daemon.reload_status() {
        None => "no reload yet".to_string(),
        Some(s) if s.ok => format!(
            "last reload ok ({})",
            humantime::format_rfc3339_seconds(s.at)
        ),
        Some(s) => format!(
            "last reload FAILED ({})",
            humantime::format_rfc3339_seconds(s.at)
        ),
    };
    let line = format!("{} connections; {reload}", daemon.registry().len());
    send(&[NotifyState::Status(&line)]);
}

/// Pings the watchdog at half its interval, if systemd asked for one, and
/// refreshes STATUS with it.
pub fn spawn_watchdog(daemon: Arc<Daemon>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
            status(&daemon);
        }
    });
}
