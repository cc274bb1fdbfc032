//! Pure drawing: `&App` in, a frame out. Nothing here blocks, unwraps or
//! changes state. The parts: [`header`] (identity, gauges, banner,
//! sparklines), [`table`] (connections, footer), [`panes`] (detail, limits,
//! cluster, events) and [`popup`] (dialogs and help).

mod header;
mod panes;
mod popup;
mod table;

#[cfg(test)]
mod tests;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::Frame;

use super::app::{App, View};
use super::events::Tone;

/// Where each part goes.
pub struct Areas {
    pub header: Rect,
    pub sparks: Rect,
    pub table: Rect,
    pub footer: Rect,
    /// Beside the table on a wide screen, below it otherwise.
    pub detail: Rect,
    pub events: Rect,
}

/// Wide enough for the detail pane beside the table.
const WIDE: u16 = 110;
/// Tall enough for a third header line, taller sparklines and more events.
const TALL: u16 = 30;

pub fn layout(area: Rect) -> Areas {
    let tall = area.height >= TALL;
    let wide = area.width >= WIDE;
    let (head, sparks, events) = if tall { (3, 3, 9) } else { (2, 2, 5) };
    let detail = if wide { 0 } else { 2 };
    let [header, sparks, middle, footer, below, events] = Layout::vertical([
        Constraint::Length(head),
        Constraint::Length(sparks),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(detail),
        Constraint::Length(events),
    ])
    .areas(area);
    let (table, detail) = if wide {
        let [t, d] =
            Layout::horizontal([Constraint::Min(60), Constraint::Length(38)]).areas(middle);
        (t, d)
    } else {
        (middle, below)
    };
    Areas {
        header,
        sparks,
        table,
        footer,
        detail,
        events,
    }
}

/// How many connection rows fit at this terminal size (the table's title
/// and column header take two lines).
pub fn table_rows(width: u16, height: u16) -> usize {
    usize::from(
        layout(Rect::new(0, 0, width, height))
            .table
            .height
            .saturating_sub(2),
    )
}

pub fn render(app: &App, frame: &mut Frame) {
    let theme = Theme { color: app.color };
    let areas = layout(frame.area());
    header::render(app, &theme, frame, areas.header);
    header::sparks_or_banner(app, &theme, frame, areas.sparks);
    match app.view {
        View::Connections => table::render(app, &theme, frame, areas.table),
        View::Limits => panes::limits(app, &theme, frame, areas.table),
        View::Cluster => panes::cluster(app, &theme, frame, areas.table),
    }
    table::footer(app, &theme, frame, areas.footer);
    panes::detail(app, &theme, frame, areas.detail);
    panes::events(app, &theme, frame, areas.events);
    popup::render(app, &theme, frame);
}

/// Styles, with or without colour (`NO_COLOR`): without, emphasis is bold
/// and the selection is reverse video either way.
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn paint(&self, color: Color, fallback: Modifier) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new().add_modifier(fallback)
        }
    }

    pub fn tone(&self, tone: Tone) -> Style {
        match tone {
            Tone::Normal => Style::new(),
            Tone::Warn => self.paint(Color::Yellow, Modifier::BOLD),
            Tone::Bad => self.paint(Color::Red, Modifier::BOLD),
        }
    }

    pub fn title(&self) -> Style {
        self.paint(Color::Cyan, Modifier::empty())
            .add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        self.paint(Color::DarkGray, Modifier::empty())
    }

    pub fn good(&self) -> Style {
        self.paint(Color::Green, Modifier::empty())
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A value past its warning mark (queue depth past half the queue).
    pub fn hot(&self) -> Style {
        self.paint(Color::Yellow, Modifier::UNDERLINED)
            .add_modifier(Modifier::BOLD)
    }
}

/// Seconds as `5.1s`, `42s`, `2m5s`, `2h1m` (as `wsgate ctl` shows them).
pub fn span(secs: f64) -> String {
    crate::ctl::render::span(secs)
}

/// A rate in messages per second: `0`, `3.5`, `120`, `12k`; `-` unknown.
pub fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(v) if v < 0.05 => "0".into(),
        Some(v) if v < 10.0 => format!("{v:.1}"),
        Some(v) if v < 10_000.0 => format!("{v:.0}"),
        Some(v) => format!("{:.0}k", v / 1000.0),
    }
}

/// A text bar of `width` cells for `used / max`.
pub fn bar(used: usize, max: usize, width: usize) -> String {
    let frac = if max == 0 {
        0.0
    } else {
        (used as f64 / max as f64).clamp(0.0, 1.0)
    };
    let full = ((frac * width as f64).ceil() as usize).min(width);
    let full = if used > 0 { full.max(1) } else { 0 };
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}
