//! Timers and flow limits, each driven past its bound: idle timeout (4003),
//! pong timeout (4004), max lifetime (4005), the inbound rate limit (drop,
//! or close with 1008) and the slow-consumer send queue (4002). Every test
//! checks what the client sees and the metric that counts it.

mod common;
use common::*;

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// An echo route at `/ws/echo` with extra `[routes.limits]` lines.
fn echo_route(limits: &str) -> String {
    format!("[[routes]]\npath = \"/ws/echo\"\nrouter = \"echo\"\n[routes.limits]\n{limits}")
}

/// Sends a text message and checks that it comes straight back.
async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    assert_eq!(recv(ws).await, Message::text(text));
}

/// Expects the server's close frame, then completes the close handshake:
/// tokio-tungstenite sends its reply on the next poll, and the server then
/// hangs up and counts the close (instead of after `close_timeout`).
async fn expect_close_and_reply(ws: &mut Ws) -> (u16, String) {
    let got = expect_close(ws).await;
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the server hangs up in time");
    assert!(
        !matches!(end, Some(Ok(_))),
        "a message after the close frame: {end:?}"
    );
    got
}

/// The idle timeout in `idle_timeout_closes_...`: six times the pause
/// between the active client's messages, so that either process may stall
/// for half a second without the active one looking idle.
const IDLE: Duration = Duration::from_millis(600);

#[tokio::test]
async fn idle_timeout_closes_a_silent_client_with_4003_but_not_an_active_one() {
    let d = Daemon::start(&echo_route(&format!(
        "idle_timeout = \"{}ms\"\n",
        IDLE.as_millis()
    )))
    .await;
    let started = Instant::now();
    let mut silent = d.connect("/ws/echo").await;
    let mut active = d.connect("/ws/echo").await;

    let silent_side = async {
        let (code, reason) = expect_close_and_reply(&mut silent).await;
        (code, reason, started.elapsed())
    };
    let active_side = async {
        // Every 100 ms for 1200 ms: twice the idle timeout in all.
        for i in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            echo(&mut active, &format!("tick {i}")).await;
        }
    };
    let ((code, reason, after), ()) = tokio::join!(silent_side, active_side);
    assert_eq!(code, 4003, "{reason}");
    assert!(after >= IDLE, "closed after {after:?}");
    d.wait_metric("wsgate_closes_total{code=\"4003\"}", 1.0)
        .await;

    // Still open and still served, after 1200 ms of activity. Its timer
    // counts from this message, which the daemon gets after `last`.
    let last = Instant::now();
    echo(&mut active, "still here").await;
    assert_eq!(d.metric("wsgate_closes_total{code=\"4003\"}").await, 1.0);

    // Silence now closes it too.
    let (code, _) = expect_close_and_reply(&mut active).await;
    assert_eq!(code, 4003);
    assert!(last.elapsed() >= IDLE);
    d.wait_metric("wsgate_closes_total{code=\"4003\"}", 2.0)
        .await;
}

/// Reads `ws` until `stop` is done, answering its pings (the pong goes out
/// on the next read); anything but a ping is a failure. Returns how many
/// pings came, and what `stop` gave.
async fn answer_pings_until<T>(ws: &mut Ws, stop: impl Future<Output = T>) -> (usize, T) {
    tokio::pin!(stop);
    let mut pings = 0;
    loop {
        tokio::select! {
            out = &mut stop => return (pings, out),
            msg = ws.next() => match msg {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("expected only pings, got {other:?}"),
            },
        }
    }
}

const PING_INTERVAL: Duration = Duration::from_millis(100);
/// Six ping intervals: a stall of either process that delays a pong by
/// half a second does not make the live client look deaf.
const PONG_TIMEOUT: Duration = Duration::from_millis(600);

#[tokio::test]
async fn pong_timeout_closes_a_client_that_never_reads_with_4004() {
    let d = Daemon::start(&echo_route(&format!(
        "ping_interval = \"{}ms\"\npong_timeout = \"{}ms\"\n",
        PING_INTERVAL.as_millis(),
        PONG_TIMEOUT.as_millis()
    )))
    .await;
    let mut deaf = d.connect("/ws/echo").await;
    let mut live = d.connect("/ws/echo").await;

    let deaf_side = async {
        // Not reading means tokio-tungstenite answers no ping: it is read
        // only once the daemon has closed a connection with 4004.
        d.wait_metric("wsgate_closes_total{code=\"4004\"}", 1.0)
            .await;
        expect_close(&mut deaf).await
    };
    // The live one answers every ping until the deaf one is closed, and
    // then for as long again as the deaf one had for its first ping.
    let (before, (code, reason)) = answer_pings_until(&mut live, deaf_side).await;
    let (after, ()) =
        answer_pings_until(&mut live, tokio::time::sleep(PING_INTERVAL + PONG_TIMEOUT)).await;
    let pings = before + after;
    assert_eq!(code, 4004, "{reason}");
    assert!(pings >= 3, "only {pings} pings");
    d.wait_metric("wsgate_closes_total{code=\"4004\"}", 1.0)
        .await;

    echo(&mut live, "alive").await;
    assert_eq!(d.metric("wsgate_closes_total{code=\"4004\"}").await, 1.0);
}

/// The lifetime in `max_lifetime_closes_...`: the two messages 100 ms apart
/// are done long before it ends, even if either process stalls.
const LIFETIME: Duration = Duration::from_millis(600);

#[tokio::test]
async fn max_lifetime_closes_even_an_active_client_with_4005() {
    let d = Daemon::start(&echo_route(&format!(
        "max_lifetime = \"{}ms\"\n",
        LIFETIME.as_millis()
    )))
    .await;
    let started = Instant::now();
    let mut ws = d.connect("/ws/echo").await;
    for i in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        echo(&mut ws, &format!("busy {i}")).await;
    }
    let (code, reason) = expect_close_and_reply(&mut ws).await;
    assert_eq!(code, 4005, "{reason}");
    assert!(started.elapsed() >= LIFETIME);
    d.wait_metric("wsgate_closes_total{code=\"4005\"}", 1.0)
        .await;
}

const RATE_LIMIT: &str = "[limits]\nmessages_per_second = 1\nmessage_burst = 2\n";

#[tokio::test]
async fn rate_limit_drop_answers_rate_limited_and_keeps_the_connection() {
    let d = Daemon::start(RATE_LIMIT).await;
    let mut ws = d.connect("/ws").await;
    assert_eq!(recv_json(&mut ws).await["type"], "welcome");
    for _ in 0..5 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    for _ in 0..2 {
        assert_eq!(recv_json(&mut ws).await, json!({"type": "pong"}));
    }
    for _ in 0..3 {
        let v = recv_json(&mut ws).await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], "rate_limited", "{v}");
    }
    assert_eq!(
        d.metric("wsgate_rate_limited_messages_total{action=\"dropped\"}")
            .await,
        3.0
    );

    // One token comes back per second, counted from the first ping the
    // daemon let through. That was before the answers above arrived, so a
    // second (and a little) from now it is back whatever either process
    // was doing in between.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_json(&mut ws, json!({"type": "ping", "id": 6})).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type": "pong", "id": 6}));
    assert_eq!(
        d.metric("wsgate_rate_limited_messages_total{action=\"dropped\"}")
            .await,
        3.0
    );
    let metrics = d.http("GET", "/metrics", &[], "").await.body;
    assert!(!metrics.contains("wsgate_closes_total{"), "{metrics}");
}

#[tokio::test]
async fn rate_limit_close_closes_with_1008() {
    let d = Daemon::start(&format!("{RATE_LIMIT}on_rate_limit = \"close\"\n")).await;
    let mut ws = d.connect("/ws").await;
    assert_eq!(recv_json(&mut ws).await["type"], "welcome");
    for _ in 0..5 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    for _ in 0..2 {
        assert_eq!(recv_json(&mut ws).await, json!({"type": "pong"}));
    }
    let (code, reason) = expect_close_and_reply(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    d.wait_metric("wsgate_closes_total{code=\"1008\"}", 1.0)
        .await;
    assert_eq!(
        d.metric("wsgate_rate_limited_messages_total{action=\"closed\"}")
            .await,
        1.0
    );
}

/// The padding in each publication.
const PAD: usize = 32 * 1024;
/// The slow consumer's receive buffer (`SO_RCVBUF`, which the kernel
/// doubles and then leaves alone): small and fixed, so what it holds
/// unread does not depend on the host's `tcp_rmem`.
const SLOW_RECV_BUFFER: u32 = 64 * 1024;
/// Publications after the one that no longer reached the slow consumer;
/// the reader gets these too.
const AFTER_THE_CUT: usize = 20;

/// How many publications the slow consumer must be cut off within. The
/// daemon's side of its connection is the larger buffer: the kernel grows
/// a socket's send buffer up to `tcp_wmem`'s maximum (4 MiB by default,
/// 16 MiB or more on tuned hosts), which holds that many bytes of
/// publications before the send queue (8) fills. Twice all the buffers,
/// and never fewer than 512 (16 MiB).
fn max_publishes() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(16 << 20);
    let slow_recv = 2 * SLOW_RECV_BUFFER as usize;
    (2 * (wmem_max + slow_recv) / PAD).max(512)
}

/// A publication's data: its sequence number, whether it is the last one,
/// and ~32 KiB of padding.
fn payload(seq: usize, last: bool) -> serde_json::Value {
    json!({"seq": seq, "last": last, "pad": "x".repeat(PAD)})
}

/// Publishes one payload on topic `t`; returns how many subscribers took it.
async fn publish(d: &Daemon, seq: usize, last: bool) -> u64 {
    let auth = [
        ("Authorization", "Bearer k"),
        ("Content-Type", "application/json"),
    ];
    let body = json!({"topic": "t", "data": payload(seq, last)}).to_string();
    let resp = d.http("POST", "/api/publish", &auth, &body).await;
    assert_eq!(resp.status, 200, "publish {seq}: {}", resp.body);
    resp.json()["delivered"].as_u64().expect("delivered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_4002_and_the_reader_gets_everything() {
    let d = Daemon::start(
        "[server]\nclose_timeout = \"10s\"\n[api]\nkeys = [\"k\"]\n[limits]\nsend_queue = 8\n",
    )
    .await;
    let mut reader = d.connect("/ws").await;
    let mut slow = d.connect_with_recv_buffer("/ws", SLOW_RECV_BUFFER).await;
    for ws in [&mut reader, &mut slow] {
        send_json(ws, json!({"type": "subscribe", "topics": ["t"]})).await;
        recv_type(ws, "subscribed").await;
    }

    // The reader reads everything, up to the publication marked last.
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let v = recv_json(&mut reader).await;
            assert_eq!(v["type"], "message", "{v}");
            assert_eq!(v["topic"], "t");
            assert_eq!(v["data"]["seq"], seen, "out of order");
            assert_eq!(v["data"]["pad"].as_str().map(str::len), Some(PAD));
            seen += 1;
            if v["data"]["last"] == true {
                break;
            }
        }
        (reader, seen)
    });

    // The slow one never reads: once the socket buffers between it and the
    // daemon are full, its send queue fills, and a publication reaches
    // only the reader. Publish until then, however large the host's
    // buffers, and a few more.
    let max = max_publishes();
    let mut delivered = 0;
    let mut published = 0;
    loop {
        assert!(
            published < max,
            "the slow one took all {delivered} of {published}"
        );
        let took = publish(&d, published, false).await;
        delivered += took;
        published += 1;
        if took < 2 {
            break;
        }
    }
    for i in 1..=AFTER_THE_CUT {
        delivered += publish(&d, published, i == AFTER_THE_CUT).await;
        published += 1;
    }
    let (mut reader, seen) = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("reader in time")
        .expect("reader task");
    assert_eq!(seen, published);
    assert!(
        delivered < 2 * published as u64,
        "the slow one took all {delivered}"
    );
    assert!(delivered > published as u64, "the slow one took none");

    let (code, reason) = expect_close(&mut slow).await;
    assert_eq!(code, 4002, "{reason}");
    d.wait_metric("wsgate_closes_total{code=\"4002\"}", 1.0)
        .await;
    assert_eq!(
        d.metric("wsgate_slow_consumer_closes_total{reason=\"queue_full\"}")
            .await,
        1.0
    );

    // The reader is untouched.
    send_json(&mut reader, json!({"type": "ping"})).await;
    assert_eq!(recv_json(&mut reader).await, json!({"type": "pong"}));
}
