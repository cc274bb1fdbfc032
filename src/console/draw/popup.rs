//! Dialogs over the screen: help, the filter prompt, the confirmations of
//! evict, evict matching, reload and drain.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::Theme;
use crate::console::app::App;
use crate::console::dialog::{reload_summary, Dialog};
use crate::console::events::Tone;
use crate::console::input::KEYS;

/// The filter syntax, in one line for the prompt and the help.
pub const SYNTAX: &str =
    "user:ID ip:ADDR|CIDR route:PATH topic:NAME idle>S age>S queue>N, or free text";

pub fn render(app: &App, theme: &Theme, frame: &mut Frame) {
    let Some(dialog) = &app.dialog else {
        return;
    };
    let (title, lines): (&str, Vec<Line>) = match dialog {
        Dialog::Help => {
            let mut lines: Vec<Line> = KEYS
                .iter()
                .map(|(k, what)| Line::raw(format!("{k:<14}{what}")))
                .collect();
            lines.push(Line::raw(""));
            lines.push(Line::styled("filter:", theme.title()));
            lines.push(Line::raw(SYNTAX));
            lines.push(Line::styled("any key closes this help", theme.dim()));
            ("Keys", lines)
        }
        Dialog::Filter { input, error } => {
            let mut lines = vec![
                Line::raw(format!("/{input}▏")),
                Line::styled(SYNTAX, theme.dim()),
            ];
            if let Some(e) = error {
                lines.push(Line::styled(e.clone(), theme.tone(Tone::Bad)));
            }
            lines.push(Line::styled(
                "Enter applies · Esc clears the filter",
                theme.dim(),
            ));
            ("Filter", lines)
        }
        Dialog::Evict {
            id,
            user,
            ip,
            reason,
            typing,
        } => {
            let who = format!(
                "Evict connection {id} (user {}, ip {ip})?",
                user.as_deref().unwrap_or("-")
            );
            let reason_line = if *typing {
                format!("reason: {reason}▏")
            } else if reason.is_empty() {
                "reason: (default: evicted by an operator)".to_string()
            } else {
                format!("reason: {reason}")
            };
            let keys = if *typing {
                "Enter done · Esc back"
            } else {
                "y evict (close 4000) · r type a reason · n cancel"
            };
            (
                "Evict",
                vec![
                    Line::styled(who, theme.tone(Tone::Warn)),
                    Line::raw(reason_line),
                    Line::styled(keys, theme.dim()),
                ],
            )
        }
        Dialog::EvictMatching {
            text, count, typed, ..
        } => {
            let mut lines = vec![Line::styled(
                format!("Evict every connection matching `{text}`?"),
                theme.tone(Tone::Warn),
            )];
            match count {
                None => lines.push(Line::styled("counting (dry run)…", theme.dim())),
                Some(n) => {
                    lines.push(Line::raw(format!(
                        "{n} connection(s) would close with 4000."
                    )));
                    lines.push(Line::raw(format!("type {n} or yes, then Enter: {typed}▏")));
                }
            }
            lines.push(Line::styled("Esc cancels", theme.dim()));
            ("Evict matching", lines)
        }
        Dialog::Reload { preview: None } => ("Reload", vec![Line::styled("dry run…", theme.dim())]),
        Dialog::Reload { preview: Some(r) } => {
            let mut lines = vec![Line::styled("The dry run says:", theme.title())];
            lines.extend(reload_summary(r).into_iter().map(Line::raw));
            lines.push(Line::styled("y apply · n cancel", theme.dim()));
            ("Reload", lines)
        }
        Dialog::Drain { typed } => (
            "Drain",
            vec![
                Line::styled(
                    "Drain: every connection closes (1001) and the daemon exits.",
                    theme.tone(Tone::Bad),
                ),
                Line::raw(format!("type drain, then Enter: {typed}▏")),
                Line::styled("Esc cancels", theme.dim()),
            ],
        ),
    };
    let width = frame.area().width.saturating_sub(4).min(84);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let height = u16::try_from(rows + 2)
        .unwrap_or(u16::MAX)
        .min(frame.area().height);
    let area = centered(frame.area(), width, height);
    frame.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Line::styled(format!(" {title} "), theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(v);
    h
}
