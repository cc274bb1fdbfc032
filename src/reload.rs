//! Reload: parse aside, validate all, diff, swap once, keep the old on error.
//!
//! Every trigger (a file change, SIGHUP, the admin `reload`) ends here. A
//! broken file changes nothing: the error is logged with file:line:column,
//! counted, and kept for the admin `stats`. A valid one replaces the
//! settings in one swap; then connections of removed routes are closed with
//! 1001, and, with `enforce_on_reload`, connections over a tightened cap
//! with 4006 (oldest first). Every other connection picks the new limits up
//! at its next event (it is woken so that timers are re-armed at once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::diff::{diff, keep_restart_keys, Changes};
use crate::config::{ConfigError, Settings};
use crate::daemon::{Daemon, ReloadStatus};
use crate::handle::{Conn, ConnId};
use crate::metrics::ResultLabel;
use crate::ws::close;
use wsgate_admin_proto::Event;

/// What a reload did (or, dry, would do); the admin `reload` answers it as
/// `admin::protocol::ReloadResult` (`admin::view::reload_result`).
#[derive(Debug, Clone)]
pub struct Report {
    pub dry_run: bool,
    pub changes: Changes,
    /// Connections over a cap of the new config; those marked `closes`
    /// (`enforce_on_reload`) are closed with 4006 unless dry.
    pub over_cap: Vec<Overage>,
    /// Connections on removed routes (closed with 1001 unless dry).
    pub on_removed_routes: usize,
}

/// A connection over a cap after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overage {
    pub id: ConnId,
    pub route: String,
    pub cap: &'static str,
    /// Whether the reload closes it (`enforce_on_reload` in that scope);
    /// otherwise it stays open and the cap binds new connections only.
    pub closes: bool,
}

/// Loads the config file again and applies it (or, `dry_run`, reports what
/// it would do against the live connections).
pub fn reload(daemon: &Daemon, origin: &str, dry_run: bool) -> Result<Report, ConfigError> {
    let Some(path) = daemon.config_path() else {
        let e = ConfigError::whole_file(
            "<built-in>",
            "running on the built-in defaults: there is no file to reload",
        );
        return Err(record_error(daemon, origin, dry_run, e));
    };
    match Settings::load(path) {
        Ok(new) => Ok(apply(daemon, new, origin, dry_run)),
        Err(e) => Err(record_error(daemon, origin, dry_run, e)),
    }
}

fn record_error(daemon: &Daemon, origin: &str, dry_run: bool, e: ConfigError) -> ConfigError {
    if dry_run {
        return e;
    }
    let one_line = e.to_string().replace('\n', "; ");
    tracing::error!(origin, error = %one_line, "reload refused; the running config stays");
    daemon
        .metrics()
        .config_reloads
        .get_or_create(&ResultLabel { result: "error" })
        .inc();
    daemon.emit(|| Event::Reloaded {
        ok: false,
        origin: origin.to_string(),
        error: Some(one_line.clone()),
    });
    daemon.set_reload_status(ReloadStatus {
        at: SystemTime::now(),
        origin: origin.to_string(),
        ok: false,
        error: Some(e.to_string()),
        restart_required: Vec::new(),
    });
    e
}

/// Applies validated settings.
pub fn apply(daemon: &Daemon, mut new: Settings, origin: &str, dry_run: bool) -> Report {
    let old = daemon.settings();
    let changes = diff(&old, &new);
    keep_restart_keys(&old, &mut new);
    drop(old);
    let conns = daemon.registry().all();
    let removed: Vec<&Arc<Conn>> = conns
        .iter()
        .filter(|c| new.route(&c.route).is_none())
        .collect();
    let over_cap = over_caps(&conns, &new);
    let report = Report {
        dry_run,
        changes,
        over_cap,
        on_removed_routes: removed.len(),
    };
    if dry_run {
        return report;
    }

    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    daemon.swap(new);
    for c in &removed {
        c.request_close(close::GOING_AWAY, "route removed");
    }
    let by_id: HashMap<ConnId, &Arc<Conn>> = conns.iter().map(|c| (c.id, c)).collect();
    for o in report.over_cap.iter().filter(|o| o.closes) {
        if let Some(c) = by_id.get(&o.id) {
            c.request_close(close::LIMIT_TIGHTENED, "limit tightened");
        }
    }
    // Re-arm every connection's timers and limits now, not at its next
    // message.
    for c in &conns {
        c.nudge();
    }

    daemon
        .metrics()
        .config_reloads
        .get_or_create(&ResultLabel { result: "ok" })
        .inc();
    let c = &report.changes;
    if c.is_empty() {
        tracing::info!(origin, "config reloaded: no changes");
    } else {
        tracing::info!(origin, applied = ?c.applied, "config reloaded");
    }
    if !c.restart_required.is_empty() {
        tracing::warn!(origin, keys = ?c.restart_required, "config reloaded: restart required for these keys; the running values stay");
    }
    let closing = report.over_cap.iter().filter(|o| o.closes).count();
    if report.on_removed_routes > 0 || closing > 0 {
        tracing::info!(
            on_removed_routes = report.on_removed_routes,
            over_cap = closing,
            "closing connections after reload"
        );
    }
    daemon.emit(|| Event::Reloaded {
        ok: true,
        origin: origin.to_string(),
        error: None,
    });
    daemon.set_reload_status(ReloadStatus {
        at: SystemTime::now(),
        origin: origin.to_string(),
        ok: true,
        error: None,
        restart_required: c.restart_required.clone(),
    });
    report
}

/// The connections over a cap of `settings`, oldest first within each
/// group: the oldest are over, the newest fit. Where `enforce_on_reload` is
/// set for the scope the overage `closes`; a connection that closes no
/// longer counts against the caps checked after it, one that stays does.
pub fn over_caps(conns: &[Arc<Conn>], settings: &Settings) -> Vec<Overage> {
    let mut sorted: Vec<&Arc<Conn>> = conns
        .iter()
        .filter(|c| settings.route(&c.route).is_some() && !c.closing())
        .collect();
    sorted.sort_by_key(|c| c.id);
    let mut found: HashMap<ConnId, Overage> = HashMap::new();
    let global = settings.limits();

    // Each pass counts the connections not already closing.
    let mut pass = |cap: &'static str,
                    enforce: &dyn Fn(&Conn) -> bool,
                    key: &dyn Fn(&Conn) -> Option<String>,
                    limit: &dyn Fn(&Conn) -> usize| {
        let mut groups: HashMap<String, Vec<&Arc<Conn>>> = HashMap::new();
        for c in &sorted {
            if found.get(&c.id).is_some_and(|o| o.closes) {
                continue;
            }
            if let Some(k) = key(c) {
                groups.entry(k).or_default().push(c);
            }
        }
        for group in groups.values() {
            let Some(first) = group.first() else { continue };
            let excess = group.len().saturating_sub(limit(first));
            for c in group.iter().take(excess) {
                let closes = enforce(c);
                let entry = found.entry(c.id).or_insert_with(|| Overage {
                    id: c.id,
                    route: c.route.to_string(),
                    cap,
                    closes,
                });
                if closes && !entry.closes {
                    entry.cap = cap;
                    entry.closes = true;
                }
            }
        }
    };
    let route_limits = |c: &Conn| {
        settings
            .route(&c.route)
            .map(|r| r.limits.clone())
            .unwrap_or_default()
    };
    let route_enforce = |c: &Conn| route_limits(c).enforce_on_reload;
    let global_enforce = |_: &Conn| global.enforce_on_reload;
    let ip = |c: &Conn| c.ip;
    let user = |c: &Conn| c.user.as_ref().map(|u| u.to_string());

    pass(
        "route",
        &route_enforce,
        &|c| Some(c.route.to_string()),
        &|c| route_limits(c).max_connections,
    );
    pass("total", &global_enforce, &|_| Some(String::new()), &|_| {
        global.max_connections
    });
    pass(
        "ip",
        &route_enforce,
        &|c| Some(format!("{}|{}", c.route, ip(c))),
        &|c| route_limits(c).max_connections_per_ip,
    );
    pass("ip", &global_enforce, &|c| Some(ip(c).to_string()), &|_| {
        global.max_connections_per_ip
    });
    pass(
        "user",
        &route_enforce,
        &|c| user(c).map(|u| format!("{}|{u}", c.route)),
        &|c| route_limits(c).max_connections_per_user,
    );
    pass("user", &global_enforce, &user, &|_| {
        global.max_connections_per_user
    });
    let mut out: Vec<Overage> = found.into_values().collect();
    out.sort_by_key(|o| o.id);
    out
}
