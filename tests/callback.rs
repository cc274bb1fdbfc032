//! The `callback` router against a real HTTP backend: an in-test hyper
//! server on loopback that records every request and answers from a
//! script (or a test's own handler).

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const API_KEY: &str = "k";

/// One request the backend received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

impl Seen {
    fn event(&self) -> &str {
        self.body["event"].as_str().unwrap_or("")
    }
}

/// What the backend answers: a status and a body, or nothing ever.
enum Reply {
    Answer(u16, String),
    Stall,
}

type Handler = Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// An HTTP/1 backend on 127.0.0.1:0 (hyper's server) that records every
/// request before its handler answers.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The most requests of one connection (`conn`) that were in progress
    /// at once.
    most_at_once: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(handler: Handler) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let active: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        {
            let seen = Arc::clone(&seen);
            let most_at_once = Arc::clone(&most_at_once);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let seen = Arc::clone(&seen);
                    let most = Arc::clone(&most_at_once);
                    let active = Arc::clone(&active);
                    let handler = Arc::clone(&handler);
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let seen = Arc::clone(&seen);
                                let most = Arc::clone(&most);
                                let active = Arc::clone(&active);
                                let handler = Arc::clone(&handler);
                                async move {
                                    let path = req.uri().path().to_string();
                                    let headers = req
                                        .headers()
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_string(),
                                                v.to_str().unwrap_or("").to_string(),
                                            )
                                        })
                                        .collect();
                                    let raw = req.into_body().collect().await?.to_bytes();
                                    let body: Value =
                                        serde_json::from_slice(&raw).expect("a JSON event");
                                    let conn = body["conn"].as_str().unwrap_or("").to_string();
                                    let s = Seen {
                                        path,
                                        headers,
                                        body,
                                    };
                                    seen.lock().expect("seen").push(s.clone());
                                    {
                                        let mut active = active.lock().expect("active");
                                        let n = active.entry(conn.clone()).or_default();
                                        *n += 1;
                                        most.fetch_max(*n, Ordering::SeqCst);
                                    }
                                    let reply = handler(s).await;
                                    *active.lock().expect("active").entry(conn).or_default() -= 1;
                                    match reply {
                                        Reply::Answer(status, body) => Ok::<_, hyper::Error>(
                                            hyper::Response::builder()
                                                .status(status)
                                                .header("content-type", "application/json")
                                                .body(Full::new(Bytes::from(body)))
                                                .expect("response"),
                                        ),
                                        Reply::Stall => std::future::pending().await,
                                    }
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
        }
        Backend {
            addr,
            seen,
            most_at_once,
        }
    }

    /// The scripted backend (see [`script`]).
    async fn scripted() -> Backend {
        Backend::start(Arc::new(|s| Box::pin(async move { script(&s) }))).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The requests of one connection (by `conn`), in the order they came.
    fn of_conn(&self, conn: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.body["conn"] == conn)
            .collect()
    }

    /// Waits until `done` holds for what was received.
    async fn wait(&self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the backend never saw {what}: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the `close` event of `conn` and returns it.
    async fn close_of(&self, conn: &str) -> Value {
        let seen = self
            .wait(&format!("the close of {conn}"), |seen| {
                seen.iter()
                    .any(|s| s.event() == "close" && s.body["conn"] == conn)
            })
            .await;
        seen.into_iter()
            .find(|s| s.event() == "close" && s.body["conn"] == conn)
            .map(|s| s.body)
            .expect("the close event")
    }
}

/// The scripted answers. `open` on the backend path `/refuse` is 403, on
/// `/broken` 500, on `/stall` never answered; elsewhere it sends `welcome`
/// and subscribes `room.open`. A `message` acts on its text: `stall`,
/// `fail` (500), `refuse` (404), `bad` (a close code that is not allowed),
/// `sub:<topic>`, `close` (4000 `bye`), `json` (a JSON object to send),
/// `silent` (an empty answer); anything else is echoed as `echo:<text>`,
/// a binary message as `bin:<base64>`. `close` gets an empty 200.
fn script(s: &Seen) -> Reply {
    let ok = |body: Value| Reply::Answer(200, body.to_string());
    match s.event() {
        "open" => match s.path.as_str() {
            "/refuse" => Reply::Answer(403, "{\"error\":\"no\"}".into()),
            "/broken" => Reply::Answer(500, "oops".into()),
            "/stall" => Reply::Stall,
            "/quiet" => Reply::Answer(204, String::new()),
            _ => ok(json!({"send": ["welcome"], "subscribe": ["room.open"]})),
        },
        "message" => {
            let data = s.body["data"].as_str().unwrap_or("");
            if s.body["binary"] == true {
                return ok(json!({"send": [format!("bin:{data}")]}));
            }
            match data {
                "stall" => Reply::Stall,
                "fail" => Reply::Answer(500, "oops".into()),
                "refuse" => Reply::Answer(404, String::new()),
                "bad" => ok(json!({"send": ["never"], "close": {"code": 1005}})),
                "close" => ok(json!({"close": {"code": 4000, "reason": "bye"}})),
                "json" => Reply::Answer(200, r#"{"send":[{"n": 1}, 2]}"#.into()),
                "silent" => Reply::Answer(200, String::new()),
                _ => match data.strip_prefix("sub:") {
                    Some(topic) => ok(json!({
                        "subscribe": [topic],
                        "send": [format!("subscribed {topic}")],
                    })),
                    None => ok(json!({"send": [format!("echo:{data}")]})),
                },
            }
        }
        _ => Reply::Answer(200, String::new()),
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

fn route(path: &str, url: &str, options: &str) -> String {
    format!(
        "[[routes]]\npath = \"{path}\"\nrouter = \"callback\"\nauth = \"tokens\"\n\
         [routes.options]\nurl = \"{url}\"\n{options}\n"
    )
}

fn config(routes: &str) -> String {
    format!(
        r#"
[server]
watch_config = false
drain_spread = "0s"

[api]
keys = ["{API_KEY}"]

[auth.tokens]
plugin = "token"
tokens = {{ "tok-alice" = "alice", "tok-bob" = "bob" }}

{routes}
"#
    )
}

async fn connect_as(d: &Daemon, path: &str, token: &str) -> Ws {
    d.try_connect(path, &[("Authorization", &format!("Bearer {token}"))])
        .await
        .unwrap_or_else(|(s, b)| panic!("connect {path}: {s} {b}"))
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

async fn recv_text(ws: &mut Ws) -> String {
    match recv(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next message must be an error with this code.
async fn expect_error(ws: &mut Ws, code: &str) {
    let reply = recv_json(ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
}

/// Sends one message and waits for its echo: the connection still works.
async fn round_trip(ws: &mut Ws, text: &str) {
    send_text(ws, text).await;
    assert_eq!(recv_text(ws).await, format!("echo:{text}"));
}

/// The connection id, from the backend's first `message` event of the
/// connection whose message had this text.
async fn conn_of(backend: &Backend, text: &str) -> String {
    let seen = backend
        .wait(&format!("message {text}"), |seen| {
            seen.iter().any(|s| s.body["data"] == text)
        })
        .await;
    let s = seen
        .iter()
        .find(|s| s.body["data"] == text)
        .expect("the message");
    s.body["conn"].as_str().expect("conn").to_string()
}

async fn requests(d: &Daemon, event: &str, result: &str) -> f64 {
    d.metric(&format!(
        "wsgate_callback_requests_total{{event=\"{event}\",result=\"{result}\"}}"
    ))
    .await
}

#[tokio::test]
async fn events_are_posted_in_order_one_at_a_time_and_answered_in_order() {
    let backend = Backend::scripted().await;
    let d = Daemon::start(&config(&route("/ws/rpc", &backend.url("/events"), ""))).await;
    let mut ws = connect_as(&d, "/ws/rpc", "tok-alice").await;
    assert_eq!(recv_text(&mut ws).await, "welcome");

    // Sent back to back, without waiting for answers.
    const N: usize = 50;
    for i in 0..N {
        send_text(&mut ws, &format!("m{i}")).await;
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 0xff]))
        .await
        .expect("send");
    send_text(&mut ws, "json").await;
    for i in 0..N {
        assert_eq!(recv_text(&mut ws).await, format!("echo:m{i}"));
    }
    assert_eq!(recv_text(&mut ws).await, "bin:AAEC/w==");
    assert_eq!(recv_text(&mut ws).await, "{\"n\": 1}");
    assert_eq!(recv_text(&mut ws).await, "2");

    let conn = conn_of(&backend, "m0").await;
    assert!(conn.parse::<u64>().is_ok(), "a decimal id: {conn}");
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .expect("close");
    let close = backend.close_of(&conn).await;
    assert_eq!(
        close,
        json!({"event": "close", "conn": conn, "user": "alice", "route": "/ws/rpc",
               "code": 1000, "reason": "done"})
    );

    let seen = backend.seen();
    // Posted before the 101, with the id the connection's later events carry.
    assert_eq!(
        seen[0].body,
        json!({"event": "open", "conn": conn, "user": "alice", "route": "/ws/rpc"})
    );
    assert_eq!(seen[0].path, "/events");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let events = backend.of_conn(&conn);
    assert_eq!(events.len(), N + 4, "{events:#?}");
    assert_eq!(events[0].event(), "open");
    let events = &events[1..];
    for (i, s) in events[..N].iter().enumerate() {
        assert_eq!(
            s.body,
            json!({"event": "message", "conn": conn, "user": "alice", "route": "/ws/rpc",
                   "data": format!("m{i}"), "binary": false})
        );
    }
    assert_eq!(events[N].body["data"], "AAEC/w==");
    assert_eq!(events[N].body["binary"], true);
    assert_eq!(events[N + 2].event(), "close");
    assert_eq!(
        backend.most_at_once.load(Ordering::SeqCst),
        1,
        "one request at a time per connection"
    );
    assert_eq!(requests(&d, "message", "ok").await, (N + 2) as f64);
    assert_eq!(requests(&d, "open", "ok").await, 1.0);
    assert_eq!(requests(&d, "close", "ok").await, 1.0);
    assert_eq!(
        d.metric("wsgate_callback_request_seconds_count{event=\"message\"}")
            .await,
        (N + 2) as f64
    );
}

#[tokio::test]
async fn every_connection_is_reachable_by_its_own_topics() {
    let backend = Backend::scripted().await;
    let d = Daemon::start(&config(&route("/ws/rpc", &backend.url("/quiet"), ""))).await;
    let mut alice = connect_as(&d, "/ws/rpc", "tok-alice").await;
    let mut bob = connect_as(&d, "/ws/rpc", "tok-bob").await;
    round_trip(&mut alice, "hello from alice").await;
    round_trip(&mut bob, "hello from bob").await;
    let conn = conn_of(&backend, "hello from alice").await;

    assert_eq!(
        d.publish(API_KEY, &format!("conn.{conn}"), "{\"to\":\"conn\"}")
            .await,
        1
    );
    let got = recv_json(&mut alice).await;
    assert_eq!(
        got,
        json!({"type": "message", "topic": format!("conn.{conn}"), "data": {"to": "conn"}})
    );
    assert_eq!(d.publish(API_KEY, "user.bob", "\"hi bob\"").await, 1);
    assert_eq!(recv_json(&mut bob).await["data"], "hi bob");
    // Nothing else reached alice: her next message is her own echo.
    round_trip(&mut alice, "still here").await;
}

#[tokio::test]
async fn answers_send_subscribe_and_close() {
    let backend = Backend::scripted().await;
    let d = Daemon::start(&config(&route("/ws/rpc", &backend.url("/events"), ""))).await;
    let mut ws = connect_as(&d, "/ws/rpc", "tok-alice").await;
    // The open answer's `send` and `subscribe` are applied as it opens.
    assert_eq!(recv_text(&mut ws).await, "welcome");
    assert_eq!(d.publish(API_KEY, "room.open", "1").await, 1);
    assert_eq!(recv_json(&mut ws).await["topic"], "room.open");

    // A message answer's `subscribe` is in force as the answer is applied:
    // before its `send`, with no later message from the client.
    send_text(&mut ws, "sub:room.b").await;
    assert_eq!(recv_text(&mut ws).await, "subscribed room.b");
    assert_eq!(d.publish(API_KEY, "room.b", "{\"b\":true}").await, 1);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "message", "topic": "room.b", "data": {"b": true}})
    );
    round_trip(&mut ws, "next").await;

    // A malformed answer (close code 1005) is refused whole.
    send_text(&mut ws, "bad").await;
    expect_error(&mut ws, "backend_malformed").await;
    round_trip(&mut ws, "after bad").await;
    assert_eq!(requests(&d, "message", "malformed").await, 1.0);

    let conn = conn_of(&backend, "next").await;
    send_text(&mut ws, "close").await;
    assert_eq!(expect_close(&mut ws).await, (4000, "bye".to_string()));
    let close = backend.close_of(&conn).await;
    assert_eq!(
        (close["code"].clone(), close["reason"].clone()),
        (json!(4000), json!("bye"))
    );
}

#[tokio::test]
async fn backend_failures_are_told_and_the_connection_goes_on() {
    let backend = Backend::scripted().await;
    let gone = closed_port().await;
    let routes = route("/ws/rpc", &backend.url("/quiet"), "timeout = \"300ms\"")
        + &route(
            "/ws/gone",
            &format!("http://{gone}/events"),
            "events = [\"message\"]",
        );
    let d = Daemon::start(&config(&routes)).await;
    let mut ws = connect_as(&d, "/ws/rpc", "tok-alice").await;

    send_text(&mut ws, "stall").await;
    send_text(&mut ws, "fail").await;
    send_text(&mut ws, "refuse").await;
    send_text(&mut ws, "silent").await;
    expect_error(&mut ws, "backend_timeout").await;
    expect_error(&mut ws, "backend_error").await;
    expect_error(&mut ws, "backend_refused").await;
    round_trip(&mut ws, "after the failures").await;
    assert_eq!(requests(&d, "message", "timeout").await, 1.0);
    assert_eq!(requests(&d, "message", "status_5xx").await, 1.0);
    assert_eq!(requests(&d, "message", "refused").await, 1.0);
    // `silent` and the round trip.
    assert_eq!(requests(&d, "message", "ok").await, 2.0);

    // No open event on a route without it: the backend is not asked.
    let mut lost = connect_as(&d, "/ws/gone", "tok-bob").await;
    send_text(&mut lost, "anyone?").await;
    expect_error(&mut lost, "backend_unreachable").await;
    send_text(&mut lost, "again?").await;
    expect_error(&mut lost, "backend_unreachable").await;
    assert_eq!(requests(&d, "message", "unreachable").await, 2.0);
    assert_eq!(requests(&d, "open", "unreachable").await, 0.0);
    round_trip(&mut ws, "the other connection is unaffected").await;
}

#[tokio::test]
async fn open_is_refused_before_the_101() {
    let backend = Backend::scripted().await;
    let gone = closed_port().await;
    let routes = route("/ws/refused", &backend.url("/refuse"), "")
        + &route("/ws/broken", &backend.url("/broken"), "")
        + &route("/ws/slow", &backend.url("/stall"), "timeout = \"300ms\"")
        + &route("/ws/gone", &format!("http://{gone}/events"), "");
    let d = Daemon::start(&config(&routes)).await;
    let auth = [("Authorization", "Bearer tok-alice")];

    let (status, body) = d.refused("/ws/refused", &auth).await;
    assert_eq!(status, 403, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON refusal");
    assert_eq!(body["error"], "callback_refused", "{body}");
    assert_eq!(d.refused("/ws/broken", &auth).await.0, 502);
    assert_eq!(d.refused("/ws/slow", &auth).await.0, 504);
    assert_eq!(d.refused("/ws/gone", &auth).await.0, 502);

    assert_eq!(requests(&d, "open", "refused").await, 1.0);
    assert_eq!(requests(&d, "open", "status_5xx").await, 1.0);
    assert_eq!(requests(&d, "open", "timeout").await, 1.0);
    assert_eq!(requests(&d, "open", "unreachable").await, 1.0);
    for reason in [
        "callback_refused",
        "callback_error",
        "callback_timeout",
        "callback_unreachable",
    ] {
        assert_eq!(
            d.metric(&format!("wsgate_rejections_total{{reason=\"{reason}\"}}"))
                .await,
            1.0,
            "{reason}"
        );
    }
    // An `open` the backend refused (or never got) has no close; one that
    // timed out is ended for the backend, with the id its `open` carried.
    let seen = backend
        .wait("the close of the timed-out open", |seen| {
            seen.iter().any(|s| s.event() == "close")
        })
        .await;
    let slow = seen
        .iter()
        .find(|s| s.event() == "open" && s.path == "/stall")
        .expect("the slow open");
    let conn = slow.body["conn"].as_str().expect("an id").to_string();
    let closes: Vec<&Seen> = seen.iter().filter(|s| s.event() == "close").collect();
    assert_eq!(closes.len(), 1, "{seen:#?}");
    assert_eq!(
        closes[0].body,
        json!({"event": "close", "conn": conn, "user": "alice", "route": "/ws/slow",
               "code": 1006, "reason": "upgrade not completed"})
    );
    assert_eq!(closes[0].path, "/stall");
}

/// Connects with a small socket send buffer (set before connecting, so the
/// kernel does not grow it): what the client can write while wsgate does
/// not read is bounded by the socket buffers, not by the host's settings.
async fn connect_with_send_buffer(d: &Daemon, path: &str, token: &str, bytes: u32) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
    let stream = socket.connect(d.addr).await.expect("connect");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(d.url(path))
            .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    ws
}

#[tokio::test]
async fn a_stalled_backend_pauses_the_clients_reads_at_max_in_flight() {
    const MAX_IN_FLIGHT: usize = 4;
    // Far more than the socket buffers hold: the client cannot have sent
    // them all while wsgate does not read.
    const N: usize = 200;
    const SIZE: usize = 32 * 1024;

    let daemon_addr: Arc<OnceLock<SocketAddr>> = Arc::default();
    let release = Arc::new(Notify::new());
    // Per message event: how many events the connection had queued or
    // running when its answer was about to go (messages read by wsgate
    // minus those already answered).
    let depths: Arc<Mutex<Vec<usize>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let handler: Handler = {
        let (daemon_addr, release, depths, answered) = (
            Arc::clone(&daemon_addr),
            Arc::clone(&release),
            Arc::clone(&depths),
            Arc::clone(&answered),
        );
        Arc::new(move |s| {
            let (daemon_addr, release, depths, answered) = (
                Arc::clone(&daemon_addr),
                Arc::clone(&release),
                Arc::clone(&depths),
                Arc::clone(&answered),
            );
            Box::pin(async move {
                if s.event() != "message" {
                    return Reply::Answer(200, String::new());
                }
                if answered.load(Ordering::SeqCst) == 0 {
                    release.notified().await;
                }
                let addr = *daemon_addr.get().expect("the daemon's address");
                let read = metric_at(addr, "wsgate_messages_in_total").await as usize;
                let done = answered.fetch_add(1, Ordering::SeqCst);
                depths.lock().expect("depths").push(read - done);
                Reply::Answer(200, String::new())
            })
        })
    };
    let backend = Backend::start(handler).await;
    let options = format!("max_in_flight = {MAX_IN_FLIGHT}\nevents = [\"message\"]");
    // No rate limit: every message the client sends is one event.
    let routes = route("/ws/up", &backend.url("/events"), &options)
        + "[routes.limits]\nmessages_per_second = 0\n";
    let d = Daemon::start(&config(&routes)).await;
    daemon_addr.set(d.addr).expect("set once");

    let ws = connect_with_send_buffer(&d, "/ws/up", "tok-alice", 64 * 1024).await;
    let (mut sink, stream) = ws.split();
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            for i in 0..N {
                let text = format!("{i:06}:{}", "x".repeat(SIZE - 7));
                sink.send(Message::text(text)).await.expect("send");
                sent.fetch_add(1, Ordering::SeqCst);
            }
            sink
        })
    };
    // The backend holds the first event; wsgate reads up to max_in_flight.
    wait_metric_at_least(d.addr, "wsgate_messages_in_total", MAX_IN_FLIGHT as f64).await;
    // The client's sends stop being taken: wait until the count has not
    // moved for a while (bounded by PATIENCE).
    let deadline = Instant::now() + PATIENCE;
    let mut last = sent.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "the client kept sending");
        last = now;
    }
    assert!(last < N, "every send was taken while the backend stalled");
    assert!(
        backend.seen().len() == 1,
        "one request at a time: {:#?}",
        backend.seen().len()
    );
    let read = d.metric("wsgate_messages_in_total").await as usize;
    assert!(
        (MAX_IN_FLIGHT..=MAX_IN_FLIGHT + 1).contains(&read),
        "wsgate read {read} messages while max_in_flight = {MAX_IN_FLIGHT} were held"
    );

    release.notify_one();
    let _sink = tokio::time::timeout(PATIENCE * 3, sender)
        .await
        .expect("every send taken once the backend answers")
        .expect("sender");
    let seen = backend.wait("every message", |seen| seen.len() == N).await;
    for (i, s) in seen.iter().enumerate() {
        let data = s.body["data"].as_str().expect("data");
        assert_eq!(&data[..6], format!("{i:06}"), "in order");
    }
    let depths = depths.lock().expect("depths").clone();
    let most = depths.iter().copied().max().unwrap_or(0);
    // Reads pause once max_in_flight events are queued or running; what
    // wsgate had read by then still arrives, which for messages of this
    // size is at most one more.
    assert!(
        (MAX_IN_FLIGHT..=MAX_IN_FLIGHT + 1).contains(&most),
        "the queue held {most} events: {depths:?}"
    );
    assert_eq!(backend.most_at_once.load(Ordering::SeqCst), 1);
    drop(stream);
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_and_never_shown() {
    const KEY: &str = "cb-key-5f1d0c9a7e3b";
    let backend = Backend::scripted().await;
    let d = Daemon::start_with_env(
        &config(&route(
            "/ws/rpc",
            &backend.url("/quiet"),
            "key_env = \"WSGATE_CALLBACK_KEY\"",
        )),
        &[("WSGATE_CALLBACK_KEY", KEY), ("WSGATE_LOG", "debug")],
    )
    .await;
    let mut ws = connect_as(&d, "/ws/rpc", "tok-alice").await;
    round_trip(&mut ws, "with a key").await;
    ws.close(None).await.expect("close");
    let conn = conn_of(&backend, "with a key").await;
    backend.close_of(&conn).await;
    let seen = backend.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for s in &seen {
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {KEY}").as_str()),
            "{}",
            s.event()
        );
    }

    // Not in the logs (at debug), nor where the config is shown.
    assert!(!d.logs().contains(KEY), "{}", d.logs());
    let shown = d
        .admin(json!({"id": "c", "cmd": "config"}))
        .await
        .to_string();
    assert!(shown.contains("WSGATE_CALLBACK_KEY"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(&d.config_path)
        .env("WSGATE_CALLBACK_KEY", KEY)
        .output()
        .expect("wsgate check");
    let out = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("key_env"), "{out}");
    assert!(!out.contains(KEY), "{out}");
}

#[tokio::test]
async fn an_https_backend_is_posted_to_with_the_configured_ca() {
    // A backend behind TLS with a certificate of a CA of the test's own:
    // it answers every event with an echo of the message's text.
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = LocalCert::new(dir.path());
    let acceptor = cert.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let raw = req.into_body().collect().await?.to_bytes();
                    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                    let answer = match body["event"].as_str() {
                        Some("message") => {
                            json!({"send": [format!("tls:{}", body["data"].as_str().unwrap_or(""))]})
                        }
                        _ => json!({}),
                    };
                    Ok::<_, hyper::Error>(
                        hyper::Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer.to_string())))
                            .expect("answer"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let url = format!("https://localhost:{port}/events");
    let ca = format!("ca_file = \"{}\"", cert.ca_file.display());
    let d = Daemon::start(&config(&route("/ws/rpc", &url, &ca))).await;
    let mut ws = d.connect("/ws/rpc?access_token=tok-alice").await;
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("tls:hello"));
}
