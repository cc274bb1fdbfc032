//! The detail pane (the selected connection), the limits view, the
//! cluster view and the events pane.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use wsgate_admin_proto::{ClusterResult, NodeAnswer, Stats};

use super::{bar, rate, span, Theme};
use crate::console::app::App;
use crate::console::dialog::Detail;
use crate::console::events::Tone;

pub fn detail(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let Some(row) = app.selected_row() else {
        frame.render_widget(
            Paragraph::new("no connection selected").style(theme.dim()),
            area,
        );
        return;
    };
    let c = &row.conn;
    let detail = app.detail.as_ref().filter(|d| d.conn.row.id == c.id);
    let topics = match detail {
        Some(d) if d.conn.topics.is_empty() => "-".to_string(),
        Some(d) => d.conn.topics.join(", "),
        None => "…".to_string(),
    };
    let user = c.user.as_deref().unwrap_or("-");
    let (same_user, same_ip) = detail.map_or(("…".to_string(), "…".to_string()), |d| {
        (Detail::count(d.same_user), Detail::count(d.same_ip))
    });
    let rtt = c.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1}ms"));
    let rates = format!(
        "{}/{} per s",
        rate(row.rate.map(|r| r.msgs_in)),
        rate(row.rate.map(|r| r.msgs_out))
    );
    let wide = area.height > 2;
    let lines: Vec<Line> = if wide {
        let kv = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<12}"), theme.dim()),
                Span::raw(v),
            ])
        };
        vec![
            Line::styled(format!("connection {}", c.id), theme.title()),
            kv("route", c.route.clone()),
            kv("user", format!("{user} ({same_user} other conns)")),
            kv("ip", format!("{} ({same_ip} other conns)", c.ip)),
            kv("connected", c.connected_at.clone()),
            kv(
                "age/idle",
                format!("{} / {}", span(c.age_s), span(c.idle_s)),
            ),
            kv(
                "msgs in/out",
                format!("{} / {} ({rates})", c.msgs_in, c.msgs_out),
            ),
            kv("bytes", format!("{} / {}", c.bytes_in, c.bytes_out)),
            kv("queue", c.queue.to_string()),
            kv("rtt", rtt),
            kv("topics", format!("{}: {topics}", c.subscriptions)),
        ]
    } else {
        vec![
            Line::from(vec![
                Span::styled(format!("#{} ", c.id), theme.title()),
                Span::raw(format!(
                    "{user} {} {} · since {} · in/out {}/{} · bytes {}/{} · rtt {rtt}",
                    c.ip, c.route, c.connected_at, c.msgs_in, c.msgs_out, c.bytes_in, c.bytes_out
                )),
            ]),
            Line::raw(format!(
                "topics {topics} · same user {same_user} more · same ip {same_ip} more"
            )),
        ]
    };
    let block = if wide {
        Block::new().borders(Borders::LEFT | Borders::TOP)
    } else {
        Block::new()
    };
    let text = Paragraph::new(lines).block(block);
    let text = if wide {
        text.wrap(Wrap { trim: true })
    } else {
        text
    };
    frame.render_widget(text, area);
}

pub fn limits(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::styled(" Limits in force ", theme.title()));
    let Some(stats) = &app.stats else {
        frame.render_widget(Paragraph::new("").block(block), area);
        return;
    };
    let header = Row::new([
        "SCOPE",
        "CONNECTIONS",
        "TOP IP",
        "TOP USER",
        "MAX BYTES",
        "MSG/S",
        "QUEUE",
        "SUBS",
    ])
    .style(theme.title());
    let rows = stats.limits.iter().map(|l| {
        Row::new([
            l.scope.clone(),
            format!(
                "{} {}/{}",
                bar(l.connections, l.max_connections, 6),
                l.connections,
                l.max_connections
            ),
            format!(
                "{} {}/{}",
                bar(l.top_ip_connections, l.max_connections_per_ip, 4),
                l.top_ip_connections,
                l.max_connections_per_ip
            ),
            format!(
                "{} {}/{}",
                bar(l.top_user_connections, l.max_connections_per_user, 4),
                l.top_user_connections,
                l.max_connections_per_user
            ),
            l.max_message_bytes.to_string(),
            l.messages_per_second.to_string(),
            l.send_queue.to_string(),
            l.max_subscriptions.to_string(),
        ])
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(17),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(4),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// The cluster view: a row of `stats` for each node, the asked one first
/// (marked `*`), and how many answered; or why there is none.
pub fn cluster(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::styled(" Cluster: every node ", theme.title()));
    let result = match &app.cluster {
        None => {
            let text = Line::styled("asking the cluster…", theme.dim());
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
        Some(Err(e)) => {
            let text = Line::styled(e.clone(), theme.tone(Tone::Warn));
            let text = Paragraph::new(text).block(block).wrap(Wrap { trim: true });
            frame.render_widget(text, area);
            return;
        }
        Some(Ok(result)) => result,
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [summary, table] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let line = Line::from(vec![
        Span::raw(cluster_summary(result)),
        Span::styled("  (* the node asked)", theme.dim()),
    ]);
    frame.render_widget(Paragraph::new(line), summary);
    let header = Row::new([
        "NODE",
        "STATE",
        "CONNS",
        "TOPICS",
        "MSGS IN/OUT",
        "NATS",
        "DRAINING",
        "VERSION",
    ])
    .style(theme.title());
    let rows = result
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| node_row(node, i == 0, theme));
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(13),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(7),
    ];
    let table_widget = Table::new(rows, widths).header(header).column_spacing(1);
    frame.render_widget(table_widget, table);
}

/// `3 nodes, 1 answered; not: ws-b, ws-c`.
fn cluster_summary(result: &ClusterResult) -> String {
    let silent: Vec<&str> = result
        .nodes
        .iter()
        .filter(|n| !n.ok)
        .map(|n| n.node.as_str())
        .collect();
    let answered = result.nodes.len() - silent.len();
    let mut text = format!("{} nodes, {answered} answered", result.nodes.len());
    if !silent.is_empty() {
        text.push_str(&format!("; not: {}", silent.join(", ")));
    }
    text
}

/// One node's row: its stats when it answered (`?` for a result that is
/// not `stats`), its error in short otherwise.
fn node_row<'a>(node: &'a NodeAnswer, asked: bool, theme: &Theme) -> Row<'a> {
    let name = format!("{} {}", if asked { "*" } else { " " }, node.node);
    let stats = node
        .result
        .as_ref()
        .filter(|_| node.ok)
        .map(|r| <Stats as serde::Deserialize>::deserialize(r).ok());
    let (state, state_style) = match (&node.error, node.ok) {
        (_, true) => ("ok".to_string(), theme.good()),
        (Some(e), false) => {
            let state = node_state(&e.message);
            let style = if state == "left" {
                theme.dim()
            } else {
                theme.tone(Tone::Bad)
            };
            (state, style)
        }
        (None, false) => ("no answer".to_string(), theme.tone(Tone::Bad)),
    };
    let mut cells = vec![Cell::from(name), Cell::from(state).style(state_style)];
    match stats {
        Some(Some(s)) => {
            let (nats, nats_style) = match &s.cluster {
                Some(c) if c.nats_connected => ("connected", theme.good()),
                Some(_) => ("not connected", theme.hot()),
                None => ("-", Style::new()),
            };
            let (draining, draining_style) = if s.draining {
                ("yes", theme.hot())
            } else {
                ("no", Style::new())
            };
            cells.extend([
                Cell::from(s.connections.total.to_string()),
                Cell::from(s.topics.to_string()),
                Cell::from(format!("{}/{}", s.messages_in, s.messages_out)),
                Cell::from(nats).style(nats_style),
                Cell::from(draining).style(draining_style),
                Cell::from(s.version),
            ]);
        }
        // Answered, but not with `stats` as this console reads it.
        Some(None) => cells.extend((0..6).map(|_| Cell::from("?"))),
        None => cells.extend((0..6).map(|_| Cell::from("-"))),
    }
    Row::new(cells)
}

/// A node's error in short: `no answer`, `gone 9s`, `left`; any other as
/// it came.
fn node_state(message: &str) -> String {
    if message.starts_with("no answer") {
        "no answer".to_string()
    } else if let Some(silent) = message.strip_prefix("gone: no announcement for ") {
        format!("gone {silent}")
    } else if message.starts_with("gone") {
        "gone".to_string()
    } else if message.starts_with("left") {
        "left".to_string()
    } else {
        message.to_string()
    }
}

pub fn events(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::styled(" Events, newest first ", theme.title()));
    let lines: Vec<Line> = app
        .events
        .lines()
        .take(usize::from(area.height))
        .map(|l| {
            Line::from(vec![
                Span::styled(format!("{} ", l.at), theme.dim()),
                Span::styled(l.text(), theme.tone(l.tone)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
