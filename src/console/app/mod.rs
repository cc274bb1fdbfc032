//! The console's state: everything the screen shows, and [`App::update`],
//! which takes one [`Msg`] and returns the commands to send.

use ratatui::crossterm::event::KeyEvent;
use wsgate_admin_proto::{ClusterResult, ConnRow, Event, Stats};

mod dialogs;

use super::dialog::{Cmd, Detail, Dialog, Outcome};
use super::events::{EventLog, Tone};
use super::filter::Members;
use super::input::{self, Action, Mode};
use super::rates::{ConnRates, History};
use super::window::{daemon_page, window, Spec, Window};
use wsgate_admin_proto::WatchSpec;

/// Everything that happens to the console, in one stream.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize(u16, u16),
    Snapshot(Snapshot),
    Event(Event),
    Command(Outcome),
    /// The watch stream is (again) up; `windows`: its snapshots show the
    /// window the console asks for (else every connection).
    Connected {
        windows: bool,
    },
    /// The daemon refused a change of the watch's window.
    Refused(String),
    /// The watch stream ended; why.
    Disconnected(String),
    Tick,
    /// SIGTERM or SIGHUP to the console: leave.
    Signal,
}

/// A `watch` snapshot: the stats, and the rows from `offset` of the
/// `matched` connections its window selects.
#[derive(Debug)]
pub struct Snapshot {
    pub stats: Box<Stats>,
    pub matched: usize,
    pub offset: usize,
    pub rows: Vec<ConnRow>,
}

/// Which view the middle of the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Connections,
    Limits,
    /// Every node of the daemon's cluster, asked with every snapshot.
    Cluster,
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
    pub(super) ttl: Option<u32>,
}

/// How many ticks a good news banner stays.
pub(super) const BANNER_TICKS: u32 = 8;

/// How many ticks the cluster view waits for its `stats` before it takes
/// the request as lost (dropped from a full outbox) and asks again.
pub(super) const CLUSTER_TICKS: u32 = 30;

pub struct App {
    /// `NO_COLOR` unset.
    pub color: bool,
    pub socket: String,
    pub stats: Option<Box<Stats>>,
    /// The last snapshot's rows: every connection (for the local
    /// [`window`]), or the daemon's page.
    all: Vec<ConnRow>,
    /// The daemon's page: (matched, offset); `None` when `all` is every
    /// connection the selectors match.
    page: Option<(usize, usize)>,
    /// Whether the daemon's `watch` takes windows.
    windows: bool,
    rates: ConnRates,
    pub history: History,
    pub members: Members,
    pub filter_text: String,
    pub spec: Spec,
    pub window: Window,
    /// The selection's position among the matches, and its id.
    pub cursor: usize,
    pub selected: Option<u64>,
    /// The selected connection's topics and peers, asked for with every
    /// snapshot.
    pub detail: Option<Detail>,
    pub view: View,
    /// The cluster view's last answer: each node's `stats`, or why there
    /// are none (e.g. the daemon is not in a cluster).
    pub cluster: Option<Result<ClusterResult, String>>,
    /// Ticks since the cluster view's request went, while it is in flight
    /// (at most one is).
    cluster_asked: Option<u32>,
    pub dialog: Option<Dialog>,
    pub banner: Option<Banner>,
    pub link: Link,
    pub drain: Drain,
    /// `drain_timeout`, and the daemon's uptime when the drain was first
    /// seen: the time left.
    drain_timeout_s: Option<f64>,
    drain_began: Option<f64>,
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
            page: None,
            windows: false,
            rates: ConnRates::default(),
            history: History::default(),
            members: Members::new(),
            filter_text: String::new(),
            spec: Spec::default(),
            window: Window::default(),
            cursor: 0,
            selected: None,
            detail: None,
            view: View::Connections,
            cluster: None,
            cluster_asked: None,
            dialog: None,
            banner: None,
            link: Link::Connecting,
            drain: Drain::Idle,
            drain_timeout_s: None,
            drain_began: None,
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

    /// What the watch should show; the loop sends it when it changes.
    pub fn watch_spec(&self) -> WatchSpec {
        self.spec.watch_spec()
    }

    /// Seconds left before a drain closes what remains (from the first
    /// snapshot that showed it, so it may be up to an interval late).
    pub fn drain_left(&self) -> Option<f64> {
        let now = self.stats.as_ref()?.uptime_s;
        Some((self.drain_timeout_s? - (now - self.drain_began?)).max(0.0))
    }

    /// The one way state changes. Returns what to send to the daemon.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Key(key) => self.act(input::action(self.mode(), key)),
            Msg::Resize(w, h) => {
                self.resize((w, h));
                self.refresh()
            }
            Msg::Snapshot(snapshot) => self.snapshot(snapshot),
            Msg::Event(e) => {
                self.events.push(&e, clock());
                Vec::new()
            }
            Msg::Command(outcome) => self.outcome(outcome),
            Msg::Refused(e) => {
                self.say(Tone::Bad, &e);
                Vec::new()
            }
            Msg::Connected { windows } => {
                self.windows = windows;
                self.link = Link::Up;
                if self.drain == Drain::Stopped {
                    self.drain = Drain::Idle;
                    self.banner = None;
                }
                vec![Cmd::Config]
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
                if let Some(t) = &mut self.cluster_asked {
                    *t += 1;
                    if *t >= CLUSTER_TICKS {
                        self.cluster_asked = None;
                    }
                }
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

    fn snapshot(&mut self, snapshot: Snapshot) -> Vec<Cmd> {
        let Snapshot {
            stats,
            matched,
            offset,
            rows,
        } = snapshot;
        self.link = Link::Up;
        self.page = (self.windows && self.spec.daemon_pages()).then_some((matched, offset));
        self.rates.update(stats.uptime_s, &rows);
        self.history.update(&stats);
        if stats.draining && self.drain == Drain::Idle {
            self.drain = Drain::Following;
        }
        self.drain_began = match (stats.draining, self.drain_began) {
            (false, _) => None,
            (true, None) => Some(stats.uptime_s),
            (true, began) => began,
        };
        self.stats = Some(stats);
        self.all = rows;
        let mut cmds = self.ask_members_and_refresh();
        match self.selected {
            Some(id) if !cmds.contains(&Cmd::Show(id)) => cmds.push(Cmd::Show(id)),
            _ => {}
        }
        cmds.extend(self.ask_cluster());
        cmds
    }

    /// `stats` on every node, while the cluster view shows and no such
    /// request is in flight.
    fn ask_cluster(&mut self) -> Option<Cmd> {
        if self.view != View::Cluster || self.cluster_asked.is_some() {
            return None;
        }
        self.cluster_asked = Some(0);
        Some(Cmd::ClusterStats)
    }

    /// The cluster view's answer is in: the next snapshot asks again.
    pub(super) fn cluster_answered(&mut self, answer: Result<ClusterResult, String>) {
        self.cluster_asked = None;
        self.cluster = Some(answer);
    }

    /// The page again, after asking who is subscribed to the filter's
    /// topics (the rows carry no topics).
    pub(super) fn ask_members_and_refresh(&mut self) -> Vec<Cmd> {
        let topics = self.spec.query.topics().into_iter();
        // The daemon selects a `topic:` itself.
        let topics = topics.filter(|_| !(self.windows && self.spec.daemon_pages()));
        let mut cmds: Vec<Cmd> = topics.map(Cmd::Members).collect();
        cmds.extend(self.refresh());
        cmds
    }

    /// Recomputes the page from the last snapshot, keeping the selection on
    /// the same connection id, or on its neighbour when it is gone. (When
    /// the daemon's `watch` takes the window, the spec goes to it instead
    /// and its snapshot is the page.)
    pub(super) fn refresh(&mut self) -> Vec<Cmd> {
        let (page, cursor, offset) = match self.page {
            Some(at) => {
                let keep = self.selected;
                daemon_page(&self.all, &self.rates, at, &self.spec, self.cursor, keep)
            }
            None => {
                let (page, cursor) = window(
                    &self.all,
                    &self.rates,
                    &self.members,
                    &self.spec,
                    self.cursor,
                    self.selected,
                );
                let offset = page.offset;
                (page, cursor, offset)
            }
        };
        self.cursor = cursor;
        self.spec.offset = offset;
        self.window = page;
        let before = self.selected;
        // Off the daemon's page (a move past it), the selection waits for
        // the page that has it.
        if let Some(id) = self.selected_row().map(|r| r.conn.id) {
            self.selected = Some(id);
        } else if self.page.is_none() || self.window.rows.is_empty() {
            self.selected = None;
        }
        match self.selected {
            Some(id) if before != Some(id) => {
                self.detail = None;
                vec![Cmd::Show(id)]
            }
            _ => Vec::new(),
        }
    }

    /// After a new sort or filter. The console follows the selected id
    /// when it has every row; on the daemon's pages it cannot see where
    /// the id went, so it starts again at the top.
    pub(super) fn reordered(&mut self) -> Vec<Cmd> {
        if self.windows {
            self.spec.offset = 0;
            return self.move_to(0);
        }
        self.refresh()
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
                return self.reordered();
            }
            Action::FlipOrder => {
                self.spec.descending = !self.spec.descending;
                return self.reordered();
            }
            Action::Limits => {
                self.view = match self.view {
                    View::Connections | View::Cluster => View::Limits,
                    View::Limits => View::Connections,
                }
            }
            Action::Cluster => {
                self.view = match self.view {
                    View::Connections | View::Limits => View::Cluster,
                    View::Cluster => View::Connections,
                };
                return self.ask_cluster().into_iter().collect();
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
pub(crate) mod tests;
