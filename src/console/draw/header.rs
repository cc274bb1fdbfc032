//! The top of the screen: who the daemon is, its gauges and last reload;
//! below it a banner (a command's result, the link being down) or else the
//! sparklines.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

use super::{bar, span, Theme};
use crate::console::app::{App, Drain, Link};
use crate::console::events::Tone;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(stats) = &app.stats else {
        let text = format!("wsgate console · {} · waiting for the daemon", app.socket);
        frame.render_widget(Paragraph::new(text).style(theme.title()), area);
        return;
    };
    let mut first = vec![
        Span::styled(format!("wsgate {}", stats.version), theme.title()),
        Span::raw(format!(" up {}", span(stats.uptime_s))),
        Span::styled(" config ", theme.dim()),
        Span::raw(
            stats
                .config_path
                .as_deref()
                .unwrap_or("(built-in)")
                .to_string(),
        ),
        Span::styled(" reload ", theme.dim()),
    ];
    match &stats.last_reload {
        None => first.push(Span::raw("-")),
        Some(r) if r.ok => first.push(Span::styled(
            format!("ok {} ({})", time_of(&r.at), r.origin),
            theme.good(),
        )),
        Some(r) => first.push(Span::styled(
            format!(
                "FAILED {} ({}): {}",
                time_of(&r.at),
                r.origin,
                r.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
            ),
            theme.tone(Tone::Bad),
        )),
    }
    let c = &stats.connections;
    let total = stats.limits.iter().find(|l| l.scope == "total");
    let max = total.map_or(0, |l| l.max_connections);
    let mut second = vec![
        Span::raw(format!("conns {}/{max} ", c.total)),
        Span::styled(bar(c.total, max, 10), theme.good()),
        Span::raw(format!("  IPs {}  users {}", c.ips, c.users)),
    ];
    if let Some(node) = &stats.cluster {
        second.push(Span::styled("  node ", theme.dim()));
        second.push(Span::raw(node.node.clone()));
        second.push(if node.nats_connected {
            Span::styled(" NATS connected", theme.dim())
        } else {
            Span::styled(" NATS not connected", theme.hot())
        });
    }
    if app.drain == Drain::Stopped {
        second.insert(0, Span::styled("DAEMON STOPPED  ", theme.tone(Tone::Bad)));
    } else if stats.draining || app.drain == Drain::Following {
        let left = app
            .drain_left()
            .map_or(String::new(), |s| format!(", {} left", span(s)));
        second.insert(
            0,
            Span::styled(
                format!(
                    "DRAINING (/readyz 503): {} connections remaining{left}  ",
                    c.total
                ),
                theme.tone(Tone::Bad),
            ),
        );
    }
    let routes: Vec<Span> = stats
        .limits
        .iter()
        .filter(|l| l.scope != "total")
        .flat_map(|l| {
            [
                Span::raw(format!(
                    "  {} {}/{} ",
                    l.scope, l.connections, l.max_connections
                )),
                Span::styled(bar(l.connections, l.max_connections, 6), theme.good()),
            ]
        })
        .collect();
    let mut lines = vec![Line::from(first), Line::from(second)];
    if area.height >= 3 {
        lines.push(Line::from(routes));
    } else if let Some(last) = lines.last_mut() {
        last.spans.extend(routes);
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// `2026-11-22T07:14:11.855Z` as `07:14:11`.
fn time_of(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

pub fn sparks_or_banner(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    match &app.link {
        Link::Down(_) if app.drain == Drain::Stopped => {}
        Link::Down(why) => lines.push(Line::styled(
            format!("daemon unreachable ({why}); reconnecting…"),
            theme.tone(Tone::Bad),
        )),
        Link::Connecting if app.stats.is_none() => {
            lines.push(Line::styled("connecting…", theme.dim()))
        }
        _ => {}
    }
    if let Some(b) = &app.banner {
        let style = theme.tone(b.tone);
        lines.extend(b.lines.iter().map(|l| Line::styled(l.clone(), style)));
    }
    if !lines.is_empty() {
        frame.render_widget(Paragraph::new(lines), area);
        return;
    }
    let h = &app.history;
    let last = |d: &std::collections::VecDeque<u64>| d.back().copied().unwrap_or(0);
    let series = [
        ("conns", &h.connections),
        ("in/s", &h.msgs_in),
        ("out/s", &h.msgs_out),
        ("rej/s", &h.rejections),
        ("closes/s", &h.closes),
    ];
    let cells = Layout::horizontal([Constraint::Ratio(1, 5); 5]).split(area);
    for ((name, data), cell) in series.iter().zip(cells.iter()) {
        let [label, spark] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(*cell);
        let text = format!("{name} {}", last(data));
        frame.render_widget(Paragraph::new(text).style(theme.dim()), label);
        let width = usize::from(spark.width.saturating_sub(1));
        let shown: Vec<u64> = data
            .iter()
            .skip(data.len().saturating_sub(width))
            .copied()
            .collect();
        let style = if *name == "rej/s" && last(data) > 0 {
            theme.tone(Tone::Warn)
        } else {
            theme.good()
        };
        frame.render_widget(Sparkline::default().data(&shown).style(style), spark);
    }
}
