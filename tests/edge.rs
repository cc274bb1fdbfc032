//! Refused at the door, before the upgrade: connect storms (per client IP
//! and daemon-wide), memory pressure, and the cap on connections still in
//! their HTTP phase. Real daemon, real clients, real reloads.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The watcher reloads once the directory has been quiet this long (see
/// tests/reload.rs for why not shorter).
const DEBOUNCE: &str = "reload_debounce = \"200ms\"\n";

/// An upgrade request's headers, for refusals read as plain HTTP (with
/// their `Retry-After`).
const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
];

fn from(ip: &str) -> [(&str, &str); 1] {
    [("X-Forwarded-For", ip)]
}

fn rejections(reason: &str) -> String {
    format!("wsgate_rejections_total{{reason=\"{reason}\"}}")
}

/// Connects from `ip` until one is refused; returns (connected, status,
/// body) and keeps nothing open.
async fn storm(d: &Daemon, ip: &str, tries: usize) -> (usize, Vec<(u16, String)>) {
    let mut connected = 0;
    let mut refused = Vec::new();
    for _ in 0..tries {
        match d.try_connect("/ws/echo", &from(ip)).await {
            Ok(_) => connected += 1,
            Err(r) => refused.push(r),
        }
    }
    (connected, refused)
}

#[tokio::test]
async fn a_storm_from_one_address_gets_429_while_others_connect() {
    let d = Daemon::start(concat!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        "connects_per_second_per_ip = 1\nconnect_burst_per_ip = 5\n",
        "refusal_log_interval = \"1s\"\n",
    ))
    .await;
    let started = Instant::now();
    let (connected, refused) = storm(&d, "203.0.113.7", 20).await;
    // The burst, plus what refilled while the storm lasted.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (5..=5 + refilled).contains(&connected),
        "{connected} connected"
    );
    assert!(!refused.is_empty());
    for (status, body) in &refused {
        assert_eq!(*status, 429, "{body}");
        assert!(body.contains("\"error\":\"connect_rate_ip\""), "{body}");
    }
    let resp = d
        .http(
            "GET",
            "/ws/echo",
            &[UPGRADE, &from("203.0.113.7")].concat(),
            "",
        )
        .await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    let after: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert_eq!(after, 1, "one token a second is back within a second");
    assert_eq!(
        d.metric(&rejections("connect_rate_ip")).await,
        refused.len() as f64 + 1.0
    );

    // Another address has its own bucket; the stormy one gets through
    // again once a token is back.
    let _other = d
        .try_connect("/ws/echo", &from("198.51.100.2"))
        .await
        .expect("another address connects");
    let deadline = Instant::now() + PATIENCE;
    while d
        .try_connect("/ws/echo", &from("203.0.113.7"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The storm is one line in full, then counted: every refusal is in a
    // full line or in a summary's count, and most are only counted.
    let total = d.metric(&rejections("connect_rate_ip")).await as u64;
    d.wait_log(&["upgrade refused", "connect_rate_ip", "203.0.113.7"])
        .await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let logs = d.logs();
        let full = logs
            .lines()
            .filter(|l| l.contains("upgrade refused") && l.contains("connect_rate_ip"))
            .count() as u64;
        let counted: u64 = logs
            .lines()
            .filter_map(|l| l.split("upgrades refused: ").nth(1))
            .filter(|rest| rest.contains("more for connect_rate_ip"))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .sum();
        if full + counted == total {
            assert!(full < total / 2, "{full} full lines for {total} refusals");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{full} lines + {counted} counted, {total} refused:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_daemon_wide_bucket_gives_503_to_every_address() {
    let d = Daemon::start(concat!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        "connects_per_second = 1\nconnect_burst = 3\n",
    ))
    .await;
    let started = Instant::now();
    let mut connected = 0;
    let mut refused = Vec::new();
    for n in 0..20 {
        match d
            .try_connect("/ws/echo", &from(&format!("192.0.2.{n}")))
            .await
        {
            Ok(_) => connected += 1,
            Err(r) => refused.push(r),
        }
    }
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!((3..=3 + refilled).contains(&connected), "{connected}");
    assert!(!refused.is_empty());
    for (status, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("\"error\":\"connect_rate_global\""), "{body}");
    }
    let resp = d
        .http(
            "GET",
            "/ws/echo",
            &[UPGRADE, &from("192.0.2.200")].concat(),
            "",
        )
        .await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(
        d.metric(&rejections("connect_rate_global")).await,
        refused.len() as f64 + 1.0
    );
    assert_eq!(d.metric(&rejections("connect_rate_ip")).await, 0.0);
    // Plain HTTP is not an upgrade: health checks and scrapes pass.
    assert_eq!(d.http("GET", "/readyz", &[], "").await.status, 200);
}

#[tokio::test]
async fn a_reload_changes_the_rates() {
    let strict =
        format!("[server]\n{DEBOUNCE}connects_per_second_per_ip = 1\nconnect_burst_per_ip = 1\n");
    let d = Daemon::start(&strict).await;
    let _a = d.connect("/ws/echo").await;
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 429, "{body}");

    d.write_config(&format!(
        "[server]\n{DEBOUNCE}connects_per_second_per_ip = 1\nconnect_burst_per_ip = 50\n"
    ));
    d.wait_reloads("ok", 1.0).await;
    d.wait_log(&["config reloaded", "server.connect_burst_per_ip: 1 -> 50"])
        .await;
    let (connected, refused) = storm(&d, "127.0.0.1", 20).await;
    assert_eq!((connected, refused.len()), (20, 0), "{refused:?}");

    // Off: no bucket at all.
    d.write_config(&format!("[server]\n{DEBOUNCE}"));
    d.wait_reloads("ok", 2.0).await;
    let (connected, _) = storm(&d, "127.0.0.1", 100).await;
    assert_eq!(connected, 100);
}

#[tokio::test]
async fn memory_over_max_memory_refuses_upgrades_and_readiness_until_raised() {
    // Any daemon's resident set is more than a KiB.
    let d = Daemon::start(&format!("[server]\n{DEBOUNCE}max_memory = \"1KiB\"\n")).await;
    let ready = d.http("GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "memory_pressure");
    let resp = d.http("GET", "/ws/echo", UPGRADE, "").await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.json()["error"], "memory_pressure");
    assert_eq!(resp.header("retry-after"), Some("1"));
    let (status, _) = d.refused("/ws", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(d.metric(&rejections("memory_pressure")).await, 2.0);
    assert_eq!(d.metric("wsgate_memory_pressure").await, 1.0);
    d.wait_log(&["memory pressure:", "max_memory=1024"]).await;

    d.write_config(&format!("[server]\n{DEBOUNCE}max_memory = \"1TiB\"\n"));
    d.wait_reloads("ok", 1.0).await;
    assert_eq!(d.http("GET", "/readyz", &[], "").await.status, 200);
    let _ws = d.connect("/ws/echo").await;
    assert_eq!(d.metric("wsgate_memory_pressure").await, 0.0);
    d.wait_log(&["memory pressure over"]).await;
}

#[tokio::test]
async fn established_connections_are_untouched_by_memory_pressure() {
    let d = Daemon::start(&format!("[server]\n{DEBOUNCE}")).await;
    let mut ws = d.connect("/ws/echo").await;
    d.write_config(&format!("[server]\n{DEBOUNCE}max_memory = 1\n"));
    d.wait_reloads("ok", 1.0).await;
    assert_eq!(d.http("GET", "/readyz", &[], "").await.status, 503);
    assert_eq!(d.refused("/ws/echo", &[]).await.0, 503);
    futures_util::SinkExt::send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::text("still here"),
    )
    .await
    .expect("send");
    assert_eq!(
        recv(&mut ws).await,
        tokio_tungstenite::tungstenite::Message::text("still here")
    );
}

/// A TCP connection that sends nothing: it holds a place in the HTTP phase.
async fn idle(d: &Daemon) -> TcpStream {
    TcpStream::connect(d.addr).await.expect("connect")
}

#[tokio::test]
async fn at_max_pending_handshakes_the_listener_waits_for_a_place() {
    // Idle connections are not dropped by the daemon during the test.
    let d =
        Daemon::start("[server]\nmax_pending_handshakes = 2\nhandshake_timeout = \"60s\"\n").await;
    let a = idle(&d).await;
    // The scrape is a pending connection too: the idle one and itself.
    d.wait_metric("wsgate_pending_handshakes", 2.0).await;
    let b = idle(&d).await;

    let url = d.url("/ws/echo");
    let third = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await });
    // Both places are held by connections that never speak: nothing lets
    // the third one in, however long it waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!third.is_finished(), "upgraded while both places were held");

    drop(a);
    let (_ws, _) = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("the third connection upgrades once a place is free")
        .expect("join")
        .expect("upgrade");
    // The upgraded one left its place; `b` and the scrape hold them.
    d.wait_metric("wsgate_pending_handshakes", 2.0).await;
    drop(b);
    d.wait_metric("wsgate_pending_handshakes", 1.0).await;
}

#[tokio::test]
async fn a_reload_resizes_the_pending_handshakes() {
    let d = Daemon::start(&format!(
        "[server]\n{DEBOUNCE}max_pending_handshakes = 1\nhandshake_timeout = \"60s\"\n"
    ))
    .await;
    let _a = idle(&d).await;
    let url = d.url("/ws/echo");
    let second = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!second.is_finished(), "upgraded past the cap");

    // The scrape could not get in either: the log says when it reloaded.
    d.write_config(&format!(
        "[server]\n{DEBOUNCE}max_pending_handshakes = 3\nhandshake_timeout = \"60s\"\n"
    ));
    d.wait_log(&["config reloaded", "server.max_pending_handshakes: 1 -> 3"])
        .await;
    tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the waiting connection upgrades once the cap is raised")
        .expect("join")
        .expect("upgrade");
    d.wait_metric("wsgate_pending_handshakes", 2.0).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_handshake_timeout() {
    let d = Daemon::start("[server]\nhandshake_timeout = \"1s\"\n").await;
    let mut s = idle(&d).await;
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then closed by the daemon when no next request comes.
    let waited = Instant::now();
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .expect("the daemon closes the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "{:?}",
        waited.elapsed()
    );
    d.wait_metric("wsgate_pending_handshakes", 1.0).await;
}
