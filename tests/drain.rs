//! Stopping: SIGTERM drains (shutdown notice, close 1001 spread over
//! `drain_spread`, `/readyz` 503, exit 0); a second signal stops at once.
//! And systemd: READY, RELOADING, STOPPING and watchdog pings arrive on a
//! real `NOTIFY_SOCKET`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn sigterm_drains_every_connection_and_exits_zero() {
    let mut d = Daemon::start(concat!(
        "[server]\ndrain_spread = \"1s\"\ndrain_timeout = \"10s\"\n",
        "reconnect_window = \"3s\"\nclose_timeout = \"500ms\"\n",
    ))
    .await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut ws = d.connect("/ws").await;
        recv_type(&mut ws, "welcome").await;
        subs.push(ws);
    }
    let mut echo = d.connect("/ws/echo").await;
    assert_eq!(d.http("GET", "/readyz", &[], "").await.status, 200);

    let started = Instant::now();
    d.signal("TERM");
    // The listener stays open during the drain to say so.
    let deadline = Instant::now() + PATIENCE;
    while d.http("GET", "/readyz", &[], "").await.status != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");

    let mut delays = HashSet::new();
    for ws in subs.iter_mut() {
        let notice = recv_type(ws, "shutdown").await;
        let ms = notice["reconnect_after_ms"].as_u64().expect("a delay");
        assert!(ms < 3000, "{notice}");
        delays.insert(ms);
        let (code, _) = expect_close(ws).await;
        assert_eq!(code, 1001);
    }
    assert_eq!(delays.len(), 3, "reconnects are spread: {delays:?}");
    assert_eq!(expect_close(&mut echo).await.0, 1001);
    drop(subs);
    drop(echo);

    let code = d.wait_exit(PATIENCE).await;
    assert_eq!(code, Some(0), "{}", d.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exited before the drain timeout"
    );
    assert!(d.logs().contains("drained"), "{}", d.logs());
}

#[tokio::test]
async fn a_second_signal_closes_everything_at_once() {
    let mut d = Daemon::start(
        "[server]\ndrain_spread = \"60s\"\ndrain_timeout = \"120s\"\nclose_timeout = \"500ms\"\n",
    )
    .await;
    let mut a = d.connect("/ws/echo").await;
    let mut b = d.connect("/ws/echo").await;
    let mut c = d.connect("/ws/echo").await;
    d.signal("TERM");
    // The first connection of the spread goes at once; the others would
    // wait 20s and 40s.
    assert_eq!(expect_close(&mut a).await.0, 1001);
    d.wait_log(&["drain started"]).await;
    let started = Instant::now();
    d.signal("INT");
    assert_eq!(expect_close(&mut b).await.0, 1001);
    assert_eq!(expect_close(&mut c).await.0, 1001);
    let code = d.wait_exit(PATIENCE).await;
    assert_eq!(code, Some(0), "{}", d.logs());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    d.wait_log(&["second stop signal"]).await;
}

/// Reads notify datagrams until `want` has been seen, returning all states
/// (one entry per `KEY=VALUE` line).
async fn notifications_until(sock: &tokio::net::UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 4096];
    while !seen.iter().any(|s| s == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, sock.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want} in time; got {seen:?}"))
            .expect("recv");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.extend(text.lines().map(str::to_string));
    }
}

#[tokio::test]
async fn sd_notify_reports_ready_reloading_stopping_and_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&path).expect("bind");
    let socket = path.to_string_lossy().into_owned();
    let mut d = Daemon::start_with_env(
        "[server]\nwatch_config = false\ndrain_spread = \"0s\"\n",
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let mut seen = Vec::new();
    notifications_until(&sock, "READY=1", &mut seen).await;
    notifications_until(&sock, "WATCHDOG=1", &mut seen).await;
    d.signal("HUP");
    notifications_until(&sock, "RELOADING=1", &mut seen).await;
    let reloading = seen
        .iter()
        .position(|s| s == "RELOADING=1")
        .expect("reloading");
    assert!(
        seen.iter().any(|s| s.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 comes with MONOTONIC_USEC: {seen:?}"
    );
    // READY=1 again after the reload.
    let deadline = Instant::now() + PATIENCE;
    while !seen[reloading..].iter().any(|s| s == "READY=1") {
        assert!(
            Instant::now() < deadline,
            "no READY=1 after reload: {seen:?}"
        );
        let mut more = Vec::new();
        notifications_until(&sock, "READY=1", &mut more).await;
        seen.extend(more);
    }
    d.signal("TERM");
    notifications_until(&sock, "STOPPING=1", &mut seen).await;
    assert!(seen.iter().any(|s| s.starts_with("STATUS=")), "{seen:?}");

    let order: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|s| matches!(*s, "READY=1" | "RELOADING=1" | "STOPPING=1"))
        .collect();
    assert_eq!(
        order,
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        "{seen:?}"
    );
    assert_eq!(d.wait_exit(PATIENCE).await, Some(0));
}

#[test]
fn the_systemd_units_verify() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        // .ci/run installs systemd; a developer machine may not have it.
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/wsgate.service"))
        .expect("etc/wsgate.service");
    for key in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RuntimeDirectory=wsgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "User=wsgate",
    ] {
        assert!(unit.contains(key), "missing {key}");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().parse().ok())
        .expect("TimeoutStopSec in seconds");
    let drain = wsgate::config::Settings::builtin()
        .expect("defaults")
        .config
        .server
        .drain_timeout;
    assert!(
        stop > drain.as_secs(),
        "TimeoutStopSec {stop}s must exceed drain_timeout {drain:?}"
    );
    // `verify` checks that ExecStart exists: point it at the built binary.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wsgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/wsgate", env!("CARGO_BIN_EXE_wsgate")),
    )
    .expect("write unit");
    // The socket unit, verified beside the service it activates.
    let socket = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/wsgate.socket"))
        .expect("etc/wsgate.socket");
    for key in ["FileDescriptorName=main", "Accept=no", "ListenStream="] {
        assert!(socket.contains(key), "wsgate.socket: missing {key}");
    }
    let socket_path = dir.path().join("wsgate.socket");
    std::fs::write(&socket_path, socket).expect("write socket unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .arg(&socket_path)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
