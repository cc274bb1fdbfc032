//! How `wsgate ctl` shows each result: tables and text for people, and
//! pretty JSON for `--json`.

use serde::Serialize;
use wsgate::admin::protocol::{
    ConfigResult, ConnDetail, ConnRow, Event, EvictPreview, EvictResult, ReloadResult, Stats,
};

/// A result as the daemon sent it, pretty-printed: through a JSON value, as
/// the daemon serialises it, so that the keys come out sorted the same way.
pub fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
        + "\n"
}

/// Seconds as `1h2m`, `3m4s`, `5.1s`.
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    let s = s as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A plain table: a header and left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push = |cells: Vec<String>| {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        push(row.clone());
    }
    out
}

pub fn connections_table(rows: &[ConnRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.route.clone(),
                r.user.clone().unwrap_or_else(|| "-".into()),
                r.ip.clone(),
                span(r.age_s),
                span(r.idle_s),
                r.msgs_in.to_string(),
                r.msgs_out.to_string(),
                r.queue.to_string(),
                r.subscriptions.to_string(),
                r.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1}ms")),
            ]
        })
        .collect();
    table(
        &[
            "ID", "ROUTE", "USER", "IP", "AGE", "IDLE", "IN", "OUT", "QUEUE", "SUBS", "RTT",
        ],
        &cells,
    )
}

pub fn stats_text(s: &Stats) -> String {
    let mut out = String::new();
    let kv = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    kv(&mut out, "version", s.version.clone());
    kv(&mut out, "uptime", span(s.uptime_s));
    kv(
        &mut out,
        "config",
        s.config_path.clone().unwrap_or_else(|| "<built-in>".into()),
    );
    kv(
        &mut out,
        "last reload",
        match &s.last_reload {
            None => "-".into(),
            Some(r) if r.ok => format!("ok at {} ({})", r.at, r.origin),
            Some(r) => format!(
                "FAILED at {} ({}): {}",
                r.at,
                r.origin,
                r.error.clone().unwrap_or_default()
            ),
        },
    );
    kv(&mut out, "draining", s.draining.to_string());
    let c = &s.connections;
    kv(
        &mut out,
        "connections",
        format!(
            "{} ({} open, {} closing; {} IPs, {} users)",
            c.total,
            c.by_state.get("open").copied().unwrap_or(0),
            c.by_state.get("closing").copied().unwrap_or(0),
            c.ips,
            c.users
        ),
    );
    kv(&mut out, "topics", s.topics.to_string());
    kv(
        &mut out,
        "messages in/out",
        format!("{} / {}", s.messages_in, s.messages_out),
    );
    kv(
        &mut out,
        "bytes in/out",
        format!("{} / {}", s.bytes_in, s.bytes_out),
    );
    kv(
        &mut out,
        "slow consumer closes",
        s.slow_consumer_closes.to_string(),
    );
    let map = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    kv(&mut out, "publishes", map(&s.publishes));
    kv(&mut out, "rejections", map(&s.rejections));
    kv(&mut out, "closes", map(&s.closes));
    kv(&mut out, "rate limited", map(&s.rate_limited));
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .limits
        .iter()
        .map(|l| {
            vec![
                l.scope.clone(),
                format!("{}/{}", l.connections, l.max_connections),
                format!("{:.0}%", l.utilisation * 100.0),
                format!("{}/{}", l.top_ip_connections, l.max_connections_per_ip),
                format!("{}/{}", l.top_user_connections, l.max_connections_per_user),
                l.max_message_bytes.to_string(),
                l.messages_per_second.to_string(),
                l.send_queue.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "SCOPE",
            "CONNECTIONS",
            "USED",
            "TOP_IP",
            "TOP_USER",
            "MAX_BYTES",
            "MSG/S",
            "QUEUE",
        ],
        &rows,
    ));
    out
}

pub fn detail_text(d: &ConnDetail) -> String {
    let mut out = connections_table(std::slice::from_ref(&d.row));
    out.push_str(&format!(
        "\nconnected at {}\nbytes in/out {} / {}\ntopics: {}\n",
        d.row.connected_at,
        d.row.bytes_in,
        d.row.bytes_out,
        if d.topics.is_empty() {
            "-".to_string()
        } else {
            d.topics.join(", ")
        }
    ));
    out
}

/// One line per watch event.
pub fn event_text(e: &Event) -> String {
    match e {
        Event::Snapshot { stats, .. } => format!(
            "snapshot: {} connections, {} msgs in, {} msgs out, {} topics",
            stats.connections.total, stats.messages_in, stats.messages_out, stats.topics
        ),
        Event::Connected {
            id,
            route,
            ip,
            user,
            ..
        } => format!(
            "connected {id} {route} {ip} {}",
            user.as_deref().unwrap_or("-")
        ),
        Event::Closed {
            id,
            route,
            code,
            reason,
        } => format!("closed {id} {route} {code} {reason}"),
        Event::Rejected {
            route,
            ip,
            status,
            reason,
        } => format!("rejected {route} {ip} {status} {reason}"),
        Event::Evicted { ids, reason } => format!("evicted {} ({reason})", ids.len()),
        Event::Reloaded { ok, origin, error } => match error {
            Some(e) if !ok => format!("reload FAILED ({origin}): {e}"),
            _ => format!("reloaded ({origin})"),
        },
        Event::Lagged { missed } => format!("(missed {missed} events)"),
    }
}

/// `evict --dry-run`.
pub fn preview_text(p: &EvictPreview) -> String {
    format!(
        "would evict {} connection(s)\n{}",
        p.connections.len(),
        connections_table(&p.connections)
    )
}

pub fn evicted_text(r: &EvictResult) -> String {
    format!("evicted {} connection(s)\n", r.evicted)
}

/// The config as TOML (as JSON if TOML cannot hold it).
pub fn config_text(c: &ConfigResult) -> String {
    toml::to_string_pretty(c).unwrap_or_else(|_| pretty(c))
}

/// What a reload changed (or, dry, would change), one line each.
pub fn reload_text(r: &ReloadResult) -> String {
    let dry_run = r.dry_run;
    let mut out = String::from(if dry_run {
        "dry run: nothing changed\n"
    } else {
        "reloaded\n"
    });
    let c = &r.changes;
    if c.is_empty() {
        out.push_str("no changes\n");
    }
    for key in &c.applied {
        out.push_str(&format!("  applies live: {key}\n"));
    }
    for key in &c.restart_required {
        out.push_str(&format!("  needs a restart: {key}\n"));
    }
    let closing = r.over_cap.iter().filter(|o| o.closes).count();
    let staying = r.over_cap.len() - closing;
    let removed = r.on_removed_routes;
    let verb = if dry_run { "would close" } else { "closing" };
    if closing > 0 {
        out.push_str(&format!(
            "  {verb} {closing} connection(s) over a tightened cap (4006)\n"
        ));
    }
    if staying > 0 {
        let stay = if dry_run { "would stay" } else { "staying" };
        out.push_str(&format!(
            "  {staying} connection(s) over a tightened cap {stay} open (enforce_on_reload is off)\n"
        ));
    }
    if removed > 0 {
        out.push_str(&format!(
            "  {verb} {removed} connection(s) on removed routes (1001)\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(0.25), "0.2s");
        assert_eq!(span(42.0), "42s");
        assert_eq!(span(125.0), "2m5s");
        assert_eq!(span(7300.0), "2h1m");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1\n");
    }
}
