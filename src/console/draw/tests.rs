//! Render tests: the screen drawn into ratatui's `TestBackend`, read back
//! as text.

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::Terminal;

use crate::console::app::tests::{app_with_snapshot, key, keys, snapshot_msg};
use crate::console::app::{App, Msg};
use crate::console::dialog::Outcome;
use crate::console::testdata;

/// The screen as lines of text.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| super::render(app, f)).expect("draw");
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn contains(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

fn sized(width: u16, height: u16) -> App {
    let mut app = app_with_snapshot();
    app.update(Msg::Resize(width, height));
    app
}

#[test]
fn the_table_shows_the_rows_of_a_real_snapshot() {
    let app = sized(120, 36);
    let s = screen(&app, 120, 36);
    let text = s.join("\n");
    for needle in [
        "alice",
        "bob",
        "10.4.5.6",
        "192.0.2.7",
        "/ws/echo",
        "ID▲",
        "IN/s",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    let bob = s.iter().find(|l| l.contains("bob")).expect("bob's row");
    assert!(bob.trim_start().starts_with('3'), "{bob}");
    assert!(contains(&s, "4 match · rows 1-4 of 4"), "{text}");
    assert!(contains(&s, "wsgate 0.1.0"), "{text}");
    assert!(contains(&s, "conns 4/10000"), "{text}");
}

#[test]
fn the_confirm_dialog_names_the_connection() {
    let mut app = sized(80, 24);
    app.update(Msg::Key(key(KeyCode::Down)));
    app.update(Msg::Key(key(KeyCode::Down)));
    keys(&mut app, "e");
    let s = screen(&app, 80, 24);
    assert!(
        contains(&s, "Evict connection 3 (user bob, ip 10.4.5.6)?"),
        "{}",
        s.join("\n")
    );
    assert!(contains(&s, "y evict"), "{}", s.join("\n"));
}

#[test]
fn a_refused_reload_shows_line_and_column() {
    let mut app = sized(80, 24);
    keys(&mut app, "r");
    let e = "config_error: /srv/wsgate.toml:20:19: limits.max_connections: must be at least 1";
    app.update(Msg::Command(Outcome::Reload(Err(e.into()))));
    let s = screen(&app, 80, 24);
    assert!(
        contains(&s, "reload refused, nothing changed:"),
        "{}",
        s.join("\n")
    );
    assert!(contains(&s, "/srv/wsgate.toml:20:19:"), "{}", s.join("\n"));
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut app = sized(80, 24);
    keys(&mut app, "?");
    let s = screen(&app, 80, 24);
    for (k, what) in crate::console::input::KEYS {
        assert!(
            contains(&s, &format!("{k:<14}{what}")),
            "no {k} in\n{}",
            s.join("\n")
        );
    }
    keys(&mut app, "x");
    assert!(!contains(&screen(&app, 80, 24), "this help"));
}

#[test]
fn eighty_by_twenty_four_lays_out_without_overlap() {
    let area = ratatui::layout::Rect::new(0, 0, 80, 24);
    let a = super::layout(area);
    let parts = [a.header, a.sparks, a.table, a.footer, a.detail, a.events];
    for (i, p) in parts.iter().enumerate() {
        assert!(area.contains(p.as_position()) || p.area() == 0, "{p:?}");
        for q in &parts[i + 1..] {
            assert!(p.intersection(*q).area() == 0, "{p:?} overlaps {q:?}");
        }
    }
    assert_eq!(parts.iter().map(|p| p.height).sum::<u16>(), 24);
    assert!(super::table_rows(80, 24) >= 8);
    let mut app = sized(80, 24);
    app.update(Msg::Event(wsgate_admin_proto::Event::Lagged { missed: 92 }));
    let s = screen(&app, 80, 24);
    let text = s.join("\n");
    for needle in ["alice", "4 match", "Events", "92 events missed", "#1 alice"] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
}

#[test]
fn no_color_is_monochrome_with_a_reversed_selection() {
    let (stats, rows) = testdata::snapshot();
    let mut app = App::new("s".into(), false, (80, 24));
    app.update(snapshot_msg(stats, rows));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal.draw(|f| super::render(&app, f)).expect("draw");
    let buffer = terminal.backend().buffer();
    let colours = buffer
        .content()
        .iter()
        .filter(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset)
        .count();
    assert_eq!(colours, 0);
    let row = (0..24)
        .find(|y| {
            (0..80)
                .map(|x| buffer[(x, *y)].symbol())
                .collect::<String>()
                .contains("alice")
        })
        .expect("alice's row");
    assert!(buffer[(0, row)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED));
}

#[test]
fn the_limits_view_shows_every_scope() {
    let mut app = sized(120, 36);
    keys(&mut app, "l");
    let s = screen(&app, 120, 36);
    assert!(contains(&s, "Limits in force"), "{}", s.join("\n"));
    assert!(contains(&s, "total"), "{}", s.join("\n"));
    assert!(contains(&s, "4/10000"), "{}", s.join("\n"));
}

#[test]
fn the_detail_pane_shows_topics_and_peers() {
    let mut app = sized(120, 36);
    let (_, rows) = testdata::snapshot();
    let conn = wsgate_admin_proto::ConnDetail {
        row: rows[0].clone(),
        topics: vec!["news".into(), "inbox.alice".into()],
    };
    let detail = crate::console::dialog::Detail {
        conn,
        same_user: 1,
        same_ip: 100,
    };
    app.update(Msg::Command(Outcome::Detail(Ok(detail))));
    let s = screen(&app, 120, 36);
    for needle in [
        "connection 1",
        "alice (1 other conns)",
        "10.1.2.3 (100+ other",
        "news, inbox.alice",
    ] {
        assert!(contains(&s, needle), "no {needle} in\n{}", s.join("\n"));
    }
}

#[test]
fn the_cluster_view_shows_each_node_and_who_did_not_answer() {
    let mut app = sized(120, 36);
    keys(&mut app, "c");
    let s = screen(&app, 120, 36);
    assert!(contains(&s, "asking the cluster…"), "{}", s.join("\n"));
    app.update(Msg::Command(Outcome::Cluster(Ok(testdata::cluster()))));
    let s = screen(&app, 120, 36);
    let text = s.join("\n");
    for needle in [
        "Cluster: every node",
        "3 nodes, 1 answered; not: ws-b, ws-c",
        "NODE",
        "MSGS IN/OUT",
        "DRAINING",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    let row = |name: &str| {
        let line = s
            .iter()
            .find(|l| l.contains(name) && !l.contains("answered"));
        let line = line.unwrap_or_else(|| panic!("no row of {name} in\n{text}"));
        line.split_whitespace().collect::<Vec<_>>()
    };
    // The detail pane is beside the table at this width.
    assert_eq!(
        row("ws-a")[..9],
        [
            "*",
            "ws-a",
            "ok",
            "4",
            "0",
            "20/23",
            "connected",
            "no",
            "0.1.0"
        ]
    );
    assert_eq!(row("ws-b")[..4], ["ws-b", "no", "answer", "-"]);
    assert_eq!(row("ws-c")[..4], ["ws-c", "gone", "9s", "-"]);
    assert!(contains(&s, "cluster of 4"), "{text}");
}

#[test]
fn a_node_whose_answer_is_not_stats_shows_question_marks() {
    let mut app = sized(120, 36);
    keys(&mut app, "c");
    let mut answer = testdata::cluster();
    answer.nodes[0].result = Some(serde_json::json!({"evicted": 0}));
    app.update(Msg::Command(Outcome::Cluster(Ok(answer))));
    let s = screen(&app, 120, 36);
    let line = s.iter().find(|l| l.contains("ws-a")).expect("ws-a's row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells[..9],
        ["*", "ws-a", "ok", "?", "?", "?", "?", "?", "?"]
    );
}

#[test]
fn outside_a_cluster_the_view_says_why() {
    let mut app = sized(80, 24);
    keys(&mut app, "c");
    let e = "bad_arguments: this node is not part of a cluster ([cluster] names no NATS servers)";
    app.update(Msg::Command(Outcome::Cluster(Err(e.into()))));
    let s = screen(&app, 80, 24);
    assert!(
        contains(&s, "bad_arguments: this node is not part of a cluster"),
        "{}",
        s.join("\n")
    );
    assert!(!contains(&s, "asking the cluster"), "{}", s.join("\n"));
}

#[test]
fn the_header_names_the_node_and_its_nats_link() {
    let mut app = sized(120, 36);
    assert!(!contains(&screen(&app, 120, 36), "node "));
    let (_, rows) = testdata::snapshot();
    let mut stats = testdata::node_stats();
    app.update(snapshot_msg(stats.clone(), rows.clone()));
    let s = screen(&app, 120, 36);
    assert!(contains(&s, "node ws-a NATS connected"), "{}", s.join("\n"));
    if let Some(c) = &mut stats.cluster {
        c.nats_connected = false;
    }
    app.update(snapshot_msg(stats, rows));
    let s = screen(&app, 120, 36);
    assert!(
        contains(&s, "node ws-a NATS not connected"),
        "{}",
        s.join("\n")
    );
}
