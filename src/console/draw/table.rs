//! The connection table and the footer under it.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{rate, span, Theme};
use crate::console::app::{App, View};
use crate::console::window::Column;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let order = if app.spec.descending { "▼" } else { "▲" };
    let header = Row::new(Column::ALL.iter().map(|c| {
        let mut title = c.title().to_string();
        if *c == app.spec.sort {
            title.push_str(order);
        }
        Cell::from(title)
    }))
    .style(theme.title());
    let rows = app.window.rows.iter().enumerate().map(|(i, r)| {
        let c = &r.conn;
        let hot = queue_is_deep(app, &c.route, c.queue);
        let cells = vec![
            Cell::from(c.id.to_string()),
            Cell::from(c.route.clone()),
            Cell::from(c.user.clone().unwrap_or_else(|| "-".into())),
            Cell::from(c.ip.clone()),
            Cell::from(span(c.age_s)),
            Cell::from(span(c.idle_s)),
            Cell::from(rate(r.rate.map(|r| r.msgs_in))),
            Cell::from(rate(r.rate.map(|r| r.msgs_out))),
            Cell::from(c.queue.to_string()).style(if hot {
                theme.hot()
            } else {
                ratatui::style::Style::new()
            }),
            Cell::from(c.subscriptions.to_string()),
            Cell::from(c.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1}ms"))),
        ];
        let row = Row::new(cells);
        if app.window.offset + i == app.cursor {
            row.style(theme.selected())
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(5),
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Fill(3),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(6),
    ];
    let title = Line::from(vec![
        Span::styled(" Connections ", theme.title()),
        Span::styled(
            if app.filter_text.is_empty() {
                String::new()
            } else {
                format!("filter: {} ", app.filter_text)
            },
            theme.dim(),
        ),
    ]);
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::new().borders(Borders::TOP).title(title));
    frame.render_widget(table, area);
}

/// Whether a queue is past half of its route's `send_queue`.
fn queue_is_deep(app: &App, route: &str, queue: usize) -> bool {
    let Some(stats) = &app.stats else {
        return false;
    };
    let scope = |s: &str| stats.limits.iter().find(|l| l.scope == s);
    scope(route)
        .or_else(|| scope("total"))
        .is_some_and(|l| queue * 2 > l.send_queue)
}

pub fn footer(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let w = &app.window;
    let shown = if w.rows.is_empty() {
        "no rows".to_string()
    } else {
        format!("rows {}-{}", w.offset + 1, w.offset + w.rows.len())
    };
    let what = match app.view {
        View::Connections => format!("{} match · {shown}", w.matched),
        View::Limits => "limits".to_string(),
        View::Cluster => "cluster".to_string(),
    };
    let total = app.stats.as_ref().map_or(0, |s| s.connections.total);
    let line = Line::from(vec![
        Span::raw(format!("{what} of {total} ")),
        Span::styled(
            format!(
                "· sort {} {} · ? help · q quit",
                sort_name(app.spec.sort),
                if app.spec.descending { "desc" } else { "asc" }
            ),
            theme.dim(),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn sort_name(c: Column) -> &'static str {
    c.title()
}
