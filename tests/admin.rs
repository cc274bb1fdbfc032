//! The admin unix socket and `wsgate ctl`, end to end: every command over
//! the raw NDJSON protocol, evictions by every selector, reloads and drains
//! started over the socket, the socket file's mode and the peer-credential
//! check, malformed lines, a watcher that never reads, and the CLI.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A client of the admin socket: one JSON request per line, one JSON
/// answer (or watch event) per line.
struct Admin {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Admin {
    async fn connect(d: &Daemon) -> Admin {
        let stream = UnixStream::connect(d.admin_socket())
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", d.admin_socket().display()));
        let (read, write) = stream.into_split();
        Admin {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    /// Writes one raw line (a newline is added).
    async fn send_line(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the admin socket");
    }

    /// The next line, or `None` when the daemon closed the connection.
    async fn read_line(&mut self) -> Option<String> {
        timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("an admin line in time")
            .expect("read from the admin socket")
    }

    /// The next line as JSON.
    async fn read(&mut self) -> Value {
        let line = self
            .read_line()
            .await
            .expect("the admin connection is open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends a request and reads its answer.
    async fn request(&mut self, request: Value) -> Value {
        self.send_line(&request.to_string()).await;
        self.read().await
    }

    /// A request that must succeed; returns its `result`.
    async fn ok(&mut self, request: Value) -> Value {
        let answer = self.request(request.clone()).await;
        assert_eq!(answer["ok"], true, "{request} -> {answer}");
        assert_eq!(answer["id"], request["id"], "{request} -> {answer}");
        answer["result"].clone()
    }

    /// A request that must fail with `code`; returns the `error` object.
    async fn fails(&mut self, request: Value, code: &str) -> Value {
        let answer = self.request(request.clone()).await;
        assert_eq!(answer["ok"], false, "{request} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{request} -> {answer}");
        assert!(
            answer["error"]["message"].is_string(),
            "{request} -> {answer}"
        );
        answer["error"].clone()
    }

    async fn stats(&mut self) -> Value {
        self.ok(json!({"id": "stats", "cmd": "stats"})).await
    }

    /// The ids of the connections a filter selects, in `list` order.
    async fn ids(&mut self, filter: Value) -> Vec<u64> {
        let rows = self
            .ok(json!({"id": "ids", "cmd": "list", "filter": filter}))
            .await;
        row_ids(&rows)
    }

    /// Waits until `stats` shows `n` connections.
    async fn wait_total(&mut self, n: u64) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let stats = self.stats().await;
            if stats["connections"]["total"] == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "connections.total never reached {n}: {}",
                stats["connections"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads watch lines until an event of `kind` for which `pred` holds.
    async fn event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{kind}` event in time"
            );
            let v = self.read().await;
            if v["event"] == kind && pred(&v) {
                return v;
            }
        }
    }
}

fn row_ids(rows: &Value) -> Vec<u64> {
    rows.as_array()
        .unwrap_or_else(|| panic!("rows: {rows}"))
        .iter()
        .map(|r| r["id"].as_u64().expect("a row id"))
        .collect()
}

/// Runs a program to completion (off the async threads); returns its exit
/// code (-1 when killed by a signal), stdout and stderr.
async fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    })
    .await
    .expect("join");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `wsgate ctl --socket <socket> <args...>`.
async fn ctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let socket = socket.to_str().expect("a UTF-8 socket path");
    let mut all = vec!["ctl", "--socket", socket];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_wsgate"), &all).await
}

/// `n` clients of the echo route.
async fn echo_clients(d: &Daemon, n: usize) -> Vec<Ws> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(d.connect("/ws/echo").await);
    }
    conns
}

/// An echo round trip: the connection is open and served.
async fn echo_round_trip(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    assert_eq!(recv(ws).await, Message::text(text));
}

/// A pub/sub ping round trip: the connection is open and served.
async fn ping_round_trip(ws: &mut Ws, id: u64) {
    send_json(ws, json!({"type": "ping", "id": id})).await;
    assert_eq!(recv_type(ws, "pong").await["id"], id);
}

/// Connects to a pub/sub route; returns the socket and the connection id
/// from the welcome message.
async fn join(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (Ws, u64) {
    let mut ws = d
        .try_connect(path, headers)
        .await
        .unwrap_or_else(|(s, b)| panic!("connect {path}: {s} {b}"));
    let welcome = recv_type(&mut ws, "welcome").await;
    let id = welcome["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("welcome without an id: {welcome}"));
    (ws, id)
}

async fn subscribe(ws: &mut Ws, topic: &str) {
    send_json(ws, json!({"type": "subscribe", "topics": [topic]})).await;
    let reply = recv_type(ws, "subscribed").await;
    assert_eq!(reply["topics"], json!([topic]));
}

/// A graceful client close: sends the close frame, reads until the end.
async fn close_ws(mut ws: Ws) {
    ws.close(None).await.expect("send close");
    let _ = timeout(PATIENCE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Expects an eviction close (4000) with this reason, then finishes the
/// close: polling again sends the client's close reply, and dropping the
/// socket lets the daemon release the connection now rather than at
/// `close_timeout`.
async fn expect_evicted(mut ws: Ws, reason: &str) {
    let (code, got) = expect_close(&mut ws).await;
    assert_eq!((code, got.as_str()), (4000, reason));
    let _ = timeout(PATIENCE, ws.next()).await;
}

const EVICTED: &str = "wsgate_closes_total{code=\"4000\"}";

/// Token auth at `/auth` (alice with `sekrit-token`, bob with `tok-bob`),
/// plus the usual echo and pub/sub routes and an API key.
const SECRETS: &str = concat!(
    "[api]\nkeys = [\"sekrit-key\"]\n",
    "[auth.t]\nplugin = \"token\"\n",
    "tokens = { \"sekrit-token\" = \"alice\", \"tok-bob\" = \"bob\" }\n",
    "[[routes]]\npath = \"/ws/echo\"\nrouter = \"echo\"\n",
    "[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\n",
    "[[routes]]\npath = \"/auth\"\nrouter = \"pubsub\"\nauth = \"t\"\n",
);
const ALICE: (&str, &str) = ("Authorization", "Bearer sekrit-token");
const BOB: (&str, &str) = ("Authorization", "Bearer tok-bob");

// ---------------------------------------------------------------------------
// 1. Every command over the raw socket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stats_list_show_publish_and_config_over_the_socket() {
    let d = Daemon::start(SECRETS).await;
    let mut quiet = d.connect("/ws/echo").await;
    echo_round_trip(&mut quiet, "one").await;
    let mut busy = d.connect("/ws/echo").await;
    for i in 0..3 {
        echo_round_trip(&mut busy, &format!("m{i}")).await;
    }
    let (mut sub, sub_id) = join(&d, "/ws", &[]).await;
    subscribe(&mut sub, "news").await;
    let (mut alice, alice_id) = join(&d, "/auth", &[ALICE]).await;
    ping_round_trip(&mut alice, 1).await;

    let mut a = Admin::connect(&d).await;

    // stats
    let stats = a.stats().await;
    let c = &stats["connections"];
    assert_eq!(c["total"], 4, "{stats}");
    assert_eq!(c["by_route"]["/ws/echo"], 2, "{stats}");
    assert_eq!(c["by_route"]["/ws"], 1, "{stats}");
    assert_eq!(c["by_route"]["/auth"], 1, "{stats}");
    assert_eq!(c["users"], 1, "{stats}");
    assert_eq!(c["ips"], 1, "{stats}");
    let limits = stats["limits"].as_array().expect("limits");
    let scope = |name: &str| {
        limits
            .iter()
            .find(|l| l["scope"] == name)
            .unwrap_or_else(|| panic!("no `{name}` limit: {stats}"))
    };
    let total = scope("total");
    assert_eq!(total["connections"], 4, "{total}");
    // Every connection comes from 127.0.0.1; alice is the only user.
    assert_eq!(total["top_ip_connections"], 4, "{total}");
    assert_eq!(total["top_user_connections"], 1, "{total}");
    let per_ip = total["max_connections_per_ip"]
        .as_f64()
        .expect("per-ip cap");
    assert_eq!(total["ip_utilisation"], 4.0 / per_ip, "{total}");
    let echo = scope("/ws/echo");
    assert_eq!(echo["top_ip_connections"], 2, "{echo}");
    assert_eq!(echo["top_user_connections"], 0, "{echo}");
    assert!(limits.iter().any(|l| l["scope"] == "/auth"), "{stats}");
    assert_eq!(stats["topics"], 1, "{stats}");
    assert_eq!(stats["draining"], false, "{stats}");

    // list: everything, ordered by id when unsorted
    let all = a.ok(json!({"id": 1, "cmd": "list"})).await;
    let ids = row_ids(&all);
    assert_eq!(ids.len(), 4, "{all}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (quiet_id, busy_id) = (ids[0], ids[1]);

    // list: filters
    assert_eq!(
        a.ids(json!({"route": "/ws/echo"})).await,
        vec![quiet_id, busy_id]
    );
    assert_eq!(a.ids(json!({"user": "alice"})).await, vec![alice_id]);
    assert_eq!(a.ids(json!({"user": "bob"})).await, Vec::<u64>::new());
    assert_eq!(a.ids(json!({"ip": "127.0.0.0/8"})).await.len(), 4);
    assert_eq!(a.ids(json!({"ip": "127.0.0.1"})).await.len(), 4);
    assert_eq!(a.ids(json!({"ip": "10.0.0.0/8"})).await, Vec::<u64>::new());
    assert_eq!(a.ids(json!({"topic": "news"})).await, vec![sub_id]);
    assert_eq!(
        a.ids(json!({"route": "/ws/echo", "topic": "news"})).await,
        Vec::<u64>::new()
    );
    a.fails(
        json!({"id": 2, "cmd": "list", "filter": {"ip": "ten"}}),
        "bad_arguments",
    )
    .await;

    // list: sorts and limit
    let by_msgs = a
        .ok(json!({"id": 3, "cmd": "list", "sort": "msgs_in"}))
        .await;
    assert_eq!(by_msgs[0]["id"], busy_id, "{by_msgs}");
    assert_eq!(by_msgs[0]["msgs_in"], 3, "{by_msgs}");
    assert_eq!(by_msgs[1]["msgs_in"], 1, "{by_msgs}");
    let by_out = a
        .ok(json!({"id": 4, "cmd": "list", "sort": "msgs_out", "limit": 1}))
        .await;
    assert_eq!(row_ids(&by_out), vec![busy_id], "{by_out}");
    let oldest = a
        .ok(json!({"id": 5, "cmd": "list", "sort": "age", "limit": 2}))
        .await;
    assert_eq!(row_ids(&oldest), vec![quiet_id, busy_id], "{oldest}");
    let row = &by_msgs[0];
    assert_eq!(row["route"], "/ws/echo", "{row}");
    assert_eq!(row["ip"], "127.0.0.1", "{row}");
    assert_eq!(row["user"], Value::Null, "{row}");

    // show
    let shown = a.ok(json!({"id": 6, "cmd": "show", "conn": sub_id})).await;
    assert_eq!(shown["id"], sub_id, "{shown}");
    assert_eq!(shown["topics"], json!(["news"]), "{shown}");
    assert_eq!(shown["subscriptions"], 1, "{shown}");
    assert_eq!(shown["route"], "/ws", "{shown}");
    let shown = a
        .ok(json!({"id": 7, "cmd": "show", "conn": alice_id}))
        .await;
    assert_eq!(shown["user"], "alice", "{shown}");
    assert_eq!(shown["topics"], json!([]), "{shown}");
    a.fails(
        json!({"id": 8, "cmd": "show", "conn": 999_999}),
        "not_found",
    )
    .await;

    // publish
    let published = a
        .ok(json!({"id": 9, "cmd": "publish", "topic": "news", "data": {"x": [1, "two"]}}))
        .await;
    assert_eq!(published["delivered"], 1, "{published}");
    assert_eq!(
        recv_json(&mut sub).await,
        json!({"type": "message", "topic": "news", "data": {"x": [1, "two"]}})
    );
    let nobody = a
        .ok(json!({"id": 10, "cmd": "publish", "topic": "empty", "data": 1}))
        .await;
    assert_eq!(nobody["delivered"], 0, "{nobody}");
    a.fails(
        json!({"id": 11, "cmd": "publish", "topic": "", "data": 1}),
        "bad_arguments",
    )
    .await;

    // config: the effective config, without secrets
    let config = a.ok(json!({"id": 12, "cmd": "config"})).await;
    let paths: Vec<&str> = config["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no routes: {config}"))
        .iter()
        .map(|r| r["path"].as_str().expect("a route path"))
        .collect();
    assert_eq!(paths, ["/ws/echo", "/ws", "/auth"], "{config}");
    assert_eq!(config["auth"]["t"]["plugin"], "token", "{config}");
    let text = config.to_string();
    assert!(text.contains("<redacted>"), "{text}");
    let stats_text = a.stats().await.to_string();
    for secret in ["sekrit-key", "sekrit-token"] {
        assert!(!text.contains(secret), "`config` shows {secret}: {text}");
        assert!(
            !stats_text.contains(secret),
            "`stats` shows {secret}: {stats_text}"
        );
    }

    // Nothing above disturbed the clients.
    echo_round_trip(&mut quiet, "still").await;
    ping_round_trip(&mut sub, 2).await;
}

// ---------------------------------------------------------------------------
// 2. Evict by every selector
// ---------------------------------------------------------------------------

#[tokio::test]
async fn evict_one_connection_by_id() {
    let d = Daemon::start("").await;
    let mut a = Admin::connect(&d).await;
    let mut first = d.connect("/ws/echo").await;
    let mut second = d.connect("/ws/echo").await;
    let ids = a.ids(json!({"route": "/ws/echo"})).await;
    assert_eq!(ids.len(), 2);

    // Unknown id; id and filter together.
    a.fails(
        json!({"id": 1, "cmd": "evict", "conn": 999_999}),
        "not_found",
    )
    .await;
    a.fails(
        json!({"id": 2, "cmd": "evict", "conn": ids[0], "filter": {"route": "/ws"}}),
        "bad_arguments",
    )
    .await;
    echo_round_trip(&mut first, "not evicted yet").await;

    let r = a
        .ok(json!({"id": 3, "cmd": "evict", "conn": ids[0], "reason": "bye now"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [ids[0]]}));
    expect_evicted(first, "bye now").await;
    echo_round_trip(&mut second, "still here").await;
    d.wait_metric(EVICTED, 1.0).await;

    // Without a reason, the default one.
    a.ok(json!({"id": 4, "cmd": "evict", "conn": ids[1]})).await;
    expect_evicted(second, "evicted by an operator").await;
    d.wait_metric(EVICTED, 2.0).await;
}

#[tokio::test]
async fn evict_by_user() {
    let d = Daemon::start(SECRETS).await;
    let mut a = Admin::connect(&d).await;
    let (alice1, id1) = join(&d, "/auth", &[ALICE]).await;
    let (alice2, id2) = join(&d, "/auth", &[ALICE]).await;
    let (mut bob, _) = join(&d, "/auth", &[BOB]).await;

    let r = a
        .ok(json!({"id": 1, "cmd": "evict", "filter": {"user": "alice"}, "reason": "alice out"}))
        .await;
    assert_eq!(r["evicted"], 2, "{r}");
    let mut evicted: Vec<u64> = r["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| i.as_u64().expect("an id"))
        .collect();
    evicted.sort_unstable();
    assert_eq!(evicted, vec![id1, id2], "{r}");
    expect_evicted(alice1, "alice out").await;
    expect_evicted(alice2, "alice out").await;
    ping_round_trip(&mut bob, 1).await;
    d.wait_metric(EVICTED, 2.0).await;

    let r = a
        .ok(json!({"id": 2, "cmd": "evict", "filter": {"user": "nobody"}}))
        .await;
    assert_eq!(r["evicted"], 0, "{r}");
    ping_round_trip(&mut bob, 2).await;
}

#[tokio::test]
async fn evict_by_topic_route_and_ip() {
    let d = Daemon::start("").await;
    let mut a = Admin::connect(&d).await;
    let echo1 = d.connect("/ws/echo").await;
    let echo2 = d.connect("/ws/echo").await;
    let (mut news, news_id) = join(&d, "/ws", &[]).await;
    subscribe(&mut news, "news").await;
    let (mut sport, sport_id) = join(&d, "/ws", &[]).await;
    subscribe(&mut sport, "sport").await;

    // topic
    let r = a
        .ok(json!({"id": 1, "cmd": "evict", "filter": {"topic": "news"}, "reason": "topic"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [news_id]}));
    expect_evicted(news, "topic").await;
    ping_round_trip(&mut sport, 1).await;

    // route
    let r = a
        .ok(json!({"id": 2, "cmd": "evict", "filter": {"route": "/ws/echo"}, "reason": "route"}))
        .await;
    assert_eq!(r["evicted"], 2, "{r}");
    expect_evicted(echo1, "route").await;
    expect_evicted(echo2, "route").await;
    ping_round_trip(&mut sport, 2).await;

    // ip: another network matches nobody, loopback matches the rest
    let r = a
        .ok(json!({"id": 3, "cmd": "evict", "filter": {"ip": "10.0.0.0/8"}}))
        .await;
    assert_eq!(r, json!({"evicted": 0, "ids": []}));
    ping_round_trip(&mut sport, 3).await;
    a.fails(
        json!({"id": 4, "cmd": "evict", "filter": {"ip": "not-an-ip"}}),
        "bad_arguments",
    )
    .await;
    a.wait_total(1).await;
    let r = a
        .ok(json!({"id": 5, "cmd": "evict", "filter": {"ip": "127.0.0.0/8"}, "reason": "ip"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [sport_id]}));
    expect_evicted(sport, "ip").await;

    d.wait_metric(EVICTED, 4.0).await;
    a.wait_total(0).await;
    assert_eq!(a.stats().await["closes"]["4000"], 4);
}

/// The `min_idle_s` and `min_age_s` in `evict_by_idle_time_and_by_age`.
/// The sleep that makes the old connections reach it is a bound from below,
/// so only the fresh side races: the active connection's last message and
/// the young connection are a few round trips old when the filters are
/// applied, and either process may stall for half a second before that
/// counts as old.
const OLD_S: f64 = 0.5;

#[tokio::test]
async fn evict_by_idle_time_and_by_age() {
    let d = Daemon::start("").await;
    let mut a = Admin::connect(&d).await;
    let idle = d.connect("/ws/echo").await;
    let mut active = d.connect("/ws/echo").await;
    let ids = a.ids(json!({"route": "/ws/echo"})).await;
    let (idle_id, active_id) = (ids[0], ids[1]);
    // Let idle time and age accumulate (the only way to get them), to a
    // little more than `OLD_S`.
    tokio::time::sleep(Duration::from_secs_f64(OLD_S + 0.1)).await;
    echo_round_trip(&mut active, "busy").await;
    let mut young = d.connect("/ws/echo").await;

    let r = a
        .ok(json!({"id": 1, "cmd": "evict", "filter": {"min_idle_s": OLD_S}, "reason": "idle"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [idle_id]}));
    expect_evicted(idle, "idle").await;
    echo_round_trip(&mut active, "still here").await;

    let r = a
        .ok(json!({"id": 2, "cmd": "evict", "filter": {"min_age_s": OLD_S}, "reason": "old"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [active_id]}));
    expect_evicted(active, "old").await;
    echo_round_trip(&mut young, "young").await;
    d.wait_metric(EVICTED, 2.0).await;
}

#[tokio::test]
async fn sorts_by_idle_and_queue_and_evicts_a_backlog_by_min_queue() {
    let d = Daemon::start("[limits]\nsend_queue = 100000\n").await;
    let mut a = Admin::connect(&d).await;
    let (mut stuck, stuck_id) = join(&d, "/ws", &[]).await;
    subscribe(&mut stuck, "firehose").await;
    let mut quiet = d.connect("/ws/echo").await;
    echo_round_trip(&mut quiet, "hello").await;
    let mut busy = d.connect("/ws/echo").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // `busy` is now the most recently active connection by 50 ms.
    echo_round_trip(&mut busy, "latest").await;
    let by_idle = a.ok(json!({"id": 1, "cmd": "list", "sort": "idle"})).await;
    let ids = row_ids(&by_idle);
    assert_eq!(ids.len(), 3, "{by_idle}");
    assert_eq!(
        ids.last(),
        Some(&ids_of(&by_idle, "/ws/echo")[1]),
        "{by_idle}"
    );
    assert_eq!(ctl_first(&d, "idle").await, ids[..1].to_vec());

    // `stuck` never reads: once the kernel's socket buffers are full, the
    // publishes wait in its send queue.
    let chunk = "x".repeat(60_000);
    let deadline = std::time::Instant::now() + PATIENCE;
    let depth = loop {
        for _ in 0..20 {
            a.ok(json!({"id": 2, "cmd": "publish", "topic": "firehose", "data": chunk}))
                .await;
        }
        let by_queue = a.ok(json!({"id": 3, "cmd": "list", "sort": "queue"})).await;
        let depth = by_queue[0]["queue"].as_u64().unwrap_or(0);
        if depth > 0 {
            assert_eq!(by_queue[0]["id"], stuck_id, "{by_queue}");
            assert_eq!(by_queue[1]["queue"], 0, "{by_queue}");
            break depth;
        }
        assert!(std::time::Instant::now() < deadline, "no backlog built up");
    };
    assert_eq!(ctl_first(&d, "queue").await, vec![stuck_id]);

    // Only the backlogged connection has `depth` messages waiting.
    let r = a
        .ok(json!({"id": 4, "cmd": "evict", "filter": {"min_queue": depth}, "reason": "backlog"}))
        .await;
    assert_eq!(r, json!({"evicted": 1, "ids": [stuck_id]}));
    // It gets what was queued for it, then 4000.
    expect_evicted(stuck, "backlog").await;
    echo_round_trip(&mut quiet, "still here").await;
    echo_round_trip(&mut busy, "still here").await;
    assert_eq!(d.metric(EVICTED).await, 1.0);
}

/// `wsgate ctl ls --sort <key> --limit 1 --json`: the id it lists.
async fn ctl_first(d: &Daemon, key: &str) -> Vec<u64> {
    let (code, out, err) = ctl(
        &d.admin_socket(),
        &["ls", "--sort", key, "--limit", "1", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    row_ids(&serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

/// The next line of a `ctl watch --json` process, as JSON.
async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = timeout(PATIENCE, rx.recv())
        .await
        .expect("a watch line in time")
        .expect("ctl watch is running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The ids of the rows on `route`, in row order.
fn ids_of(rows: &Value, route: &str) -> Vec<u64> {
    rows.as_array()
        .unwrap_or_else(|| panic!("rows: {rows}"))
        .iter()
        .filter(|r| r["route"] == route)
        .map(|r| r["id"].as_u64().expect("a row id"))
        .collect()
}

#[tokio::test]
async fn evict_dry_run_min_queue_and_the_empty_filter() {
    let d = Daemon::start("").await;
    let mut a = Admin::connect(&d).await;
    let mut echo = d.connect("/ws/echo").await;
    let (mut sub, _) = join(&d, "/ws", &[]).await;
    let everyone = a.ids(json!({})).await;
    assert_eq!(everyone.len(), 2);

    // min_queue: 0 matches everyone, a huge value no one (dry runs).
    let r = a
        .ok(json!({"id": 1, "cmd": "evict", "filter": {"min_queue": 0}, "dry_run": true}))
        .await;
    assert_eq!(r["dry_run"], true, "{r}");
    assert_eq!(r["count"], 2, "{r}");
    assert_eq!(row_ids(&r["connections"]), everyone, "{r}");
    let r = a
        .ok(json!({"id": 2, "cmd": "evict", "filter": {"min_queue": 1_000_000}, "dry_run": true}))
        .await;
    assert_eq!(r["count"], 0, "{r}");
    let r = a
        .ok(json!({"id": 3, "cmd": "list", "filter": {"min_queue": 1_000_000}}))
        .await;
    assert_eq!(r, json!([]));

    // A dry run by route names the target and evicts no one.
    let r = a
        .ok(json!({"id": 4, "cmd": "evict", "filter": {"route": "/ws"}, "dry_run": true}))
        .await;
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(r["connections"][0]["route"], "/ws", "{r}");

    // An empty filter is refused unless `all` is given.
    let e = a.fails(json!({"id": 5, "cmd": "evict"}), "refused").await;
    assert!(e["message"].as_str().unwrap_or("").contains("all"), "{e}");
    a.fails(json!({"id": 6, "cmd": "evict", "filter": {}}), "refused")
        .await;
    a.fails(
        json!({"id": 7, "cmd": "evict", "filter": {}, "dry_run": true}),
        "refused",
    )
    .await;
    let r = a
        .ok(json!({"id": 8, "cmd": "evict", "all": true, "dry_run": true}))
        .await;
    assert_eq!(r["count"], 2, "{r}");

    // Nobody was evicted by any of that.
    echo_round_trip(&mut echo, "here").await;
    ping_round_trip(&mut sub, 1).await;
    assert_eq!(a.stats().await["connections"]["total"], 2);
    assert_eq!(d.metric(EVICTED).await, 0.0);

    let r = a
        .ok(json!({"id": 9, "cmd": "evict", "all": true, "reason": "everyone"}))
        .await;
    assert_eq!(r["evicted"], 2, "{r}");
    expect_evicted(echo, "everyone").await;
    expect_evicted(sub, "everyone").await;
    d.wait_metric(EVICTED, 2.0).await;
}

// ---------------------------------------------------------------------------
// 3. Reload over the socket
// ---------------------------------------------------------------------------

/// Only the admin `reload` applies edits.
const NO_WATCH: &str = "[server]\nwatch_config = false\n";

#[tokio::test]
async fn reload_applies_a_good_file_and_refuses_a_broken_one() {
    let config = |n: usize| format!("{NO_WATCH}[limits]\nmax_connections_per_ip = {n}\n");
    let d = Daemon::start(&config(10)).await;
    let mut a = Admin::connect(&d).await;
    let mut ws = d.connect("/ws/echo").await;

    // Unchanged file: nothing to apply.
    let r = a.ok(json!({"id": 1, "cmd": "reload"})).await;
    assert_eq!(r["changes"]["applied"], json!([]), "{r}");

    d.write_config(&config(1));
    let r = a.ok(json!({"id": 2, "cmd": "reload"})).await;
    assert_eq!(r["dry_run"], false, "{r}");
    let applied = r["changes"]["applied"].as_array().expect("applied");
    assert!(
        applied
            .iter()
            .any(|c| c == "limits.max_connections_per_ip: 10 -> 1"),
        "{r}"
    );
    assert_eq!(d.refused("/ws/echo", &[]).await.0, 429);
    echo_round_trip(&mut ws, "kept").await;
    d.wait_reloads("ok", 2.0).await;
    let last = &a.stats().await["last_reload"];
    assert_eq!(
        (&last["ok"], &last["origin"]),
        (&json!(true), &json!("admin"))
    );

    // Broken TOML: an error with file:line:column; nothing changes. (Line
    // 5: the harness puts `listen` under `[server]`.)
    d.write_config(&format!(
        "{NO_WATCH}[limits]\nmax_connections_per_ip = = 5\n"
    ));
    let e = a
        .fails(json!({"id": 3, "cmd": "reload"}), "config_error")
        .await;
    let message = e["message"].as_str().expect("message");
    assert!(message.contains("wsgate.toml:5:26"), "{message}");
    assert_eq!(d.refused("/ws/echo", &[]).await.0, 429, "old limits stay");
    echo_round_trip(&mut ws, "kept").await;
    d.wait_reloads("error", 1.0).await;
    let last = &a.stats().await["last_reload"];
    assert_eq!(last["ok"], false, "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap_or("")
            .contains("wsgate.toml:5:26"),
        "{last}"
    );

    // Valid TOML, invalid value.
    d.write_config(&config(0));
    let e = a
        .fails(json!({"id": 4, "cmd": "reload"}), "config_error")
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_connections_per_ip"),
        "{e}"
    );

    // Fixed again.
    d.write_config(&config(3));
    let r = a.ok(json!({"id": 5, "cmd": "reload"})).await;
    assert!(
        r["changes"]["applied"]
            .as_array()
            .expect("applied")
            .iter()
            .any(|c| c == "limits.max_connections_per_ip: 1 -> 3"),
        "{r}"
    );
    let _second = d.connect("/ws/echo").await;
}

#[tokio::test]
async fn reload_reports_keys_that_need_a_restart() {
    let d = Daemon::start(NO_WATCH).await;
    let mut a = Admin::connect(&d).await;
    // The harness writes port 0 for `listen`; name another address.
    std::fs::write(
        &d.config_path,
        format!("{NO_WATCH}listen = \"127.0.0.1:1\"\n"),
    )
    .expect("write config");
    let r = a.ok(json!({"id": 1, "cmd": "reload"})).await;
    let restart = r["changes"]["restart_required"]
        .as_array()
        .expect("restart_required");
    assert_eq!(restart.len(), 1, "{r}");
    assert!(
        restart[0]
            .as_str()
            .is_some_and(|k| k.starts_with("server.listen:")),
        "{r}"
    );
    let stats = a.stats().await;
    assert_eq!(stats["last_reload"]["ok"], true, "{stats}");
    assert_eq!(
        stats["last_reload"]["restart_required"], r["changes"]["restart_required"],
        "{stats}"
    );
    // The running value stays: still served where it listened.
    let _ws = d.connect("/ws/echo").await;
    let (code, out, err) = ctl(&d.admin_socket(), &["reload"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("needs a restart: server.listen:"), "{out}");
}

#[tokio::test]
async fn reload_dry_run_reports_connections_over_a_tightened_cap_and_closes_none() {
    let config = |n: usize| {
        format!("{NO_WATCH}[limits]\nenforce_on_reload = true\nmax_connections_per_ip = {n}\n")
    };
    let d = Daemon::start(&config(10)).await;
    let mut a = Admin::connect(&d).await;
    let mut conns = echo_clients(&d, 3).await;
    let ids = a.ids(json!({})).await;
    assert_eq!(ids.len(), 3);

    d.write_config(&config(1));
    let r = a
        .ok(json!({"id": 1, "cmd": "reload", "dry_run": true}))
        .await;
    assert_eq!(r["dry_run"], true, "{r}");
    let over = r["over_cap"].as_array().expect("over_cap");
    assert_eq!(over.len(), 2, "{r}");
    // The oldest two would go.
    assert_eq!(row_ids(&r["over_cap"]), ids[..2].to_vec(), "{r}");
    assert!(over.iter().all(|o| o["cap"] == "ip"), "{r}");
    assert!(over.iter().all(|o| o["closes"] == true), "{r}");
    assert!(
        r["changes"]["applied"]
            .as_array()
            .expect("applied")
            .iter()
            .any(|c| c == "limits.max_connections_per_ip: 10 -> 1"),
        "{r}"
    );

    // Nobody was closed and the old cap still applies.
    for (i, ws) in conns.iter_mut().enumerate() {
        echo_round_trip(ws, &format!("alive {i}")).await;
    }
    assert_eq!(a.stats().await["connections"]["total"], 3);
    let _fourth = d.connect("/ws/echo").await;
    assert_eq!(d.metric("wsgate_closes_total{code=\"4006\"}").await, 0.0);
    assert_eq!(
        d.metric("wsgate_config_reloads_total{result=\"ok\"}").await,
        0.0,
        "a dry run is not a reload"
    );
}

#[tokio::test]
async fn reload_reports_connections_over_a_cap_it_does_not_enforce() {
    let config = |n: usize| format!("{NO_WATCH}[limits]\nmax_connections_per_ip = {n}\n");
    let d = Daemon::start(&config(10)).await;
    let mut a = Admin::connect(&d).await;
    let mut conns = echo_clients(&d, 3).await;
    let ids = a.ids(json!({})).await;

    d.write_config(&config(2));
    let dry = a
        .ok(json!({"id": 1, "cmd": "reload", "dry_run": true}))
        .await;
    assert_eq!(row_ids(&dry["over_cap"]), ids[..1].to_vec(), "{dry}");
    assert_eq!(dry["over_cap"][0]["closes"], false, "{dry}");
    assert_eq!(dry["over_cap"][0]["cap"], "ip", "{dry}");

    // The real reload reports the same and closes nobody.
    let r = a.ok(json!({"id": 2, "cmd": "reload"})).await;
    assert_eq!(r["over_cap"], dry["over_cap"], "{r}");
    for (i, ws) in conns.iter_mut().enumerate() {
        echo_round_trip(ws, &format!("still here {i}")).await;
    }
    assert_eq!(d.metric("wsgate_closes_total{code=\"4006\"}").await, 0.0);
    // The tightened cap binds new connections.
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 429, "{body}");
}

// ---------------------------------------------------------------------------
// 4. Drain over the socket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn drain_over_the_socket_closes_everyone_and_exits_zero() {
    let mut d = Daemon::start("[server]\ndrain_spread = \"0s\"\n").await;
    let (mut sub1, _) = join(&d, "/ws", &[]).await;
    let (mut sub2, _) = join(&d, "/ws", &[]).await;
    let mut echo = d.connect("/ws/echo").await;
    let mut a = Admin::connect(&d).await;

    a.fails(
        json!({"id": 1, "cmd": "drain", "timeout": "soon"}),
        "bad_arguments",
    )
    .await;
    let r = a
        .ok(json!({"id": 2, "cmd": "drain", "timeout": "10s"}))
        .await;
    assert_eq!(r, json!({"draining": true}));

    for ws in [&mut sub1, &mut sub2] {
        let notice = recv_type(ws, "shutdown").await;
        assert!(notice["reconnect_after_ms"].is_u64(), "{notice}");
        assert_eq!(expect_close(ws).await.0, 1001);
    }
    assert_eq!(expect_close(&mut echo).await.0, 1001);
    drop((sub1, sub2, echo));

    let code = d.wait_exit(PATIENCE).await;
    assert_eq!(code, Some(0), "{}", d.logs());
    assert!(
        !d.admin_socket().exists(),
        "the socket file is removed on exit"
    );
}

// ---------------------------------------------------------------------------
// 5. and 6. Who may use the socket
// ---------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn socket_mode_is_0600_by_default_and_configurable() {
    let d = Daemon::start("").await;
    assert_eq!(mode_of(&d.admin_socket()), 0o600);
    let open = Daemon::start("[server]\nadmin_socket_mode = \"0666\"\n").await;
    assert_eq!(mode_of(&open.admin_socket()), 0o666);
    // Both answer.
    Admin::connect(&d).await.stats().await;
    Admin::connect(&open).await.stats().await;
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.sock");
    // A crashed run's socket: bound, its listener gone, the file left.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let config = format!("[server]\nadmin_socket = \"{}\"\n", path.display());
    let _d = Daemon::start(&config).await;
    let stream = UnixStream::connect(&path)
        .await
        .expect("the daemon answers");
    let (read, write) = stream.into_split();
    let mut a = Admin {
        lines: BufReader::new(read).lines(),
        write,
    };
    assert!(a.stats().await["connections"]["total"].is_u64());

    // A second daemon on the same path must not take the live socket over.
    let second = dir.path().join("second.toml");
    std::fs::write(
        &second,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nwatch_config = false\nadmin_socket = \"{}\"\n",
            path.display()
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("serve")
        .arg("-c")
        .arg(&second)
        .env("WSGATE_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wsgate");
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second daemon did not give up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another process answers on"), "{stderr}");
    // The first one still answers on it.
    assert!(a.stats().await["connections"]["total"].is_u64());
}

#[tokio::test]
async fn another_uid_is_refused() {
    let (_, uid, _) = run("id", &["-u"]).await;
    if uid.trim() != "0" {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    if run("setpriv", &["--version"]).await.0 != 0 {
        eprintln!("skipped: setpriv is missing");
        return;
    }
    let d = Daemon::start("[server]\nadmin_socket_mode = \"0666\"\n").await;
    // `nobody` must be able to reach the socket and run the binary.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temp dir");
    let socket = d.admin_socket();
    let (code, stdout, stderr) = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_wsgate"),
            "ctl",
            "--socket",
            socket.to_str().expect("UTF-8"),
            "stats",
        ],
    )
    .await;
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("permission_denied"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("connections"), "{stdout}");
    d.wait_log(&["admin client refused", "uid=65534"]).await;
    // The daemon's own user still gets in.
    let (code, _, stderr) = ctl(&socket, &["stats"]).await;
    assert_eq!(code, 0, "{stderr}");
}

// ---------------------------------------------------------------------------
// 7. Malformed lines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_lines_get_errors_and_the_connection_stays() {
    let d = Daemon::start("[server]\nadmin_max_request_bytes = 1024\n").await;
    let mut a = Admin::connect(&d).await;
    let cases: &[(&str, &str, Value)] = &[
        ("{nope", "bad_request", Value::Null),
        ("[1]", "bad_request", Value::Null),
        ("\"stats\"", "bad_request", Value::Null),
        (r#"{"id":1}"#, "bad_request", json!(1)),
        (r#"{"cmd":"rm"}"#, "unknown_command", Value::Null),
        (r#"{"id":2,"cmd":7}"#, "bad_request", json!(2)),
        (
            r#"{"id":3,"cmd":"evict","dryrun":true}"#,
            "bad_arguments",
            json!(3),
        ),
        (r#"{"id":"x","cmd":"show"}"#, "bad_arguments", json!("x")),
        (
            r#"{"id":4,"cmd":"list","filter":{"usr":"a"}}"#,
            "bad_arguments",
            json!(4),
        ),
        (
            r#"{"id":5,"cmd":"list","sort":"size"}"#,
            "bad_arguments",
            json!(5),
        ),
        (r#"{"id":6,"cmd":"stats","x":1}"#, "bad_arguments", json!(6)),
    ];
    for (line, code, id) in cases {
        a.send_line(line).await;
        let answer = a.read().await;
        assert_eq!(answer["ok"], false, "{line} -> {answer}");
        assert_eq!(answer["error"]["code"], *code, "{line} -> {answer}");
        assert!(answer["error"]["message"].is_string(), "{line} -> {answer}");
        assert_eq!(answer["id"], *id, "{line} -> {answer}");
        // The same connection still serves.
        let stats = a.ok(json!({"id": 100, "cmd": "stats"})).await;
        assert_eq!(stats["connections"]["total"], 0);
    }
    // Blank lines are skipped.
    a.send_line("").await;
    a.ok(json!({"id": 101, "cmd": "stats"})).await;

    // A line over admin_max_request_bytes: an error, then the daemon hangs
    // up (it cannot find where the next request starts).
    a.send_line(&format!(
        "{{\"id\":1,\"cmd\":\"stats\",\"pad\":\"{}\"}}",
        "x".repeat(2000)
    ))
    .await;
    let answer = a.read().await;
    assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("admin_max_request_bytes"),
        "{answer}"
    );
    assert_eq!(a.read_line().await, None, "disconnected after a long line");
    // Other clients are unaffected.
    Admin::connect(&d).await.stats().await;
}

// ---------------------------------------------------------------------------
// 8. Watchers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_watcher_that_never_reads_holds_up_no_one() {
    let d = Daemon::start("[server]\nadmin_watch_buffer = 16\n").await;
    // This watcher asks for a snapshot every millisecond and never reads.
    let mut stuck = Admin::connect(&d).await;
    stuck
        .send_line(r#"{"id":"w","cmd":"watch","interval_ms":1}"#)
        .await;

    let url = d.url("/ws/echo");
    let mut a = Admin::connect(&d).await;
    for i in 0..200 {
        let (ws, _) = timeout(PATIENCE, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .expect("connect in time")
            .expect("connect");
        close_ws(ws).await;
        if i % 10 == 9 {
            let stats = timeout(Duration::from_secs(2), a.stats())
                .await
                .unwrap_or_else(|_| panic!("stats #{} was slow", i / 10));
            assert!(stats["connections"]["total"].is_u64(), "{stats}");
        }
    }
    a.wait_total(0).await;
    // Every churned connection was counted as closed.
    assert!(
        d.metric("wsgate_closes_total{code=\"1000\"}").await >= 200.0,
        "{}",
        d.logs()
    );

    // A fresh watcher that reads gets snapshots and live events.
    let mut w = Admin::connect(&d).await;
    w.send_line(r#"{"id":"w2","cmd":"watch","interval_ms":200}"#)
        .await;
    assert_eq!(
        w.read().await,
        json!({"id": "w2", "ok": true, "result": {"watching": true}})
    );
    // The first snapshot comes once the watcher is subscribed to events.
    let snapshot = w.event("snapshot", |_| true).await;
    assert_eq!(snapshot["stats"]["connections"]["total"], 0, "{snapshot}");
    assert_eq!(snapshot["connections"], json!([]), "{snapshot}");

    let ws = d.connect("/ws/echo").await;
    let connected = w.event("connected", |_| true).await;
    assert_eq!(connected["route"], "/ws/echo", "{connected}");
    assert_eq!(connected["ip"], "127.0.0.1", "{connected}");
    let id = connected["id"].as_u64().expect("id");
    let snapshot = w
        .event("snapshot", |s| s["stats"]["connections"]["total"] == 1)
        .await;
    assert_eq!(row_ids(&snapshot["connections"]), vec![id], "{snapshot}");
    close_ws(ws).await;
    let closed = w.event("closed", |e| e["id"] == id).await;
    assert_eq!(closed["code"], 1000, "{closed}");
    assert_eq!(closed["route"], "/ws/echo", "{closed}");

    // Refusals and evictions are events too.
    assert_eq!(d.refused("/nope", &[]).await.0, 404);
    let rejected = w.event("rejected", |_| true).await;
    assert_eq!(
        (
            &rejected["route"],
            &rejected["status"],
            &rejected["reason"],
            &rejected["ip"]
        ),
        (
            &json!("/nope"),
            &json!(404),
            &json!("not_found"),
            &json!("127.0.0.1")
        ),
        "{rejected}"
    );
    let victim = d.connect("/ws/echo").await;
    let connected = w.event("connected", |_| true).await;
    let victim_id = connected["id"].as_u64().expect("id");
    a.ok(json!({"id": 1, "cmd": "evict", "conn": victim_id, "reason": "watched"}))
        .await;
    let evicted = w.event("evicted", |_| true).await;
    assert_eq!(
        evicted,
        json!({"event": "evicted", "ids": [victim_id], "reason": "watched"})
    );
    expect_evicted(victim, "watched").await;
    let closed = w.event("closed", |e| e["id"] == victim_id).await;
    assert_eq!(closed["code"], 4000, "{closed}");

    // The stuck watcher was never disconnected: it fell behind and, once
    // it reads, is told how many events it missed.
    let lagged = stuck.event("lagged", |_| true).await;
    assert!(lagged["missed"].as_u64().unwrap_or(0) > 0, "{lagged}");
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let d = Daemon::start("[server]\nadmin_output_queue = 2\n").await;
    let stuck = UnixStream::connect(d.admin_socket())
        .await
        .expect("connect");
    let (mut read, mut write) = stuck.into_split();
    // Requests whose answers are large (`config`), one at a time so that
    // the daemon's writer keeps up until the socket's buffers are full and
    // it is stuck; no answer is ever read.
    let sender = tokio::spawn(async move {
        for _ in 0..5000 {
            if write
                .write_all(b"{\"id\":1,\"cmd\":\"config\"}\n")
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    });
    let hung_up = timeout(PATIENCE, sender)
        .await
        .expect("the daemon stops reading or hangs up in time")
        .expect("sender task");
    d.wait_log(&["admin client does not read its answers; disconnecting"])
        .await;
    // Whatever was already on its way can still be read; then the stream
    // ends (or is reset): the daemon no longer holds the connection.
    let mut sink = Vec::new();
    let ended = timeout(PATIENCE, read.read_to_end(&mut sink)).await;
    assert!(
        ended.is_ok(),
        "the connection was not closed (hung_up: {hung_up})"
    );

    // The daemon keeps serving others.
    let mut a = Admin::connect(&d).await;
    assert!(a.stats().await["connections"]["total"].is_u64());
}

// ---------------------------------------------------------------------------
// 9. `wsgate ctl`
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ctl_end_to_end() {
    let mut d = Daemon::start("[server]\ndrain_spread = \"0s\"\n").await;
    let socket = d.admin_socket();
    let mut echo = d.connect("/ws/echo").await;
    let (mut sub, sub_id) = join(&d, "/ws", &[]).await;
    subscribe(&mut sub, "news").await;

    let (code, out, err) = ctl(&socket, &["ls"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(out.contains("/ws/echo"), "{out}");

    let (code, out, err) = ctl(&socket, &["--json", "ls"]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{out}");
    let (code, out, _) = ctl(&socket, &["ls", "--topic", "news", "--json"]).await;
    assert_eq!(code, 0);
    let rows: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(row_ids(&rows), vec![sub_id], "{out}");

    let (code, out, err) = ctl(&socket, &["stats"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("connections"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("total")), "{out}");
    let (code, out, _) = ctl(&socket, &["--json", "stats"]).await;
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(stats["connections"]["total"], 2, "{out}");

    let (code, out, err) = ctl(&socket, &["show", &sub_id.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("topics: news"), "{out}");
    let (code, _, err) = ctl(&socket, &["show", "999999"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not_found"), "{err}");

    let (code, out, err) = ctl(&socket, &["publish", "news", r#"{"a":1}"#]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delivered to 1"), "{out}");
    assert_eq!(
        recv_type(&mut sub, "message").await["data"],
        json!({"a": 1})
    );
    let (code, _, err) = ctl(&socket, &["publish", "news", "not json"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("DATA must be JSON"), "{err}");

    let (code, out, err) = ctl(&socket, &["reload", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run"), "{out}");
    let (code, out, err) = ctl(&socket, &["config"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[[routes]]"), "{out}");

    // evict: no selector is refused with the daemon's message.
    let (code, out, err) = ctl(&socket, &["evict"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains("all"), "{err}");
    let (code, out, err) = ctl(&socket, &["evict", "--route", "/ws/echo", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would evict 1"), "{out}");
    echo_round_trip(&mut echo, "not yet").await;
    let (code, out, err) = ctl(
        &socket,
        &["evict", "--route", "/ws/echo", "--reason", "from ctl"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("evicted 1"), "{out}");
    expect_evicted(echo, "from ctl").await;
    ping_round_trip(&mut sub, 1).await;

    // No daemon at the path.
    let missing = d.dir.path().join("missing.sock");
    let (code, _, err) = ctl(&missing, &["stats"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach the admin socket"), "{err}");

    // watch streams events until the daemon goes away; drain starts that.
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["watch", "--json", "--interval-ms", "60000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ctl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first snapshot shows the subscriber; a new connection is an event.
    loop {
        if next_line(&mut lines_rx).await["event"] == "snapshot" {
            break;
        }
    }
    let late = d.connect("/ws/echo").await;
    loop {
        let e = next_line(&mut lines_rx).await;
        if e["event"] == "connected" {
            assert_eq!(e["route"], "/ws/echo", "{e}");
            break;
        }
    }
    close_ws(late).await;

    let (code, out, err) = ctl(&socket, &["drain", "--timeout", "5s"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("draining"), "{out}");
    assert!(recv_type(&mut sub, "shutdown").await["reconnect_after_ms"].is_u64());
    assert_eq!(expect_close(&mut sub).await.0, 1001);
    drop(sub);
    assert_eq!(d.wait_exit(PATIENCE).await, Some(0), "{}", d.logs());
    let status = watch.wait().expect("ctl watch exits");
    let mut err = String::new();
    use std::io::Read;
    let _ = watch
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("the daemon closed the connection"), "{err}");
}

// ---------------------------------------------------------------------------
// 10. Watch windows, rates and updates
// ---------------------------------------------------------------------------

/// Starts a watch with `request` on a new admin connection; returns it and
/// its first snapshot.
async fn watching(d: &Daemon, request: Value) -> (Admin, Value) {
    let mut w = Admin::connect(d).await;
    assert_eq!(w.ok(request).await, json!({"watching": true}));
    let snapshot = w.event("snapshot", |_| true).await;
    (w, snapshot)
}

/// The row of connection `id` in a snapshot.
fn row_of(snapshot: &Value, id: u64) -> Value {
    snapshot["connections"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no row {id} in {snapshot}"))
}

#[tokio::test]
async fn a_watch_shows_only_its_window_and_how_many_matched() {
    let d = Daemon::start("").await;
    let _echo = echo_clients(&d, 3).await;
    let (_a, a_id) = join(&d, "/ws", &[]).await;
    let (_b, b_id) = join(&d, "/ws", &[]).await;
    let mut admin = Admin::connect(&d).await;
    admin.wait_total(5).await;
    let all = admin.ids(json!({})).await;
    assert_eq!(all.len(), 5);

    let by_id = json!({"id": "w", "cmd": "watch", "interval_ms": 60000, "sort": "id", "order": "asc", "limit": 2});
    let (_w, first) = watching(&d, by_id.clone()).await;
    assert_eq!(row_ids(&first["connections"]), all[..2].to_vec(), "{first}");
    assert_eq!(
        (&first["matched"], &first["offset"]),
        (&json!(5), &json!(0))
    );
    assert_eq!(first["stats"]["connections"]["total"], 5, "{first}");
    // Watch rows carry rates; nothing was sent yet.
    assert_eq!(first["connections"][0]["in_rate"], 0.0, "{first}");
    assert_eq!(first["connections"][0]["out_rate"], 0.0, "{first}");

    let mut last_two = by_id.clone();
    last_two["offset"] = json!(3);
    let (_w, page) = watching(&d, last_two).await;
    assert_eq!(row_ids(&page["connections"]), all[3..].to_vec(), "{page}");
    assert_eq!((&page["matched"], &page["offset"]), (&json!(5), &json!(3)));

    let mut pubsub = by_id.clone();
    pubsub["filter"] = json!({"route": "/ws"});
    pubsub["limit"] = json!(10);
    let (_w, only) = watching(&d, pubsub).await;
    assert_eq!(row_ids(&only["connections"]), vec![a_id, b_id], "{only}");
    assert_eq!(only["matched"], 2, "{only}");

    // Largest id first when the order is left out.
    let (_w, newest) = watching(
        &d,
        json!({"id": 1, "cmd": "watch", "interval_ms": 60000, "sort": "id", "limit": 1}),
    )
    .await;
    assert_eq!(row_ids(&newest["connections"]), vec![all[4]], "{newest}");

    // `list` takes the same window, and its rows have no rates.
    let rows = admin
        .ok(json!({"id": 2, "cmd": "list", "sort": "id", "order": "asc", "offset": 3, "limit": 2}))
        .await;
    assert_eq!(row_ids(&rows), all[3..].to_vec(), "{rows}");
    assert!(rows[0].get("in_rate").is_none(), "{rows}");
    let rows = admin
        .ok(json!({"id": 3, "cmd": "list", "sort": "route", "order": "asc"}))
        .await;
    assert_eq!(ids_of(&rows, "/ws"), row_ids(&rows)[..2].to_vec(), "{rows}");
    admin
        .fails(
            json!({"id": 4, "cmd": "list", "order": "up"}),
            "bad_arguments",
        )
        .await;
    admin
        .fails(
            json!({"id": 5, "cmd": "watch", "filter": {"ip": "ten"}}),
            "bad_arguments",
        )
        .await;
    // A refused watch leaves the connection taking commands.
    assert_eq!(admin.stats().await["connections"]["total"], 5);
}

#[tokio::test]
async fn watch_rates_are_messages_per_second_between_two_ticks() {
    let d = Daemon::start("").await;
    let mut busy = d.connect("/ws/echo").await;
    let _idle = d.connect("/ws/echo").await;
    let mut admin = Admin::connect(&d).await;
    admin.wait_total(2).await;
    let ids = admin.ids(json!({})).await;
    let (busy_id, idle_id) = (ids[0], ids[1]);

    let (mut w, _) = watching(
        &d,
        json!({"id": "w", "cmd": "watch", "interval_ms": 200, "sort": "in_rate"}),
    )
    .await;
    for i in 0..20 {
        echo_round_trip(&mut busy, &format!("m{i}")).await;
    }
    // A tick after some of the echoes: the busy connection has a rate and
    // sorts first; the idle one has none.
    let rated = w
        .event("snapshot", |s| {
            s["connections"][0]["id"] == busy_id
                && s["connections"][0]["in_rate"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    assert!(row_of(&rated, busy_id)["out_rate"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(row_of(&rated, idle_id)["in_rate"], 0.0, "{rated}");
    assert_eq!(row_of(&rated, idle_id)["out_rate"], 0.0, "{rated}");
    // Once a whole interval has passed without a message, the rate is 0
    // again although the counts stay: a rate is for the last interval.
    let quiet = w
        .event("snapshot", |s| {
            let r = row_of(s, busy_id);
            r["msgs_in"] == 20 && r["in_rate"] == 0.0
        })
        .await;
    assert_eq!(row_of(&quiet, busy_id)["msgs_out"], 20, "{quiet}");
}

#[tokio::test]
async fn an_update_changes_the_window_and_loses_no_event() {
    let d = Daemon::start("").await;
    let _echo = echo_clients(&d, 3).await;
    let mut admin = Admin::connect(&d).await;
    admin.wait_total(3).await;
    let all = admin.ids(json!({})).await;

    // A long interval: every snapshot after the first is one an update asked
    // for.
    let (mut w, first) = watching(
        &d,
        json!({"id": "w", "cmd": "watch", "interval_ms": 60000, "sort": "id", "order": "asc", "limit": 1}),
    )
    .await;
    assert_eq!(row_ids(&first["connections"]), all[..1].to_vec(), "{first}");

    // The update, and at once a new connection.
    w.send_line(
        &json!({"id": "u", "cmd": "watch", "interval_ms": 60000, "sort": "id", "order": "asc", "offset": 1, "limit": 3})
            .to_string(),
    )
    .await;
    let late = d.connect("/ws/echo").await;
    // The answer and the new window come together; the connected event
    // comes before or after them, but it comes.
    let (mut window, mut connected) = (None, None);
    while window.is_none() || connected.is_none() {
        let line = w.read().await;
        if line["event"] == "connected" {
            connected = Some(line);
        } else if line["event"].is_null() {
            assert_eq!(
                line,
                json!({"id": "u", "ok": true, "result": {"watching": true}})
            );
            let snapshot = w.read().await;
            assert_eq!(snapshot["event"], "snapshot", "{snapshot}");
            window = Some(snapshot);
        } else {
            panic!("unexpected line {line}");
        }
    }
    let (window, connected) = (window.expect("window"), connected.expect("event"));
    assert_eq!(connected["route"], "/ws/echo", "{connected}");
    let late_id = connected["id"].as_u64().expect("id");
    assert_eq!(window["offset"], 1, "{window}");
    let rows = row_ids(&window["connections"]);
    assert!(rows.len() >= 2, "{window}");
    assert_eq!(rows[..2], all[1..], "{window}");
    // Events go on on the same stream, under the new window.
    close_ws(late).await;
    let closed = w.event("closed", |e| e["id"] == late_id).await;
    assert_eq!(closed["code"], 1000, "{closed}");
}

#[tokio::test]
async fn a_watching_connection_refuses_other_commands_and_goes_on() {
    let d = Daemon::start("[server]\nadmin_max_request_bytes = 1024\n").await;
    let (mut w, _) = watching(
        &d,
        json!({"id": "w", "cmd": "watch", "interval_ms": 60000, "limit": 1}),
    )
    .await;
    let error = w
        .fails(json!({"id": 7, "cmd": "stats"}), "bad_request")
        .await;
    assert_eq!(
        error["message"],
        "this connection is watching: only `watch` updates are taken here; send other commands on a second connection"
    );
    // Malformed lines get the parser's errors.
    w.send_line("{nope").await;
    let answer = w.read().await;
    assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    assert!(answer.get("id").is_none(), "{answer}");
    w.fails(
        json!({"id": 8, "cmd": "list", "sort": "size"}),
        "bad_arguments",
    )
    .await;
    w.fails(json!({"id": 9, "cmd": "rm"}), "unknown_command")
        .await;
    // A refused update keeps the old window.
    w.fails(
        json!({"id": 10, "cmd": "watch", "filter": {"ip": "ten"}}),
        "bad_arguments",
    )
    .await;
    w.send_line("").await;

    // The stream goes on, also once the client has closed its side.
    let ws = d.connect("/ws/echo").await;
    let connected = w.event("connected", |_| true).await;
    w.write.shutdown().await.expect("shut down the write side");
    close_ws(ws).await;
    let closed = w.event("closed", |e| e["id"] == connected["id"]).await;
    assert_eq!(closed["code"], 1000, "{closed}");

    // A line over admin_max_request_bytes: an error, then the stream ends.
    let (mut long, _) = watching(
        &d,
        json!({"id": "w2", "cmd": "watch", "interval_ms": 60000}),
    )
    .await;
    long.send_line(&format!(
        "{{\"cmd\":\"watch\",\"pad\":\"{}\"}}",
        "x".repeat(2000)
    ))
    .await;
    let answer = long.read().await;
    assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    assert_eq!(
        long.read_line().await,
        None,
        "disconnected after a long line"
    );
}

#[tokio::test]
async fn ctl_ls_sorts_by_any_column_either_way_with_an_offset() {
    let d = Daemon::start("").await;
    let _echo = echo_clients(&d, 3).await;
    let (_sub, sub_id) = join(&d, "/ws", &[]).await;
    let mut admin = Admin::connect(&d).await;
    admin.wait_total(4).await;
    let all = admin.ids(json!({})).await;
    let socket = d.admin_socket();
    let ls = |args: &[&str]| {
        let mut all_args = vec!["ls", "--json"];
        all_args.extend_from_slice(args);
        let all_args: Vec<String> = all_args.iter().map(|a| a.to_string()).collect();
        let socket = socket.clone();
        async move {
            let all_args: Vec<&str> = all_args.iter().map(String::as_str).collect();
            let (code, out, err) = ctl(&socket, &all_args).await;
            assert_eq!(code, 0, "{err}");
            row_ids(&serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
        }
    };
    assert_eq!(
        ls(&["--sort", "id"]).await,
        all.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        ls(&["--sort", "id", "--asc", "--offset", "1", "--limit", "2"]).await,
        all[1..3].to_vec()
    );
    assert_eq!(ls(&["--sort", "route", "--limit", "1"]).await, vec![all[0]]);
    assert_eq!(
        ls(&["--sort", "route", "--asc", "--limit", "1"]).await,
        vec![sub_id]
    );
    for key in [
        "user",
        "ip",
        "in-rate",
        "out-rate",
        "subscriptions",
        "msgs-in",
        "rtt",
    ] {
        assert_eq!(ls(&["--sort", key]).await.len(), 4, "--sort {key}");
    }
    let (code, _, err) = ctl(&socket, &["ls", "--sort", "size"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("in-rate"), "{err}");
}
