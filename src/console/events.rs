//! The events pane: the `watch` stream's events as lines, newest first,
//! bounded; a burst of the same rejection is one line with a count.

use std::collections::VecDeque;

use wsgate_admin_proto::Event;

/// How many lines the pane keeps.
pub const KEEP: usize = 200;

/// How a line reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Normal,
    Warn,
    Bad,
}

/// One line of the pane.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Wall-clock time (UTC) of the first event of the line.
    pub at: String,
    pub tone: Tone,
    /// The text before the count, and after it (`429 per_ip`, `from ...`).
    head: String,
    tail: String,
    /// Events of the same kind that follow one another fold into one line.
    fold: Option<String>,
    pub count: u64,
}

impl Line {
    /// `429 per_ip x37 from 10.1.2.3 on /ws`.
    pub fn text(&self) -> String {
        let count = if self.count > 1 {
            format!(" x{}", self.count)
        } else {
            String::new()
        };
        let sep = if self.tail.is_empty() { "" } else { " " };
        format!("{}{count}{sep}{}", self.head, self.tail)
    }
}

/// The pane's lines, newest first.
#[derive(Debug, Default)]
pub struct EventLog {
    lines: VecDeque<Line>,
}

impl EventLog {
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter()
    }

    /// Adds an event (snapshots are not events of the pane).
    pub fn push(&mut self, event: &Event, at: String) {
        let (tone, head, tail, fold) = match event {
            Event::Snapshot { .. } => return,
            Event::Connected {
                id,
                route,
                ip,
                user,
            } => (
                Tone::Normal,
                format!("+ {id} {route}"),
                format!("{} {ip}", user.as_deref().unwrap_or("-")),
                None,
            ),
            Event::Closed {
                id,
                route,
                code,
                reason,
            } => (
                if *code >= 4000 {
                    Tone::Warn
                } else {
                    Tone::Normal
                },
                format!("- {id} {route} {code}"),
                reason.clone(),
                None,
            ),
            Event::Rejected {
                route,
                ip,
                status,
                reason,
            } => (
                Tone::Warn,
                format!("{status} {reason}"),
                format!("from {ip} on {route}"),
                Some(format!("{status} {reason} {ip} {route}")),
            ),
            Event::Evicted { ids, reason } => (
                Tone::Warn,
                format!("evicted {} ({reason})", ids_text(ids)),
                String::new(),
                None,
            ),
            Event::Reloaded {
                ok: true, origin, ..
            } => (
                Tone::Normal,
                format!("reloaded ({origin})"),
                String::new(),
                None,
            ),
            Event::Reloaded { origin, error, .. } => (
                Tone::Bad,
                format!("reload refused ({origin})"),
                error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
                    .to_string(),
                None,
            ),
            Event::Lagged { missed } => (
                Tone::Bad,
                format!("{missed} events missed"),
                String::new(),
                None,
            ),
        };
        if let (Some(key), Some(front)) = (&fold, self.lines.front_mut()) {
            if front.fold.as_ref() == Some(key) {
                front.count += 1;
                return;
            }
        }
        if self.lines.len() == KEEP {
            self.lines.pop_back();
        }
        self.lines.push_front(Line {
            at,
            tone,
            head,
            tail,
            fold,
            count: 1,
        });
    }
}

fn ids_text(ids: &[u64]) -> String {
    match ids {
        [one] => format!("connection {one}"),
        many => format!("{} connections", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(ip: &str) -> Event {
        Event::Rejected {
            route: "/ws".into(),
            ip: ip.into(),
            status: 429,
            reason: "per_ip".into(),
        }
    }

    fn texts(log: &EventLog) -> Vec<String> {
        log.lines().map(Line::text).collect()
    }

    #[test]
    fn a_burst_of_one_rejection_is_one_line_with_a_count() {
        let mut log = EventLog::default();
        for _ in 0..37 {
            log.push(&rejected("10.1.2.3"), "07:00:00".into());
        }
        log.push(&rejected("10.9.9.9"), "07:00:01".into());
        log.push(&rejected("10.1.2.3"), "07:00:02".into());
        assert_eq!(
            texts(&log),
            [
                "429 per_ip from 10.1.2.3 on /ws",
                "429 per_ip from 10.9.9.9 on /ws",
                "429 per_ip x37 from 10.1.2.3 on /ws",
            ]
        );
    }

    #[test]
    fn events_read_as_lines_newest_first_and_bounded() {
        let mut log = EventLog::default();
        log.push(&Event::Lagged { missed: 92 }, "t".into());
        log.push(
            &Event::Closed {
                id: 3,
                route: "/ws".into(),
                code: 4000,
                reason: "abuse".into(),
            },
            "t".into(),
        );
        log.push(
            &Event::Evicted {
                ids: vec![3],
                reason: "abuse".into(),
            },
            "t".into(),
        );
        log.push(
            &Event::Reloaded {
                ok: false,
                origin: "admin".into(),
                error: Some("wsgate.toml:3:1: bad\nmore".into()),
            },
            "t".into(),
        );
        assert_eq!(
            texts(&log),
            [
                "reload refused (admin) wsgate.toml:3:1: bad",
                "evicted connection 3 (abuse)",
                "- 3 /ws 4000 abuse",
                "92 events missed",
            ]
        );
        for i in 0..KEEP as u64 + 5 {
            log.push(&Event::Lagged { missed: i }, "t".into());
        }
        assert_eq!(log.lines().count(), KEEP);
    }
}
