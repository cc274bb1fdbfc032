//! The detail pane (the selected connection), the limits view and the
//! events pane.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{bar, rate, span, Theme};
use crate::console::app::App;
use crate::console::dialog::Detail;

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
