//! How `wsgate ctl` shows each result: tables and text for people, and
//! pretty JSON for `--json`.

use serde::Serialize;
use wsgate_admin_proto::{
    ClusterResult, ConfigResult, ConnDetail, ConnRow, Event, EvictPreview, EvictResult,
    ReloadResult, Stats,
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

/// Each node's answer of a `--cluster` command, rendered by `each` (JSON
/// when it cannot), then who did not answer.
pub fn cluster_text(
    result: &ClusterResult,
    each: fn(&serde_json::Value) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut silent = Vec::new();
    for node in &result.nodes {
        out.push_str(&format!("== node {}\n", node.node));
        match (&node.result, &node.error) {
            (Some(result), _) if node.ok => {
                out.push_str(&each(result).unwrap_or_else(|| pretty(result)));
            }
            (_, Some(e)) => {
                out.push_str(&format!("{}: {}\n", e.code, e.message));
                silent.push(node.node.as_str());
            }
            _ => {
                out.push_str("no answer\n");
                silent.push(node.node.as_str());
            }
        }
        out.push('\n');
    }
    let answered = result.nodes.len() - silent.len();
    out.push_str(&format!(
        "{} nodes, {answered} answered",
        result.nodes.len()
    ));
    if !silent.is_empty() {
        out.push_str(&format!("; not: {}", silent.join(", ")));
    }
    out.push('\n');
    out
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
    if let Some(c) = &s.cluster {
        let nats = if c.nats_connected {
            "NATS connected"
        } else {
            "NATS not connected: local delivery only"
        };
        kv(&mut out, "cluster", format!("node {} ({nats})", c.node));
    }
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
    for l in &s.listeners {
        let mut line = format!("{} {}", l.address, l.serve.join(","));
        if l.proxy_protocol {
            line.push_str(" proxy_protocol");
        }
        if l.tls {
            line.push_str(" tls");
        }
        kv(&mut out, &format!("listener {}", l.name), line);
        for c in &l.certificates {
            kv(
                &mut out,
                "  certificate",
                format!(
                    "{} serial {} expires {} (in {})",
                    c.names.join(","),
                    c.serial,
                    c.not_after,
                    span(c.expires_in_s.max(0) as f64)
                ),
            );
        }
    }
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

    const ROW: &str = r#"{"age_s":330.323028442,"bytes_in":56,"bytes_out":171,"connected_at":"2026-11-22T07:13:14.629Z","id":1,"idle_s":5.25,"ip":"10.1.2.3","msgs_in":1,"msgs_out":3,"queue":0,"route":"/ws","rtt_ms":0.229,"subscriptions":2,"user":"alice"}"#;
    const ANON: &str = r#"{"age_s":2.0,"bytes_in":0,"bytes_out":0,"connected_at":"2026-11-22T07:13:14.631Z","id":4,"idle_s":2.0,"ip":"192.0.2.7","msgs_in":0,"msgs_out":0,"queue":0,"route":"/ws/echo","rtt_ms":null,"subscriptions":0,"user":null}"#;
    const RELOAD: &str = r#"{"changes":{"applied":["limits.enforce_on_reload: false -> true","limits.max_connections_per_ip: 100 -> 2"],"restart_required":["server.listen: \"127.0.0.1:18081\" -> \"127.0.0.1:18083\""],"routes_added":[],"routes_changed":[],"routes_removed":[]},"dry_run":true,"on_removed_routes":0,"over_cap":[{"cap":"ip","closes":true,"id":51,"route":"/ws/echo"}]}"#;

    fn read<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// `--json` prints a typed result re-serialised: it must be the
    /// daemon's answer, pretty-printed, byte for byte.
    fn prints_as_sent<T: Serialize + serde::de::DeserializeOwned>(answer: &str) {
        let sent: serde_json::Value = read(answer);
        let expected = serde_json::to_string_pretty(&sent).expect("pretty") + "\n";
        assert_eq!(pretty(&read::<T>(answer)), expected, "{answer}");
    }

    #[test]
    fn json_output_is_the_daemons_answer_pretty_printed() {
        prints_as_sent::<Vec<ConnRow>>(&format!("[{ROW},{ANON}]"));
        prints_as_sent::<ConnDetail>(&ROW.replace(r#""user""#, r#""topics":["news"],"user""#));
        prints_as_sent::<EvictPreview>(&format!(
            r#"{{"connections":[{ROW}],"count":1,"dry_run":true}}"#
        ));
        prints_as_sent::<EvictResult>(r#"{"evicted":2,"ids":[2,1]}"#);
        prints_as_sent::<ReloadResult>(RELOAD);
        prints_as_sent::<ConfigResult>(
            r#"{"routes":[{"options":{"a":[1,2.5]},"path":"/ws"}],"server":{"admin_allowed_gid":null,"listen":"127.0.0.1:1"}}"#,
        );
        prints_as_sent::<Stats>(concat!(
            r#"{"bytes_in":145,"bytes_out":490,"closes":{"1000":3},"config_path":null,"#,
            r#""connections":{"by_route":{"/ws":3},"by_state":{"closing":0,"open":3},"ips":1,"total":3,"users":0},"#,
            r#""draining":false,"last_reload":{"at":"2026-11-22T07:14:11.855Z","error":null,"ok":true,"origin":"SIGHUP","restart_required":["server.listen"]},"#,
            r#""limits":[{"connections":3,"ip_utilisation":0.03,"max_connections":10000,"max_connections_per_ip":100,"max_connections_per_user":5,"max_message_bytes":65536,"max_subscriptions":100,"messages_per_second":50,"scope":"total","send_queue":1024,"top_ip_connections":3,"top_user_connections":0,"user_utilisation":0.0,"utilisation":0.0003}],"#,
            r#""messages_in":4,"messages_out":10,"publishes":{},"rate_limited":{"dropped":2},"rejections":{},"slow_consumer_closes":0,"topics":2,"uptime_s":40.031686025,"version":"0.1.0"}"#,
        ));
    }

    #[test]
    fn reload_text_as_documented() {
        assert_eq!(
            reload_text(&read(RELOAD)),
            concat!(
                "dry run: nothing changed\n",
                "  applies live: limits.enforce_on_reload: false -> true\n",
                "  applies live: limits.max_connections_per_ip: 100 -> 2\n",
                "  needs a restart: server.listen: \"127.0.0.1:18081\" -> \"127.0.0.1:18083\"\n",
                "  would close 1 connection(s) over a tightened cap (4006)\n",
            )
        );
        let none = r#"{"changes":{"applied":[],"restart_required":[],"routes_added":[],"routes_changed":[],"routes_removed":[]},"dry_run":false,"on_removed_routes":2,"over_cap":[{"cap":"user","closes":false,"id":7,"route":"/ws"}]}"#;
        assert_eq!(
            reload_text(&read(none)),
            concat!(
                "reloaded\n",
                "no changes\n",
                "  1 connection(s) over a tightened cap staying open (enforce_on_reload is off)\n",
                "  closing 2 connection(s) on removed routes (1001)\n",
            )
        );
    }

    #[test]
    fn evictions_read_as_documented() {
        let preview: EvictPreview = read(&format!(
            r#"{{"connections":[{ROW},{ANON}],"count":2,"dry_run":true}}"#
        ));
        assert_eq!(
            preview_text(&preview),
            concat!(
                "would evict 2 connection(s)\n",
                "ID  ROUTE     USER   IP         AGE    IDLE  IN  OUT  QUEUE  SUBS  RTT\n",
                "1   /ws       alice  10.1.2.3   5m30s  5.2s  1   3    0      2     0.2ms\n",
                "4   /ws/echo  -      192.0.2.7  2.0s   2.0s  0   0    0      0     -\n",
            )
        );
        assert_eq!(
            evicted_text(&read(r#"{"evicted":2,"ids":[2,1]}"#)),
            "evicted 2 connection(s)\n"
        );
    }
}
