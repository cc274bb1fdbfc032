//! The console's state: everything the screen shows, and [`App::update`],
//! which takes one [`Msg`] and returns the commands to send.

use std::collections::HashSet;

use ratatui::crossterm::event::KeyEvent;
use wsgate_admin_proto::{ConnDetail, ConnRow, Event, Eviction, Stats};

use super::dialog::{reload_summary, Cmd, Dialog, Outcome};
use super::events::{EventLog, Tone};
use super::filter::{Members, Query};
use super::input::{self, Action, Mode};
use super::rates::{ConnRates, History};
use super::window::{window, Spec, Window};

/// Everything that happens to the console, in one stream.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize(u16, u16),
    Snapshot(Box<Stats>, Vec<ConnRow>),
    Event(Event),
    Command(Outcome),
    /// The watch stream is (again) up.
    Connected,
    /// The watch stream ended; why.
    Disconnected(String),
    Tick,
    /// SIGTERM or SIGHUP to the console: leave.
    Signal,
}

/// Which view the middle of the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Connections,
    Limits,
}

/// The watch connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Up,
    Down(String),
}

/// Where a drain started from this console is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    Idle,
    /// Sent, or seen in `stats.draining`: following it.
    Following,
    /// The daemon went away while draining.
    Stopped,
}

/// A message across the top: a command's result, or an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub tone: Tone,
    pub lines: Vec<String>,
    /// Ticks left before a good news banner goes; errors stay.
    ttl: Option<u32>,
}

/// How many ticks a good news banner stays.
const BANNER_TICKS: u32 = 8;

pub struct App {
    /// `NO_COLOR` unset.
    pub color: bool,
    pub socket: String,
    pub stats: Option<Box<Stats>>,
    /// The last snapshot's rows, for the local [`window`].
    all: Vec<ConnRow>,
    rates: ConnRates,
    pub history: History,
    pub members: Members,
    pub filter_text: String,
    pub spec: Spec,
    pub window: Window,
    /// The selection's position among the matches, and its id.
    pub cursor: usize,
    pub selected: Option<u64>,
    /// Other connections of the selected one's user and IP.
    pub peers: (usize, usize),
    pub detail: Option<ConnDetail>,
    pub view: View,
    pub dialog: Option<Dialog>,
    pub banner: Option<Banner>,
    pub link: Link,
    pub drain: Drain,
    pub events: EventLog,
    pub size: (u16, u16),
    pub quit: bool,
}

impl App {
    pub fn new(socket: String, color: bool, size: (u16, u16)) -> App {
        let mut app = App {
            color,
            socket,
            stats: None,
            all: Vec::new(),
            rates: ConnRates::default(),
            history: History::default(),
            members: Members::new(),
            filter_text: String::new(),
            spec: Spec::default(),
            window: Window::default(),
            cursor: 0,
            selected: None,
            peers: (0, 0),
            detail: None,
            view: View::Connections,
            dialog: None,
            banner: None,
            link: Link::Connecting,
            drain: Drain::Idle,
            events: EventLog::default(),
            size,
            quit: false,
        };
        app.resize(size);
        app
    }

    pub fn mode(&self) -> Mode {
        self.dialog.as_ref().map_or(Mode::Browse, Dialog::mode)
    }

    /// The row under the selection.
    pub fn selected_row(&self) -> Option<&super::window::Row> {
        let i = self.cursor.checked_sub(self.window.offset)?;
        self.window.rows.get(i)
    }

    /// The one way state changes. Returns what to send to the daemon.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Key(key) => self.act(input::action(self.mode(), key)),
            Msg::Resize(w, h) => {
                self.resize((w, h));
                self.refresh()
            }
            Msg::Snapshot(stats, rows) => self.snapshot(stats, rows),
            Msg::Event(e) => {
                self.events.push(&e, clock());
                Vec::new()
            }
            Msg::Command(outcome) => self.outcome(outcome),
            Msg::Connected => {
                self.link = Link::Up;
                if self.drain == Drain::Stopped {
                    self.drain = Drain::Idle;
                    self.banner = None;
                }
                Vec::new()
            }
            Msg::Disconnected(why) => {
                let draining = self.drain == Drain::Following
                    || self.stats.as_ref().is_some_and(|s| s.draining);
                if draining {
                    self.drain = Drain::Stopped;
                    self.say(
                        Tone::Warn,
                        "daemon stopped: the drain is over; waiting for it to come back",
                    );
                }
                self.link = Link::Down(why);
                Vec::new()
            }
            Msg::Tick => {
                if let Some(b) = &mut self.banner {
                    match &mut b.ttl {
                        Some(0) => self.banner = None,
                        Some(t) => *t -= 1,
                        None => {}
                    }
                }
                Vec::new()
            }
            Msg::Signal => {
                self.quit = true;
                Vec::new()
            }
        }
    }

    fn resize(&mut self, size: (u16, u16)) {
        self.size = size;
        self.spec.limit = super::draw::table_rows(size.0, size.1).max(1);
    }

    fn snapshot(&mut self, stats: Box<Stats>, rows: Vec<ConnRow>) -> Vec<Cmd> {
        self.link = Link::Up;
        self.rates.update(stats.uptime_s, &rows);
        self.history.update(&stats);
        if stats.draining && self.drain == Drain::Idle {
            self.drain = Drain::Following;
        }
        self.stats = Some(stats);
        self.all = rows;
        let mut cmds: Vec<Cmd> = self
            .spec
            .query
            .topics()
            .into_iter()
            .map(Cmd::Members)
            .collect();
        cmds.extend(self.refresh());
        cmds
    }

    /// Recomputes the page from the last snapshot, keeping the selection on
    /// the same connection id, or on its neighbour when it is gone.
    fn refresh(&mut self) -> Vec<Cmd> {
        let all = Spec {
            offset: 0,
            limit: usize::MAX,
            ..self.spec.clone()
        };
        let mut full = window(&self.all, &self.rates, &self.members, &all);
        let found = self
            .selected
            .and_then(|id| full.rows.iter().position(|r| r.conn.id == id));
        self.cursor = found
            .unwrap_or(self.cursor)
            .min(full.matched.saturating_sub(1));
        let limit = self.spec.limit;
        let mut offset = self.spec.offset.min(self.cursor);
        if self.cursor >= offset + limit {
            offset = self.cursor + 1 - limit;
        }
        self.spec.offset = offset;
        let rows = full.rows.drain(..).skip(offset).take(limit).collect();
        self.window = Window {
            rows,
            matched: full.matched,
            offset,
        };
        let before = self.selected;
        let row = self.selected_row().map(|r| r.conn.clone());
        self.selected = row.as_ref().map(|r| r.id);
        self.peers = row.map_or((0, 0), |r| {
            let same = |f: &dyn Fn(&ConnRow) -> bool| self.all.iter().filter(|c| f(c)).count();
            (
                r.user.as_ref().map_or(0, |u| {
                    same(&|c| c.user.as_ref() == Some(u)).saturating_sub(1)
                }),
                same(&|c| c.ip == r.ip).saturating_sub(1),
            )
        });
        match self.selected {
            Some(id) if before != Some(id) => {
                self.detail = None;
                vec![Cmd::Show(id)]
            }
            _ => Vec::new(),
        }
    }

    fn move_to(&mut self, cursor: usize) -> Vec<Cmd> {
        self.cursor = cursor;
        self.selected = None;
        self.refresh()
    }

    fn act(&mut self, action: Action) -> Vec<Cmd> {
        let page = self.spec.limit;
        match action {
            Action::Quit => self.quit = true,
            Action::Up => return self.move_to(self.cursor.saturating_sub(1)),
            Action::Down => return self.move_to(self.cursor + 1),
            Action::PageUp => return self.move_to(self.cursor.saturating_sub(page)),
            Action::PageDown => return self.move_to(self.cursor + page),
            Action::Home => return self.move_to(0),
            Action::End => return self.move_to(usize::MAX),
            Action::CycleSort => {
                self.spec.sort = self.spec.sort.next();
                return self.refresh();
            }
            Action::FlipOrder => {
                self.spec.descending = !self.spec.descending;
                return self.refresh();
            }
            Action::Limits => {
                self.view = match self.view {
                    View::Connections => View::Limits,
                    View::Limits => View::Connections,
                }
            }
            Action::Help => self.dialog = Some(Dialog::Help),
            Action::Filter => {
                self.dialog = Some(Dialog::Filter {
                    input: self.filter_text.clone(),
                    error: None,
                })
            }
            Action::Evict => {
                if let Some(r) = self.selected_row() {
                    self.dialog = Some(Dialog::Evict {
                        id: r.conn.id,
                        user: r.conn.user.clone(),
                        ip: r.conn.ip.clone(),
                        reason: String::new(),
                        typing: false,
                    });
                }
            }
            Action::EvictMatching => return self.evict_matching(),
            Action::Reload => {
                self.dialog = Some(Dialog::Reload { preview: None });
                return vec![Cmd::Reload { dry_run: true }];
            }
            Action::Drain => {
                self.dialog = Some(Dialog::Drain {
                    typed: String::new(),
                })
            }
            Action::Type(c) => {
                if let Some(s) = self.dialog.as_mut().and_then(Dialog::input) {
                    s.push(c);
                }
            }
            Action::Erase => {
                if let Some(s) = self.dialog.as_mut().and_then(Dialog::input) {
                    s.pop();
                }
            }
            Action::Reason => {
                if let Some(Dialog::Evict { typing, .. }) = &mut self.dialog {
                    *typing = true;
                }
            }
            Action::Cancel => return self.cancel(),
            Action::Submit => return self.submit(),
            Action::Yes => return self.yes(),
            Action::Nothing => {}
        }
        Vec::new()
    }

    fn evict_matching(&mut self) -> Vec<Cmd> {
        let q = &self.spec.query;
        if !q.words.is_empty() {
            self.say(
                Tone::Bad,
                "E sends the filter to the daemon: use selectors only (user: ip: route: topic: idle> age> queue>), no free text",
            );
        } else if q.filter.is_empty() {
            self.say(
                Tone::Bad,
                "E evicts what the filter selects: an empty filter is refused (set one with /)",
            );
        } else {
            let filter = q.filter.clone();
            self.dialog = Some(Dialog::EvictMatching {
                filter: filter.clone(),
                text: self.filter_text.clone(),
                count: None,
                typed: String::new(),
            });
            return vec![Cmd::EvictPreview(filter)];
        }
        Vec::new()
    }

    fn cancel(&mut self) -> Vec<Cmd> {
        match &mut self.dialog {
            Some(Dialog::Evict { typing, .. }) if *typing => *typing = false,
            // Esc in the filter prompt clears the filter.
            Some(Dialog::Filter { .. }) => return self.apply_filter(String::new()),
            _ => self.dialog = None,
        }
        Vec::new()
    }

    fn submit(&mut self) -> Vec<Cmd> {
        match self.dialog.take() {
            Some(Dialog::Filter { input, .. }) => return self.apply_filter(input),
            // Enter ends the reason; `y` still confirms.
            Some(Dialog::Evict {
                id,
                user,
                ip,
                reason,
                typing: true,
            }) => {
                self.dialog = Some(Dialog::Evict {
                    id,
                    user,
                    ip,
                    reason,
                    typing: false,
                })
            }
            Some(Dialog::EvictMatching {
                filter,
                count: Some(n),
                typed,
                text,
            }) => {
                if typed.trim() == n.to_string() || typed.trim() == "yes" {
                    self.say(Tone::Normal, &format!("evicting {n} connection(s)…"));
                    return vec![Cmd::Evict(Eviction::matching(filter))];
                }
                self.dialog = Some(Dialog::EvictMatching {
                    filter,
                    text,
                    count: Some(n),
                    typed: String::new(),
                });
            }
            Some(Dialog::Drain { typed }) if typed.trim() == "drain" => {
                self.drain = Drain::Following;
                self.say(Tone::Warn, "drain requested");
                return vec![Cmd::Drain];
            }
            Some(Dialog::Drain { .. }) => {
                self.dialog = Some(Dialog::Drain {
                    typed: String::new(),
                })
            }
            other => self.dialog = other,
        }
        Vec::new()
    }

    fn apply_filter(&mut self, text: String) -> Vec<Cmd> {
        match Query::parse(&text) {
            Ok(query) => {
                self.dialog = None;
                self.filter_text = text;
                self.spec.query = query;
                self.members.clear();
                let mut cmds: Vec<Cmd> = self
                    .spec
                    .query
                    .topics()
                    .into_iter()
                    .map(Cmd::Members)
                    .collect();
                cmds.extend(self.refresh());
                cmds
            }
            Err(e) => {
                self.dialog = Some(Dialog::Filter {
                    input: text,
                    error: Some(e),
                });
                Vec::new()
            }
        }
    }

    fn yes(&mut self) -> Vec<Cmd> {
        match &self.dialog {
            Some(Dialog::Evict { .. }) => self.yes_evict(),
            Some(Dialog::Reload { preview: Some(_) }) => {
                self.dialog = None;
                self.say(Tone::Normal, "reloading…");
                vec![Cmd::Reload { dry_run: false }]
            }
            _ => Vec::new(),
        }
    }

    fn yes_evict(&mut self) -> Vec<Cmd> {
        let Some(Dialog::Evict { id, reason, .. }) = self.dialog.take() else {
            return Vec::new();
        };
        let mut which = Eviction::conn(id);
        if !reason.trim().is_empty() {
            which = which.with_reason(reason.trim());
        }
        self.say(Tone::Normal, &format!("evicting connection {id}…"));
        vec![Cmd::Evict(which)]
    }

    fn outcome(&mut self, outcome: Outcome) -> Vec<Cmd> {
        match outcome {
            Outcome::Detail(Ok(d)) if Some(d.row.id) == self.selected => self.detail = Some(d),
            Outcome::Detail(_) => {}
            Outcome::Members(topic, Ok(ids)) => {
                self.members
                    .insert(topic, ids.into_iter().collect::<HashSet<_>>());
                return self.refresh();
            }
            Outcome::Members(_, Err(e)) => self.say(Tone::Bad, &e),
            Outcome::Preview(Ok(n)) => match &mut self.dialog {
                Some(Dialog::EvictMatching { .. }) if n == 0 => {
                    self.dialog = None;
                    self.say(Tone::Normal, "no connection matches the filter");
                }
                Some(Dialog::EvictMatching { count, .. }) => *count = Some(n),
                _ => {}
            },
            Outcome::Evicted(Ok(r)) => {
                let ids: Vec<String> = r.ids.iter().map(u64::to_string).collect();
                let text = format!("evicted {} connection(s): {}", r.evicted, ids.join(" "));
                self.say(Tone::Normal, &text);
            }
            Outcome::Reload(Ok(r)) if r.dry_run => {
                if let Some(Dialog::Reload { preview }) = &mut self.dialog {
                    *preview = Some(r);
                }
            }
            Outcome::Reload(Ok(r)) => {
                let mut lines = vec!["reloaded".to_string()];
                lines.extend(reload_summary(&r));
                self.banner(Tone::Normal, lines);
            }
            Outcome::Drain(Ok(())) => self.say(Tone::Warn, "draining"),
            Outcome::Preview(Err(e)) | Outcome::Evicted(Err(e)) | Outcome::Drain(Err(e)) => {
                self.dialog = None;
                self.say(Tone::Bad, &e);
            }
            Outcome::Reload(Err(e)) => {
                self.dialog = None;
                let mut lines = vec!["reload refused, nothing changed:".to_string()];
                lines.extend(e.lines().map(str::to_string));
                self.banner(Tone::Bad, lines);
            }
        }
        Vec::new()
    }

    fn say(&mut self, tone: Tone, text: &str) {
        self.banner(tone, vec![text.to_string()]);
    }

    fn banner(&mut self, tone: Tone, lines: Vec<String>) {
        let ttl = (tone == Tone::Normal).then_some(BANNER_TICKS);
        self.banner = Some(Banner { tone, lines, ttl });
    }
}

/// Now as `HH:MM:SS` UTC.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::console::testdata;
    use crate::console::window::Column;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};
    use wsgate_admin_proto::{Changes, Filter, ReloadResult};

    pub(crate) fn app_with_snapshot() -> App {
        let mut app = App::new("/tmp/admin.sock".into(), true, (120, 36));
        let (stats, rows) = testdata::snapshot();
        app.update(Msg::Connected);
        app.update(Msg::Snapshot(Box::new(stats), rows));
        app
    }

    pub(crate) fn keys(app: &mut App, text: &str) -> Vec<Cmd> {
        text.chars()
            .flat_map(|c| app.update(Msg::Key(key(KeyCode::Char(c)))))
            .collect()
    }

    pub(crate) fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn press(app: &mut App, code: KeyCode) -> Vec<Cmd> {
        app.update(Msg::Key(key(code)))
    }

    fn ids(app: &App) -> Vec<u64> {
        app.window.rows.iter().map(|r| r.conn.id).collect()
    }

    #[test]
    fn the_selection_stays_on_its_id_and_moves_to_the_neighbour() {
        let mut app = app_with_snapshot();
        assert_eq!(app.selected, Some(1));
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected, Some(2));
        // Sorted the other way, the selection follows connection 2.
        press(&mut app, KeyCode::Char('o'));
        assert_eq!(ids(&app), [4, 3, 2, 1]);
        assert_eq!((app.selected, app.cursor), (Some(2), 2));
        // Connection 2 closes: the row that takes its place is selected.
        let (stats, mut rows) = testdata::snapshot();
        rows.retain(|r| r.id != 2);
        let cmds = app.update(Msg::Snapshot(Box::new(stats), rows));
        assert_eq!(app.selected, Some(1));
        assert_eq!(cmds, [Cmd::Show(1)]);
        press(&mut app, KeyCode::Home);
        assert_eq!(app.selected, Some(4));
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected, Some(1));
    }

    #[test]
    fn sort_cycles_columns_and_the_page_follows_the_cursor() {
        let mut app = App::new("s".into(), true, (80, 24));
        app.spec.limit = 2;
        let (stats, rows) = testdata::snapshot();
        app.update(Msg::Snapshot(Box::new(stats), rows));
        assert_eq!(ids(&app), [1, 2]);
        press(&mut app, KeyCode::Char('G'));
        assert_eq!((ids(&app), app.window.offset), (vec![3, 4], 2));
        keys(&mut app, "s");
        assert_eq!(app.spec.sort, Column::Route);
        press(&mut app, KeyCode::PageUp);
        assert_eq!(app.window.offset, 1);
        press(&mut app, KeyCode::PageUp);
        assert_eq!((ids(&app), app.cursor), (vec![1, 2], 0));
    }

    #[test]
    fn the_filter_narrows_and_asks_for_topic_members() {
        let mut app = app_with_snapshot();
        keys(&mut app, "/user:alice");
        assert_eq!(app.mode(), Mode::Typing);
        press(&mut app, KeyCode::Enter);
        assert_eq!((ids(&app), app.window.matched), (vec![1, 2], 2));
        keys(&mut app, "/");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.window.matched, 4);
        // A bad term keeps the prompt open with the error.
        keys(&mut app, "/ip:ten");
        press(&mut app, KeyCode::Enter);
        assert!(
            matches!(&app.dialog, Some(Dialog::Filter { error: Some(e), .. }) if e.contains("ten"))
        );
        press(&mut app, KeyCode::Esc);
        keys(&mut app, "/topic:news");
        let cmds = press(&mut app, KeyCode::Enter);
        assert!(cmds.contains(&Cmd::Members("news".into())), "{cmds:?}");
        assert_eq!(app.window.matched, 0);
        app.update(Msg::Command(Outcome::Members("news".into(), Ok(vec![3]))));
        assert_eq!(ids(&app), [3]);
    }

    #[test]
    fn evicting_one_needs_a_yes_and_takes_a_reason() {
        let mut app = app_with_snapshot();
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        keys(&mut app, "e");
        assert_eq!(
            app.dialog,
            Some(Dialog::Evict {
                id: 3,
                user: Some("bob".into()),
                ip: "10.4.5.6".into(),
                reason: String::new(),
                typing: false
            })
        );
        // Keys that are no answer do nothing; `n` cancels.
        assert!(keys(&mut app, "x").is_empty());
        keys(&mut app, "n");
        assert_eq!(app.dialog, None);
        keys(&mut app, "er");
        keys(&mut app, "abuse");
        press(&mut app, KeyCode::Enter);
        let cmds = keys(&mut app, "y");
        assert_eq!(cmds, [Cmd::Evict(Eviction::conn(3).with_reason("abuse"))]);
        assert_eq!(app.dialog, None);
        app.update(Msg::Command(Outcome::Evicted(Ok(
            wsgate_admin_proto::EvictResult::new(vec![3]),
        ))));
        assert_eq!(
            app.banner.as_ref().map(|b| b.lines[0].as_str()),
            Some("evicted 1 connection(s): 3")
        );
    }

    #[test]
    fn evicting_matching_needs_a_filter_and_the_count_typed() {
        let mut app = app_with_snapshot();
        assert!(keys(&mut app, "E").is_empty());
        assert_eq!(app.dialog, None);
        assert!(app
            .banner
            .as_ref()
            .is_some_and(|b| b.lines[0].contains("empty filter is refused")));
        keys(&mut app, "/user:alice");
        press(&mut app, KeyCode::Enter);
        let alice = Filter {
            user: Some("alice".into()),
            ..Filter::default()
        };
        assert_eq!(keys(&mut app, "E"), [Cmd::EvictPreview(alice.clone())]);
        // Until the dry run answers, typing does nothing.
        assert!(keys(&mut app, "2").is_empty());
        app.update(Msg::Command(Outcome::Preview(Ok(2))));
        keys(&mut app, "3");
        assert!(press(&mut app, KeyCode::Enter).is_empty());
        assert!(matches!(app.dialog, Some(Dialog::EvictMatching { .. })));
        keys(&mut app, "2");
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            [Cmd::Evict(Eviction::matching(alice))]
        );
        // Free text cannot go to the daemon.
        keys(&mut app, "/");
        press(&mut app, KeyCode::Esc);
        keys(&mut app, "/alice");
        press(&mut app, KeyCode::Enter);
        assert!(keys(&mut app, "E").is_empty());
    }

    #[test]
    fn reload_is_a_dry_run_then_yes_and_errors_stay() {
        let mut app = app_with_snapshot();
        assert_eq!(keys(&mut app, "r"), [Cmd::Reload { dry_run: true }]);
        assert!(keys(&mut app, "y").is_empty(), "no yes before the dry run");
        let dry = ReloadResult {
            dry_run: true,
            changes: Changes::default(),
            over_cap: vec![],
            on_removed_routes: 0,
        };
        app.update(Msg::Command(Outcome::Reload(Ok(dry))));
        assert_eq!(keys(&mut app, "y"), [Cmd::Reload { dry_run: false }]);
        keys(&mut app, "r");
        let e = "config_error: /etc/wsgate.toml:20:19: limits.max_connections: must be at least 1";
        app.update(Msg::Command(Outcome::Reload(Err(e.into()))));
        assert_eq!(app.dialog, None);
        let banner = app.banner.clone().expect("a banner");
        assert_eq!(banner.tone, Tone::Bad);
        for _ in 0..BANNER_TICKS + 2 {
            app.update(Msg::Tick);
        }
        assert_eq!(app.banner, Some(banner), "errors stay");
    }

    #[test]
    fn drain_needs_the_word_and_is_followed_until_the_daemon_stops() {
        let mut app = app_with_snapshot();
        keys(&mut app, "D");
        keys(&mut app, "drian");
        assert!(press(&mut app, KeyCode::Enter).is_empty());
        keys(&mut app, "drain");
        assert_eq!(press(&mut app, KeyCode::Enter), [Cmd::Drain]);
        assert_eq!(app.drain, Drain::Following);
        app.update(Msg::Disconnected("the daemon closed the connection".into()));
        assert_eq!(app.drain, Drain::Stopped);
        assert!(app
            .banner
            .as_ref()
            .is_some_and(|b| b.lines[0].contains("daemon stopped")));
        assert!(matches!(app.link, Link::Down(_)));
        app.update(Msg::Connected);
        assert_eq!((app.drain, app.link.clone()), (Drain::Idle, Link::Up));
    }

    #[test]
    fn quitting() {
        for (code, modifiers) in [
            (KeyCode::Char('q'), KeyModifiers::NONE),
            (KeyCode::Esc, KeyModifiers::NONE),
            (KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            let mut app = app_with_snapshot();
            app.update(Msg::Key(KeyEvent::new(code, modifiers)));
            assert!(app.quit, "{code:?}");
        }
        let mut app = app_with_snapshot();
        app.update(Msg::Signal);
        assert!(app.quit);
    }
}
