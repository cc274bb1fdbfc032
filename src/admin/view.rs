//! What the admin protocol shows: rows, filters, stats and reload results,
//! built from the daemon's own types (the registry's live handles are read without holding
//! its lock). Every conversion from an internal type to a protocol type is
//! here; the order and window of rows is in [`super::table`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ipnet::IpNet;

use super::protocol::{
    CertificateInfo, Changes, ClusterInfo, ConnDetail, ConnRow, Connections, Filter, LimitUse,
    ListenerInfo, Overage, ReloadInfo, ReloadResult, Stats, UpstreamLeg,
};
use crate::config::diff;
use crate::daemon::Daemon;
use crate::handle::Conn;
use crate::registry::Peaks;
use crate::reload::Report;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Messages per second in and out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub msgs_in: f64,
    pub msgs_out: f64,
}

impl Rates {
    /// A connection's messages over its age at `now`.
    pub fn over_age(c: &Conn, now: Instant) -> Self {
        let age = age_s(c, now);
        let traffic = c.stats.traffic();
        Rates {
            msgs_in: per_second(traffic.msgs_in, age),
            msgs_out: per_second(traffic.msgs_out, age),
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

/// Seconds since the connection was admitted, at `now`.
pub fn age_s(c: &Conn, now: Instant) -> f64 {
    now.saturating_duration_since(c.started).as_secs_f64()
}

/// Seconds since the last inbound data message (or the connect), at `now`:
/// [`Conn::idle_secs`] without reading the clock for every connection.
pub fn idle_s(c: &Conn, now: Instant) -> f64 {
    let last = c.stats.last_active_ms.load(Ordering::Relaxed);
    let age_ms = now.saturating_duration_since(c.started).as_millis() as u64;
    age_ms.saturating_sub(last) as f64 / 1000.0
}

/// The last ping round trip in milliseconds, if there was one.
pub fn rtt_ms(c: &Conn) -> Option<f64> {
    let rtt = c.stats.rtt_us.load(Ordering::Relaxed);
    (rtt > 0).then(|| rtt as f64 / 1000.0)
}

/// A connection's row at `now`; `rates` are put in (`watch` only).
pub fn row_at(c: &Conn, now: Instant, rates: Option<Rates>) -> ConnRow {
    let s = &c.stats;
    ConnRow {
        id: c.id,
        route: c.route.to_string(),
        user: c.user.as_ref().map(|u| u.to_string()),
        ip: c.ip.to_string(),
        connected_at: rfc3339(c.connected_at),
        age_s: age_s(c, now),
        idle_s: idle_s(c, now),
        msgs_in: s.msgs_in.load(Ordering::Relaxed),
        msgs_out: s.msgs_out.load(Ordering::Relaxed),
        bytes_in: s.bytes_in.load(Ordering::Relaxed),
        bytes_out: s.bytes_out.load(Ordering::Relaxed),
        queue: c.queue_depth(),
        subscriptions: c.subscription_count(),
        rtt_ms: rtt_ms(c),
        in_rate: rates.map(|r| r.msgs_in),
        out_rate: rates.map(|r| r.msgs_out),
        upstream: c.upstream().map(|u| {
            Box::new(UpstreamLeg {
                target: u.target.to_string(),
                state: u.state.to_string(),
            })
        }),
    }
}

pub fn row(c: &Conn) -> ConnRow {
    row_at(c, Instant::now(), None)
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

    /// Whether `c` matches, with its idle time and age at `now`.
    pub fn matches(&self, c: &Conn, now: Instant) -> bool {
        let f = &self.filter;
        f.route.as_deref().is_none_or(|r| &*c.route == r)
            && f.user
                .as_deref()
                .is_none_or(|u| c.user.as_deref() == Some(u))
            && self.net.is_none_or(|n| n.contains(&c.ip))
            && f.topic
                .as_deref()
                .is_none_or(|t| c.subscriptions().iter().any(|s| &**s == t))
            && f.min_idle_s.is_none_or(|m| idle_s(c, now) >= m)
            && f.min_age_s.is_none_or(|m| age_s(c, now) >= m)
            && f.min_queue.is_none_or(|m| c.queue_depth() >= m)
    }
}

/// The connections a filter selects. `Err` when the filter is malformed.
pub fn select(daemon: &Daemon, filter: &Filter) -> Result<Vec<Arc<Conn>>, String> {
    let selector = Selector::new(filter.clone())?;
    let mut conns = daemon.registry().all();
    let now = Instant::now();
    conns.retain(|c| selector.matches(c, now));
    Ok(conns)
}

/// The listeners and their certificates, for `stats`.
fn listeners(settings: &crate::config::Settings) -> Vec<ListenerInfo> {
    let now = std::time::SystemTime::now();
    settings
        .listeners
        .iter()
        .map(|l| ListenerInfo {
            name: l.name.to_string(),
            address: l.config.address.to_string(),
            serve: l
                .config
                .serve
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            tls: l.tls.is_some(),
            proxy_protocol: l.config.proxy_protocol,
            certificates: l
                .tls
                .iter()
                .flat_map(|t| t.certs.certificates())
                .map(|c| CertificateInfo {
                    names: c.names.clone(),
                    serial: c.serial.clone(),
                    not_after: rfc3339(c.not_after),
                    expires_in_s: c.seconds_left(now),
                })
                .collect(),
        })
        .collect()
}

pub fn stats(daemon: &Daemon) -> Stats {
    stats_of(daemon, &daemon.registry().all())
}

/// `stats`, with `conns` the registry's connections (taken just before).
pub fn stats_of(daemon: &Daemon, conns: &[Arc<Conn>]) -> Stats {
    let settings = daemon.settings();
    let counts = daemon.registry().counts();
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
        slow_consumer_closes: m.slow_consumer_total(),
        rate_limited: t
            .rate_limited
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        topics: daemon.hub().topic_count(),
        listeners: listeners(&settings),
        cluster: daemon.hub().bus().map(|bus| ClusterInfo {
            node: bus.node().to_string(),
            nats_connected: bus.connected(),
        }),
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
