//! The `proxy` router against real upstreams: an in-test tokio-tungstenite
//! server (a WebSocket implementation other than wsgate's), raw sockets for
//! upstreams that misbehave, and a Python `websockets` app (tests/apps).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What an upstream saw of one connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    headers: HashMap<String, String>,
    path: String,
    messages: Vec<Message>,
    /// The close frame wsgate sent, once it came.
    close: Option<(u16, String)>,
    pings: usize,
    /// The connection has ended (TCP closed).
    ended: bool,
}

/// A tokio-tungstenite upstream: echoes every message; `close:<code>`
/// makes it close with that code and reason `bye`; `drop` drops TCP;
/// `flood` makes it send without end. Any path is served; the path
/// `/refuse` answers 403. Of the client's subprotocols it picks `v2`.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let all = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let all = Arc::clone(&all);
                tokio::spawn(serve_one(tcp, all));
            }
        });
        Upstream { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// Waits until connection `i` satisfies `what`.
    async fn wait(&self, i: usize, what: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.seen().get(i) {
                if what(s) {
                    return s.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "upstream connection {i}: {:?}",
                self.seen().get(i)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// tungstenite's handshake callback returns its own (large) error response.
#[allow(clippy::result_large_err)]
async fn serve_one(tcp: TcpStream, all: Arc<Mutex<Vec<Seen>>>) {
    let slot = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&slot);
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let mut s = record.lock().expect("seen");
        s.path = req.uri().to_string();
        for (k, v) in req.headers() {
            let v = v.to_str().unwrap_or("").to_string();
            s.headers
                .entry(k.as_str().to_string())
                .and_modify(|old| {
                    old.push_str(", ");
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        if req.uri().path() == "/refuse" {
            let mut refusal = ErrorResponse::new(Some("{\"app\":\"no entry\"}".to_string()));
            *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
            refusal
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("value"));
            return Err(refusal);
        }
        let offered = s.headers.get("sec-websocket-protocol").cloned();
        if offered.is_some_and(|o| o.split(',').any(|p| p.trim() == "v2")) {
            resp.headers_mut()
                .insert("sec-websocket-protocol", "v2".parse().expect("value"));
        }
        Ok(resp)
    };
    let index = {
        let mut all = all.lock().expect("seen");
        all.push(Seen::default());
        all.len() - 1
    };
    let sync = |all: &Arc<Mutex<Vec<Seen>>>| {
        all.lock().expect("seen")[index] = slot.lock().expect("seen").clone();
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        sync(&all);
        return;
    };
    sync(&all);
    while let Some(Ok(msg)) = ws.next().await {
        match &msg {
            Message::Ping(_) => slot.lock().expect("seen").pings += 1,
            Message::Close(frame) => {
                slot.lock().expect("seen").close = Some(
                    frame
                        .as_ref()
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
            }
            Message::Text(t) if t.as_str() == "drop" => {
                slot.lock().expect("seen").ended = true;
                sync(&all);
                return;
            }
            Message::Text(t) if t.as_str().starts_with("close:") => {
                let code: u16 = t.as_str()[6..].parse().expect("code");
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "bye".into(),
                    })))
                    .await;
            }
            Message::Text(t) if t.as_str() == "flood" => {
                sync(&all);
                let chunk = "f".repeat(16 * 1024);
                while ws.send(Message::text(chunk.clone())).await.is_ok() {}
                break;
            }
            Message::Text(_) | Message::Binary(_) => {
                slot.lock().expect("seen").messages.push(msg.clone());
                if ws.send(msg.clone()).await.is_err() {
                    break;
                }
            }
            _ => {}
        }
        sync(&all);
    }
    slot.lock().expect("seen").ended = true;
    sync(&all);
}

fn proxy_config(upstream: &str, extra_options: &str, extra: &str) -> String {
    format!(
        r#"
[server]
watch_config = false
drain_spread = "0s"
{extra}

[auth.tokens]
plugin = "token"
tokens = {{ "tok-alice" = "alice", "tok-bob" = "bob" }}

[[routes]]
path = "/ws/chat"
router = "proxy"
auth = "tokens"
[routes.options]
upstream = "{upstream}"
{extra_options}
"#
    )
}

#[tokio::test]
async fn messages_go_both_ways_with_the_user_the_subprotocol_and_the_forwarded_headers() {
    let up = Upstream::start().await;
    let d = Daemon::start(&proxy_config(&up.url("/app{path}?{query}"), "", "")).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        d.url("/ws/chat?room=7&access_token=tok-alice"),
    )
    .expect("request");
    for (k, v) in [
        ("sec-websocket-protocol", "v1, v2"),
        ("cookie", "session=abc"),
        ("x-wsgate-user", "mallory"),
        ("x-private", "not forwarded"),
        ("sec-websocket-extensions", "permessage-deflate"),
    ] {
        req.headers_mut().insert(k, v.parse().expect("value"));
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect through the proxy");
    assert!(
        resp.headers().get("sec-websocket-extensions").is_none(),
        "no extension is negotiated with the client"
    );
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().expect("ascii")),
        Some("v2"),
        "the upstream's choice comes back in the 101"
    );

    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("hello"));
    let blob: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    let big = Message::binary(blob[..60_000].to_vec());
    ws.send(big.clone()).await.expect("send");
    assert_eq!(recv(&mut ws).await, big);

    let seen = up.wait(0, |s| s.messages.len() == 2).await;
    assert_eq!(seen.path, "/app/ws/chat?room=7&access_token=tok-alice");
    assert_eq!(seen.messages[0], Message::text("hello"));
    let h = &seen.headers;
    assert_eq!(
        h.get("x-wsgate-user").map(String::as_str),
        Some("alice"),
        "{h:?}"
    );
    assert_eq!(h.get("cookie").map(String::as_str), Some("session=abc"));
    assert_eq!(
        h.get("x-forwarded-for").map(String::as_str),
        Some("127.0.0.1")
    );
    assert_eq!(h.get("x-forwarded-proto").map(String::as_str), Some("http"));
    assert_eq!(
        h.get("sec-websocket-protocol").map(String::as_str),
        Some("v1, v2")
    );
    assert!(!h.contains_key("x-private"), "{h:?}");
    assert!(
        !h.contains_key("sec-websocket-extensions"),
        "no extension is offered upstream: {h:?}"
    );

    // The admin table shows where the connection goes.
    let rows = d.admin(serde_json::json!({"id": 1, "cmd": "list"})).await;
    let row = &rows.as_array().expect("rows")[0];
    assert_eq!(
        row["upstream"]["target"],
        up.url("/app/ws/chat?room=7&access_token=tok-alice")
    );
    assert_eq!(row["upstream"]["state"], "open");
    assert_eq!(
        d.metric("wsgate_proxy_upstream_dials_total{result=\"ok\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn closes_travel_with_their_code_both_ways() {
    let up = Upstream::start().await;
    let d = Daemon::start(&proxy_config(&up.url("/echo"), "", "")).await;

    // The client closes: the upstream gets its code and reason.
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    ws.send(Message::text("one")).await.expect("send");
    recv(&mut ws).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4321),
        reason: "done here".into(),
    }))
    .await
    .expect("close");
    let seen = up.wait(0, |s| s.ended).await;
    assert_eq!(seen.close, Some((4321, "done here".to_string())));

    // The upstream closes: the client gets its code and reason.
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    ws.send(Message::text("close:4100")).await.expect("send");
    assert_eq!(expect_close(&mut ws).await, (4100, "bye".to_string()));
    up.wait(1, |s| s.ended).await;
}

#[tokio::test]
async fn an_upstream_that_is_down_before_or_during_a_connection_is_a_bad_gateway() {
    // Nothing listens at the upstream's address: 502 before the 101.
    let free = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = free.local_addr().expect("addr");
    drop(free);
    let d = Daemon::start(&proxy_config(&format!("ws://{gone}/ws"), "", "")).await;
    let (status, body) = d.refused("/ws/chat?access_token=tok-alice", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_unreachable"), "{body}");
    assert_eq!(
        d.metric("wsgate_proxy_upstream_dials_total{result=\"unreachable\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"upstream_unreachable\"}")
            .await,
        1.0
    );

    // The upstream drops TCP mid-stream: the client gets 1014.
    let up = Upstream::start().await;
    let d = Daemon::start(&proxy_config(&up.url("/echo"), "", "")).await;
    let (code, reason) = close_after(&d, "/ws/chat?access_token=tok-alice", "drop").await;
    assert_eq!((code, reason.as_str()), (1014, "upstream connection lost"));
}

/// Sends one text message and returns the close frame that comes back
/// (answering pings meanwhile), with a client made of wsgate's own codec (its client side): tungstenite
/// takes 1014 (bad gateway, registered by IANA in 2016) for an invalid
/// code and reports a protocol error of its own instead.
async fn close_after(d: &Daemon, path: &str, text: &str) -> (u16, String) {
    use bytes::BytesMut;
    use wsgate::ws::codec::{encode_masked, Decoder, Event, Need, OpCode};

    let mut tcp = TcpStream::connect(d.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: wsgate\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut buf = BytesMut::new();
    let head_end = loop {
        let n = tokio::time::timeout(PATIENCE, tcp.read_buf(&mut buf))
            .await
            .expect("the 101 in time")
            .expect("read");
        assert!(n > 0, "closed before the 101");
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let _ = buf.split_to(head_end);
    let mut frame = BytesMut::new();
    encode_masked(&mut frame, OpCode::Text, text.as_bytes(), [9, 8, 7, 6]);
    tcp.write_all(&frame).await.expect("write");
    let mut decoder = Decoder::client();
    loop {
        match decoder.decode(&mut buf, 1 << 20).expect("valid frames") {
            Ok(Event::Close(code, reason)) => return (code.unwrap_or(1005), reason),
            Ok(Event::Ping(payload)) => {
                let mut pong = BytesMut::new();
                encode_masked(&mut pong, OpCode::Pong, &payload, [1, 2, 3, 4]);
                tcp.write_all(&pong).await.expect("write");
            }
            Ok(_) => continue,
            Err(Need::Bytes(_)) => {
                let n = tokio::time::timeout(PATIENCE, tcp.read_buf(&mut buf))
                    .await
                    .expect("a close frame in time")
                    .expect("read");
                assert!(n > 0, "closed without a close frame");
            }
        }
    }
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_connect_timeout_is_a_gateway_timeout() {
    // Accepts TCP, never answers the upgrade.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            kept.push(tcp);
        }
    });
    let d = Daemon::start(&proxy_config(
        &format!("ws://{addr}/ws"),
        "connect_timeout = \"300ms\"",
        "",
    ))
    .await;
    let started = Instant::now();
    let (status, body) = d.refused("/ws/chat?access_token=tok-alice", &[]).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream_timeout"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        d.metric("wsgate_proxy_upstream_dials_total{result=\"timeout\"}")
            .await,
        1.0
    );
    held.abort();
}

#[tokio::test]
async fn the_upstreams_own_refusal_is_passed_to_the_client() {
    let up = Upstream::start().await;
    let d = Daemon::start(&proxy_config(&up.url("/refuse"), "", "")).await;
    let (status, body) = d.refused("/ws/chat?access_token=tok-alice", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body, "{\"app\":\"no entry\"}");
    assert_eq!(
        d.metric("wsgate_proxy_upstream_dials_total{result=\"refused\"}")
            .await,
        1.0
    );
    // wsgate's own refusals come first: no credential, no dial.
    let (status, _) = d.refused("/ws/chat", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_replaced_connection_closes_its_upstream_leg_too() {
    let up = Upstream::start().await;
    let d = Daemon::start(&format!(
        "{}[routes.limits]\nmax_connections_per_user = 1\non_user_limit = \"evict_oldest\"\n",
        proxy_config(&up.url("/echo"), "", "")
    ))
    .await;
    let mut old = d.connect("/ws/chat?access_token=tok-alice").await;
    old.send(Message::text("a")).await.expect("send");
    recv(&mut old).await;
    let mut new = d.connect("/ws/chat?access_token=tok-alice").await;
    assert_eq!(expect_close(&mut old).await.0, 4001);
    let seen = up.wait(0, |s| s.ended).await;
    assert_eq!(seen.close.as_ref().map(|c| c.0), Some(1001), "{seen:?}");
    // The new one works, on its own upstream connection.
    new.send(Message::text("b")).await.expect("send");
    assert_eq!(recv(&mut new).await, Message::text("b"));
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn eviction_and_drain_close_both_legs() {
    let up = Upstream::start().await;
    let mut d = Daemon::start(&proxy_config(&up.url("/echo"), "", "")).await;
    let mut a = d.connect("/ws/chat?access_token=tok-alice").await;
    let mut b = d.connect("/ws/chat?access_token=tok-bob").await;
    for ws in [&mut a, &mut b] {
        ws.send(Message::text("x")).await.expect("send");
        recv(ws).await;
    }
    let rows = d.admin(serde_json::json!({"id": 1, "cmd": "list"})).await;
    let alice = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["user"] == "alice")
        .expect("alice's row")["id"]
        .clone();
    d.admin(serde_json::json!({"id": 2, "cmd": "evict", "conn": alice}))
        .await;
    assert_eq!(expect_close(&mut a).await.0, 4000);
    let seen = up.wait(0, |s| s.ended).await;
    assert_eq!(seen.close.map(|c| c.0), Some(1001));

    d.signal("TERM");
    assert_eq!(expect_close(&mut b).await.0, 1001);
    let seen = up.wait(1, |s| s.ended).await;
    assert_eq!(seen.close.map(|c| c.0), Some(1001));
    assert_eq!(d.wait_exit(PATIENCE).await, Some(0));
}

#[tokio::test]
async fn wsgate_pings_the_upstream_leg() {
    let up = Upstream::start().await;
    let d = Daemon::start(&format!(
        "{}[routes.limits]\nping_interval = \"100ms\"\npong_timeout = \"2s\"\n",
        proxy_config(&up.url("/echo"), "", "")
    ))
    .await;
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    ws.send(Message::text("x")).await.expect("send");
    recv(&mut ws).await;
    up.wait(0, |s| s.pings >= 2).await;
    // The tungstenite upstream answered them: the connection lives on.
    ws.send(Message::text("y")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("y"));
}

#[tokio::test]
async fn a_reload_reaches_the_upstream_legs_pings() {
    let up = Upstream::start().await;
    let config = |ping: &str| {
        format!(
            "{}[routes.limits]\nping_interval = \"{ping}\"\npong_timeout = \"2s\"\n",
            proxy_config(&up.url("/echo"), "", "")
        )
    };
    let d = Daemon::start(&config("100ms")).await;
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    up.wait(0, |s| s.pings >= 2).await;

    // Pings off: the leg sends none after its next ping time.
    d.write_config(&config("0s"));
    d.signal("HUP");
    d.wait_reloads("ok", 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = up.wait(0, |_| true).await.pings;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = up.wait(0, |_| true).await.pings;
    assert_eq!(after, before, "the upstream leg kept pinging every 100ms");
    // The connection lives on, both legs.
    ws.send(Message::text("still")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("still"));
}

#[tokio::test]
async fn a_client_that_does_not_read_an_upstream_flood_is_a_slow_consumer() {
    let up = Upstream::start().await;
    let d = Daemon::start(&format!(
        "{}[routes.limits]\nsend_queue = 16\nsend_timeout = \"0s\"\nping_interval = \"0s\"\n",
        proxy_config(&up.url("/echo"), "", "")
    ))
    .await;
    let mut ws = d
        .connect_with_recv_buffer("/ws/chat?access_token=tok-alice", 4096)
        .await;
    ws.send(Message::text("flood")).await.expect("send");
    // The client reads nothing while the queue fills, then finds 4002.
    d.wait_metric(
        "wsgate_slow_consumer_closes_total{reason=\"queue_full\"}",
        1.0,
    )
    .await;
    assert_eq!(expect_close(&mut ws).await.0, 4002);
    let seen = up.wait(0, |s| s.ended).await;
    assert!(seen.headers.contains_key("x-wsgate-user"));
}

/// Answers the upgrade by hand and then never reads: an upstream whose
/// socket stops taking bytes.
async fn stalled_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let key = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("sec-websocket-key:")
                        .then(|| l[18..].trim().to_string())
                })
                .unwrap_or_default();
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
            kept.push(tcp);
        }
    });
    (addr, task)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn a_stalled_upstream_pauses_the_clients_reads_and_memory_stays_bounded() {
    let (addr, upstream) = stalled_upstream().await;
    let d = Daemon::start(&format!(
        "{}[routes.limits]\nmessages_per_second = 0\nping_interval = \"0s\"\nidle_timeout = \"0s\"\n",
        proxy_config(&format!("ws://{addr}/ws"), "", "")
    ))
    .await;
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    let before = rss_kib(d.pid());
    // 64 MiB offered: far more than the sockets' buffers on both legs.
    let chunk = Message::binary(vec![7u8; 64 * 1024]);
    let mut sent = 0usize;
    let stopped = loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.send(chunk.clone())).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => panic!("send failed after {sent}: {e}"),
            // The client's own socket stopped taking bytes: backpressure
            // reached its TCP.
            Err(_) => break true,
        }
        if sent == 1024 {
            break false;
        }
    };
    assert!(stopped, "all {sent} messages of 64 KiB were taken");
    let grown = rss_kib(d.pid()).saturating_sub(before);
    // What waits inside wsgate is what its read and write buffers held
    // when reads paused, not what the client offered.
    assert!(
        grown < 2 * 1024,
        "RSS grew by {grown} KiB after {sent} messages of 64 KiB"
    );
    assert!(sent < 512, "{sent} messages of 64 KiB were taken");
    upstream.abort();
}

#[tokio::test]
async fn a_python_websockets_app_behind_the_proxy() {
    if std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("python3 with the websockets package is needed (.ci/deps installs it)");
    }
    let port_file = tempfile::NamedTempFile::new().expect("tempfile");
    let mut app = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/apps/chat_app.py"
        ))
        .arg(port_file.path())
        .spawn()
        .expect("start the Python app");
    let deadline = Instant::now() + PATIENCE;
    let port = loop {
        let text = std::fs::read_to_string(port_file.path()).unwrap_or_default();
        if let Ok(port) = text.trim().parse::<u16>() {
            break port;
        }
        assert!(Instant::now() < deadline, "the Python app did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let d = Daemon::start(&proxy_config(
        &format!("ws://127.0.0.1:{port}/ws/chat"),
        "",
        "",
    ))
    .await;
    let mut alice = d.connect("/ws/chat?access_token=tok-alice").await;
    assert_eq!(recv(&mut alice).await, Message::text("welcome alice"));
    let mut bob = d.connect("/ws/chat?access_token=tok-bob").await;
    assert_eq!(recv(&mut bob).await, Message::text("welcome bob"));
    // The app's own broadcast, with the user wsgate told it.
    alice.send(Message::text("hi all")).await.expect("send");
    assert_eq!(recv(&mut bob).await, Message::text("alice: hi all"));
    assert_eq!(recv(&mut alice).await, Message::text("alice: hi all"));
    // The app closes with its own code.
    bob.send(Message::text("/quit")).await.expect("send");
    assert_eq!(expect_close(&mut bob).await, (4200, "see you".to_string()));
    let _ = app.kill();
    let _ = app.wait();
}

#[tokio::test]
async fn an_upstream_that_misses_its_pongs_is_a_bad_gateway() {
    let (addr, upstream) = stalled_upstream().await;
    let d = Daemon::start(&format!(
        "{}[routes.limits]\nping_interval = \"100ms\"\npong_timeout = \"200ms\"\n",
        proxy_config(&format!("ws://{addr}/ws"), "", "")
    ))
    .await;
    let (code, reason) = close_after(&d, "/ws/chat?access_token=tok-alice", "anyone?").await;
    assert_eq!(
        (code, reason.as_str()),
        (1014, "upstream did not answer a ping")
    );
    upstream.abort();
}

#[tokio::test]
async fn a_wss_upstream_is_dialled_with_the_configured_ca() {
    // The upstream: another wsgate, echoing on a TLS listener with a
    // certificate of a CA of the test's own.
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = LocalCert::new(certs.path());
    let upstream = Daemon::start(&format!(
        r#"
[server]
watch_config = false
[[server.listeners]]
name = "tls"
address = "127.0.0.1:0"
tls = {{ cert_file = "{cert_file}", key_file = "{key_file}" }}
[[routes]]
path = "/ws/echo"
router = "echo"
"#,
        cert_file = cert.cert_file.display(),
        key_file = cert.key_file.display()
    ))
    .await;
    let port = upstream.listener("tls").await.port();
    let ca_file = format!("ca_file = \"{}\"", cert.ca_file.display());
    let d = Daemon::start(&proxy_config(
        &format!("wss://localhost:{port}/ws/echo"),
        &ca_file,
        "",
    ))
    .await;
    let mut ws = d.connect("/ws/chat?access_token=tok-alice").await;
    ws.send(Message::text("over TLS")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("over TLS"));

    // An upstream whose certificate the CA did not sign is unreachable.
    let wrong = format!("ca_file = \"{}\"", stranger_ca(certs.path()).display());
    let d = Daemon::start(&proxy_config(
        &format!("wss://localhost:{port}/ws/echo"),
        &wrong,
        "",
    ))
    .await;
    let (status, body) = d.refused("/ws/chat?access_token=tok-alice", &[]).await;
    assert_eq!(status, 502, "{body}");
}
