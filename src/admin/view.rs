//! What the admin protocol shows: rows (from a [`Sample`] of a
//! connection's numbers), filters, stats and reload results, built from the
//! daemon's own types (the registry's live handles are read without holding
//! its lock). Every conversion from an internal type to a protocol type is
//! here; the order and window of rows is in [`super::table`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;

use super::protocol::{
    Changes, ConnDetail, ConnRow, Connections, Filter, LimitUse, Overage, ReloadInfo, ReloadResult,
    Stats,
};
use crate::config::diff;
use crate::daemon::Daemon;
use crate::handle::Conn;
use crate::registry::Peaks;
use crate::reload::Report;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// One connection's numbers, each read once, so that a row shows the
/// values it was sorted by.
pub struct Sample<'a> {
    pub conn: &'a Conn,
    pub age_s: f64,
    pub idle_s: f64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub queue: usize,
    pub subscriptions: usize,
    pub rtt_ms: Option<f64>,
    /// Messages per second: a watcher's rates, or over the connection's age.
    pub in_rate: f64,
    pub out_rate: f64,
}

impl<'a> Sample<'a> {
    /// The connection's numbers now, with rates over its age.
    pub fn of(conn: &'a Conn) -> Self {
        let s = &conn.stats;
        let rtt = s.rtt_us.load(Ordering::Relaxed);
        let age_s = conn.started.elapsed().as_secs_f64();
        let msgs_in = s.msgs_in.load(Ordering::Relaxed);
        let msgs_out = s.msgs_out.load(Ordering::Relaxed);
        Sample {
            conn,
            age_s,
            idle_s: conn.idle_secs(),
            msgs_in,
            msgs_out,
            queue: conn.queue_depth(),
            subscriptions: conn.subscription_count(),
            rtt_ms: (rtt > 0).then(|| rtt as f64 / 1000.0),
            in_rate: per_second(msgs_in, age_s),
            out_rate: per_second(msgs_out, age_s),
        }
    }

    /// Its row; `rates` puts `in_rate` and `out_rate` in (`watch` only).
    pub fn row(&self, rates: bool) -> ConnRow {
        let c = self.conn;
        ConnRow {
            id: c.id,
            route: c.route.to_string(),
            user: c.user.as_ref().map(|u| u.to_string()),
            ip: c.ip.to_string(),
            connected_at: rfc3339(c.connected_at),
            age_s: self.age_s,
            idle_s: self.idle_s,
            msgs_in: self.msgs_in,
            msgs_out: self.msgs_out,
            bytes_in: c.stats.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.stats.bytes_out.load(Ordering::Relaxed),
            queue: self.queue,
            subscriptions: self.subscriptions,
            rtt_ms: self.rtt_ms,
            in_rate: rates.then_some(self.in_rate),
            out_rate: rates.then_some(self.out_rate),
        }
    }
}

/// `count` events over `secs` seconds, as a rate (0 over no time).
pub fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

pub fn row(c: &Conn) -> ConnRow {
    Sample::of(c).row(false)
}

pub fn detail(c: &Conn) -> ConnDetail {
    ConnDetail {
        row: row(c),
        topics: c.subscriptions().iter().map(|t| t.to_string()).collect(),
    }
}

/// A filter made ready to test connections: its network parsed once.
pub struct Selector {
    filter: Filter,
    net: Option<IpNet>,
}

impl Selector {
    /// `Err` when the filter is malformed (its `ip` is no address or CIDR).
    pub fn new(filter: Filter) -> Result<Self, String> {
        let net = filter.network().map_err(|e| e.to_string())?;
        Ok(Self { filter, net })
    }

    pub fn matches(&self, c: &Conn) -> bool {
        let f = &self.filter;
        f.route.as_deref().is_none_or(|r| &*c.route == r)
            && f.user
                .as_deref()
                .is_none_or(|u| c.user.as_deref() == Some(u))
            && self.net.is_none_or(|n| n.contains(&c.ip))
            && f.topic
                .as_deref()
                .is_none_or(|t| c.subscriptions().iter().any(|s| &**s == t))
            && f.min_idle_s.is_none_or(|m| c.idle_secs() >= m)
            && f.min_age_s
                .is_none_or(|m| c.started.elapsed().as_secs_f64() >= m)
            && f.min_queue.is_none_or(|m| c.queue_depth() >= m)
    }
}

/// The connections a filter selects. `Err` when the filter is malformed.
pub fn select(daemon: &Daemon, filter: &Filter) -> Result<Vec<Arc<Conn>>, String> {
    let selector = Selector::new(filter.clone())?;
    let mut conns = daemon.registry().all();
    conns.retain(|c| selector.matches(c));
    Ok(conns)
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
