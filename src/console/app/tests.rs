//! State machine tests: keys and messages in, state and commands out.

use super::*;
use crate::console::testdata;
use crate::console::window::Column;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use wsgate_admin_proto::{Changes, ConnRow, Eviction, Filter, ReloadResult, Stats};

pub(crate) fn app_with_snapshot() -> App {
    let mut app = App::new("/tmp/admin.sock".into(), true, (120, 36));
    let (stats, rows) = testdata::snapshot();
    app.update(Msg::Connected { windows: false });
    app.update(snapshot_msg(stats, rows));
    app
}

/// A snapshot of every connection, as from a daemon without windows.
pub(crate) fn snapshot_msg(stats: Stats, rows: Vec<ConnRow>) -> Msg {
    Msg::Snapshot(Snapshot {
        stats: Box::new(stats),
        matched: rows.len(),
        offset: 0,
        rows,
    })
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
    let cmds = app.update(snapshot_msg(stats, rows));
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
    app.update(snapshot_msg(stats, rows));
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
    app.update(Msg::Connected { windows: false });
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

#[test]
fn a_drain_seen_in_snapshots_counts_down_its_timeout() {
    let mut app = app_with_snapshot();
    assert_eq!(app.drain_left(), None);
    app.update(Msg::Command(Outcome::DrainTimeout(Ok(Some(30.0)))));
    let (mut stats, rows) = testdata::snapshot();
    stats.draining = true;
    app.update(snapshot_msg(stats.clone(), rows.clone()));
    assert_eq!(app.drain, Drain::Following);
    assert_eq!(app.drain_left(), Some(30.0));
    stats.uptime_s += 5.0;
    app.update(snapshot_msg(stats, rows));
    assert_eq!(app.drain_left(), Some(25.0));
}

#[test]
fn with_daemon_windows_the_snapshot_is_the_page_and_moves_ask_for_another() {
    let mut app = App::new("s".into(), true, (80, 24));
    app.update(Msg::Connected { windows: true });
    let (stats, rows) = testdata::snapshot();
    app.spec.limit = 2;
    // The daemon's first page: rows 1 and 2 of 40.
    let page = |offset: usize, ids: &[u64]| {
        let rows = rows
            .iter()
            .filter(|r| ids.contains(&r.id))
            .cloned()
            .collect();
        Msg::Snapshot(Snapshot {
            stats: Box::new(stats.clone()),
            matched: 40,
            offset,
            rows,
        })
    };
    app.update(page(0, &[1, 2]));
    assert_eq!(
        (ids(&app), app.window.matched, app.selected),
        (vec![1, 2], 40, Some(1))
    );
    assert_eq!(
        (app.watch_spec().offset, app.watch_spec().limit),
        (Some(0), Some(2))
    );
    press(&mut app, KeyCode::End);
    assert_eq!(app.watch_spec().offset, Some(38));
    app.update(page(38, &[3, 4]));
    assert_eq!((app.cursor, app.selected), (39, Some(4)));
    // Sorted by rate, descending: the daemon is asked for it, from the top.
    keys(&mut app, "ssssss");
    keys(&mut app, "o");
    let spec = app.watch_spec();
    assert_eq!((spec.offset, app.cursor), (Some(0), 0));
    assert_eq!(
        (spec.sort, spec.order),
        (
            Some(wsgate_admin_proto::SortKey::InRate),
            Some(wsgate_admin_proto::Order::Desc)
        )
    );
    // Free words: every selector match comes, the console cuts the page.
    keys(&mut app, "/alice");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        (app.watch_spec().offset, app.watch_spec().limit),
        (None, None)
    );
}

#[test]
fn the_cluster_view_asks_every_snapshot_one_request_at_a_time() {
    let mut app = app_with_snapshot();
    let (stats, rows) = testdata::snapshot();
    // Not in the cluster view: never asked.
    let cmds = app.update(snapshot_msg(stats.clone(), rows.clone()));
    assert!(!cmds.contains(&Cmd::ClusterStats), "{cmds:?}");
    // `c`: asked at once, and not again while that one is in flight.
    assert_eq!(keys(&mut app, "c"), [Cmd::ClusterStats]);
    assert_eq!(app.view, View::Cluster);
    let cmds = app.update(snapshot_msg(stats.clone(), rows.clone()));
    assert!(!cmds.contains(&Cmd::ClusterStats), "{cmds:?}");
    assert!(app.update(Msg::Tick).is_empty());
    // The answer is kept; the next snapshot asks again.
    let answer = testdata::cluster();
    app.update(Msg::Command(Outcome::Cluster(Ok(answer.clone()))));
    assert_eq!(app.cluster, Some(Ok(answer)));
    let cmds = app.update(snapshot_msg(stats.clone(), rows.clone()));
    assert_eq!(cmds.iter().filter(|c| **c == Cmd::ClusterStats).count(), 1);
    // An error (not in a cluster) is kept too.
    let e = "bad_arguments: this node is not part of a cluster";
    app.update(Msg::Command(Outcome::Cluster(Err(e.into()))));
    assert_eq!(app.cluster, Some(Err(e.into())));
    // Back to the table: no more asking.
    assert!(keys(&mut app, "c").is_empty());
    assert_eq!(app.view, View::Connections);
    let cmds = app.update(snapshot_msg(stats.clone(), rows.clone()));
    assert!(!cmds.contains(&Cmd::ClusterStats), "{cmds:?}");
    // From the limits view `c` goes to the cluster, `l` back to limits.
    keys(&mut app, "l");
    assert_eq!(keys(&mut app, "c"), [Cmd::ClusterStats]);
    assert_eq!(app.view, View::Cluster);
    keys(&mut app, "l");
    assert_eq!(app.view, View::Limits);
    let cmds = app.update(snapshot_msg(stats, rows));
    assert!(!cmds.contains(&Cmd::ClusterStats), "{cmds:?}");
}

#[test]
fn a_cluster_request_lost_on_the_way_is_asked_again_after_a_while() {
    let mut app = app_with_snapshot();
    let (stats, rows) = testdata::snapshot();
    assert_eq!(keys(&mut app, "c"), [Cmd::ClusterStats]);
    for _ in 0..CLUSTER_TICKS {
        app.update(Msg::Tick);
    }
    let cmds = app.update(snapshot_msg(stats, rows));
    assert!(cmds.contains(&Cmd::ClusterStats), "{cmds:?}");
}
