//! What the admin protocol shows: rows, filters, sorts, stats and reload
//! results, built from the daemon's own types (the registry's live handles
//! are read without holding its lock). Every conversion from an internal
//! type to a protocol type is here.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::protocol::{
    Changes, ConnDetail, ConnRow, Connections, Filter, LimitUse, Overage, ReloadInfo, ReloadResult,
    SortKey, Stats,
};
use crate::config::diff;
use crate::daemon::Daemon;
use crate::handle::Conn;
use crate::registry::Peaks;
use crate::reload::Report;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn row(c: &Conn) -> ConnRow {
    let s = &c.stats;
    let rtt = s.rtt_us.load(Ordering::Relaxed);
    ConnRow {
        id: c.id,
        route: c.route.to_string(),
        user: c.user.as_ref().map(|u| u.to_string()),
        ip: c.ip.to_string(),
        connected_at: rfc3339(c.connected_at),
        age_s: c.started.elapsed().as_secs_f64(),
        idle_s: c.idle_secs(),
        msgs_in: s.msgs_in.load(Ordering::Relaxed),
        msgs_out: s.msgs_out.load(Ordering::Relaxed),
        bytes_in: s.bytes_in.load(Ordering::Relaxed),
        bytes_out: s.bytes_out.load(Ordering::Relaxed),
        queue: c.queue_depth(),
        subscriptions: c.subscription_count(),
        rtt_ms: (rtt > 0).then(|| rtt as f64 / 1000.0),
    }
}

pub fn detail(c: &Conn) -> ConnDetail {
    ConnDetail {
        row: row(c),
        topics: c.subscriptions().iter().map(|t| t.to_string()).collect(),
    }
}

/// The connections a filter selects. `Err` when the filter is malformed.
pub fn select(daemon: &Daemon, filter: &Filter) -> Result<Vec<Arc<Conn>>, String> {
    let net = filter.network().map_err(|e| e.to_string())?;
    Ok(daemon
        .registry()
        .all()
        .into_iter()
        .filter(|c| {
            filter.route.as_deref().is_none_or(|r| &*c.route == r)
                && filter
                    .user
                    .as_deref()
                    .is_none_or(|u| c.user.as_deref() == Some(u))
                && net.is_none_or(|n| n.contains(&c.ip))
                && filter
                    .topic
                    .as_deref()
                    .is_none_or(|t| c.subscriptions().iter().any(|s| &**s == t))
                && filter.min_idle_s.is_none_or(|m| c.idle_secs() >= m)
                && filter
                    .min_age_s
                    .is_none_or(|m| c.started.elapsed().as_secs_f64() >= m)
                && filter.min_queue.is_none_or(|m| c.queue_depth() >= m)
        })
        .collect())
}

/// Rows for `list`: sorted (largest first; by id when unsorted) and cut.
pub fn list(conns: &[Arc<Conn>], sort: Option<SortKey>, limit: Option<usize>) -> Vec<ConnRow> {
    let mut rows: Vec<ConnRow> = conns.iter().map(|c| row(c)).collect();
    let key = |r: &ConnRow| -> f64 {
        match sort {
            None => -(r.id as f64),
            Some(SortKey::Age) => r.age_s,
            Some(SortKey::Idle) => r.idle_s,
            Some(SortKey::MsgsIn) => r.msgs_in as f64,
            Some(SortKey::MsgsOut) => r.msgs_out as f64,
            Some(SortKey::Queue) => r.queue as f64,
            Some(SortKey::Rtt) => r.rtt_ms.unwrap_or(-1.0),
        }
    };
    rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.id.cmp(&b.id)));
    if let Some(n) = limit {
        rows.truncate(n);
    }
    rows
}

pub fn stats(daemon: &Daemon) -> Stats {
    let settings = daemon.settings();
    let counts = daemon.registry().counts();
    let conns = daemon.registry().all();
    let closing = conns.iter().filter(|c| c.closing()).count();
    let mut by_state = BTreeMap::new();
    by_state.insert("open".to_string(), conns.len() - closing);
    by_state.insert("closing".to_string(), closing);
    let in_route: BTreeMap<&str, (usize, Peaks)> = counts
        .by_route
        .iter()
        .map(|(r, n, p)| (r.as_str(), (*n, *p)))
        .collect();

    let global = settings.limits();
    let ratio = |n: usize, max: usize| n as f64 / max.max(1) as f64;
    let use_of = |scope: &str, l: &crate::config::Limits, n: usize, p: Peaks| LimitUse {
        scope: scope.to_string(),
        max_connections: l.max_connections,
        connections: n,
        utilisation: ratio(n, l.max_connections),
        max_connections_per_ip: l.max_connections_per_ip,
        top_ip_connections: p.ip,
        ip_utilisation: ratio(p.ip, l.max_connections_per_ip),
        max_connections_per_user: l.max_connections_per_user,
        top_user_connections: p.user,
        user_utilisation: ratio(p.user, l.max_connections_per_user),
        max_message_bytes: l.max_message_bytes,
        messages_per_second: l.messages_per_second,
        send_queue: l.send_queue,
        max_subscriptions: l.max_subscriptions,
    };
    let mut limits = vec![use_of("total", global, counts.total, counts.peaks)];
    for r in &settings.routes {
        let (n, p) = in_route.get(r.path.as_str()).copied().unwrap_or_default();
        limits.push(use_of(&r.path, &r.limits, n, p));
    }

    let t = daemon.metrics().tallies();
    let m = daemon.metrics();
    let traffic = daemon.registry().traffic();
    Stats {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: daemon.uptime().as_secs_f64(),
        config_path: daemon.config_path().map(|p| p.display().to_string()),
        last_reload: daemon.reload_status().map(|s| ReloadInfo {
            at: rfc3339(s.at),
            origin: s.origin,
            ok: s.ok,
            error: s.error,
            restart_required: s.restart_required,
        }),
        draining: daemon.is_draining(),
        connections: Connections {
            total: counts.total,
            by_route: in_route
                .iter()
                .map(|(r, (n, _))| (r.to_string(), *n))
                .collect(),
            by_state,
            ips: counts.ips,
            users: counts.users,
        },
        limits,
        rejections: t
            .rejections
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        closes: t.closes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        messages_in: traffic.msgs_in,
        messages_out: traffic.msgs_out,
        bytes_in: traffic.bytes_in,
        bytes_out: traffic.bytes_out,
        publishes: t
            .publishes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        slow_consumer_closes: m.slow_consumer_closes.get(),
        rate_limited: t
            .rate_limited
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        topics: daemon.hub().topic_count(),
    }
}

/// The `reload` result from the reload's report.
pub fn reload_result(report: Report) -> ReloadResult {
    let diff::Changes {
        applied,
        restart_required,
        routes_added,
        routes_removed,
        routes_changed,
    } = report.changes;
    ReloadResult {
        dry_run: report.dry_run,
        changes: Changes {
            applied,
            restart_required,
            routes_added,
            routes_removed,
            routes_changed,
        },
        over_cap: report
            .over_cap
            .into_iter()
            .map(|o| Overage {
                id: o.id,
                route: o.route,
                cap: o.cap.to_string(),
                closes: o.closes,
            })
            .collect(),
        on_removed_routes: report.on_removed_routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::Overage as Over;

    #[test]
    fn a_reload_report_becomes_its_result_field_by_field() {
        let report = Report {
            dry_run: true,
            changes: diff::Changes {
                applied: vec!["limits.send_queue: 1024 -> 8".into()],
                restart_required: vec!["server.listen".into()],
                routes_added: vec!["/new".into()],
                routes_removed: vec!["/old".into()],
                routes_changed: vec!["/ws".into()],
            },
            over_cap: vec![Over {
                id: 7,
                route: "/ws".into(),
                cap: "user",
                closes: false,
            }],
            on_removed_routes: 3,
        };
        assert_eq!(
            reload_result(report),
            ReloadResult {
                dry_run: true,
                changes: Changes {
                    applied: vec!["limits.send_queue: 1024 -> 8".into()],
                    restart_required: vec!["server.listen".into()],
                    routes_added: vec!["/new".into()],
                    routes_removed: vec!["/old".into()],
                    routes_changed: vec!["/ws".into()],
                },
                over_cap: vec![Overage {
                    id: 7,
                    route: "/ws".into(),
                    cap: "user".into(),
                    closes: false,
                }],
                on_removed_routes: 3,
            }
        );
    }
}
