//! Keys to actions. What a key means depends on the mode: browsing, typing
//! into a prompt, answering a confirmation, or reading the help.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What the screen is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// A prompt takes the keys (filter, reason, a count, `drain`).
    Typing,
    /// A yes/no question.
    Confirm,
    Help,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    CycleSort,
    FlipOrder,
    Filter,
    Evict,
    EvictMatching,
    Reload,
    Drain,
    Limits,
    /// The cluster view (every node's stats) or back to the table.
    Cluster,
    Help,
    Type(char),
    Erase,
    Submit,
    Cancel,
    Yes,
    /// In the eviction dialog: type a reason.
    Reason,
    Nothing,
}

/// The keys, for the help overlay: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓ j k", "move the selection"),
    ("PgUp PgDn", "a page up or down"),
    ("Home End", "first or last connection"),
    ("s", "sort by the next column"),
    ("o", "flip the sort order"),
    ("/", "filter (Enter applies, Esc clears)"),
    ("e", "evict the selected connection"),
    ("E", "evict every connection the filter matches"),
    ("r", "reload the config (dry run first)"),
    ("D", "drain the daemon (type `drain`)"),
    ("l", "limits view / connection table"),
    ("c", "cluster view (every node) / table"),
    ("?", "this help"),
    ("q Esc Ctrl-C", "quit"),
];

pub fn action(mode: Mode, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    match mode {
        Mode::Browse => browse(key.code),
        Mode::Typing => match key.code {
            KeyCode::Char(c) => Action::Type(c),
            KeyCode::Backspace => Action::Erase,
            KeyCode::Enter => Action::Submit,
            KeyCode::Esc => Action::Cancel,
            _ => Action::Nothing,
        },
        Mode::Confirm => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Action::Yes,
            KeyCode::Char('r') | KeyCode::Tab => Action::Reason,
            KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q') => Action::Cancel,
            _ => Action::Nothing,
        },
        Mode::Help => Action::Cancel,
    }
}

fn browse(code: KeyCode) -> Action {
    match code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('o') => Action::FlipOrder,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('e') => Action::Evict,
        KeyCode::Char('E') => Action::EvictMatching,
        KeyCode::Char('r') => Action::Reload,
        KeyCode::Char('D') => Action::Drain,
        KeyCode::Char('l') => Action::Limits,
        KeyCode::Char('c') => Action::Cluster,
        KeyCode::Char('?') => Action::Help,
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_mean_what_the_mode_says() {
        assert_eq!(action(Mode::Browse, key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(
            action(Mode::Typing, key(KeyCode::Char('q'))),
            Action::Type('q')
        );
        assert_eq!(
            action(Mode::Confirm, key(KeyCode::Char('q'))),
            Action::Cancel
        );
        assert_eq!(action(Mode::Confirm, key(KeyCode::Char('y'))), Action::Yes);
        assert_eq!(action(Mode::Typing, key(KeyCode::Esc)), Action::Cancel);
        assert_eq!(action(Mode::Help, key(KeyCode::Char('x'))), Action::Cancel);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(Mode::Typing, ctrl_c), Action::Quit);
        assert_eq!(action(Mode::Browse, key(KeyCode::Char('j'))), Action::Down);
    }

    #[test]
    fn c_is_the_cluster_view_when_browsing_only() {
        let c = key(KeyCode::Char('c'));
        assert_eq!(action(Mode::Browse, c), Action::Cluster);
        assert_eq!(action(Mode::Typing, c), Action::Type('c'));
        assert_eq!(action(Mode::Confirm, c), Action::Nothing);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(Mode::Browse, ctrl_c), Action::Quit);
    }
}
