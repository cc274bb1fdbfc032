//! The HTTP side: the publish API's refusals, health and metrics, counts
//! that return to zero after any kind of churn, and `wsgate check`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const KEY: &str = "api-key-5b1d9e07c4";

#[tokio::test]
async fn publish_api_is_disabled_without_a_key() {
    let d = Daemon::start("").await;
    let resp = d
        .http(
            "POST",
            "/api/publish",
            &[("Authorization", "Bearer anything")],
            "{\"topic\":\"a\",\"data\":1}",
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.json()["error"], "api_disabled");
}

#[tokio::test]
async fn publish_api_checks_method_key_and_body() {
    let d = Daemon::start(&format!(
        "[api]\nkeys = [\"{KEY}\"]\n[limits]\nmax_message_bytes = 100\n"
    ))
    .await;
    let good = format!("Bearer {KEY}");
    let auth = [("Authorization", good.as_str())];
    let body = "{\"topic\":\"a\",\"data\":{\"x\":1}}";

    let resp = d.http("POST", "/api/publish", &[], body).await;
    assert_eq!(resp.status, 401, "missing key: {}", resp.body);
    assert_eq!(resp.json()["error"], "unauthorized");

    let wrong = format!("Bearer {KEY}x");
    for bad in [
        wrong.as_str(),
        "Bearer nope",
        "Basic api-key-5b1d9e07c4",
        KEY,
    ] {
        let resp = d
            .http("POST", "/api/publish", &[("Authorization", bad)], body)
            .await;
        assert_eq!(resp.status, 401, "{bad}: {}", resp.body);
        assert_eq!(resp.json()["error"], "unauthorized");
        assert!(!resp.body.contains(KEY), "{}", resp.body);
    }

    let resp = d.http("POST", "/api/publish", &auth, body).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json(), serde_json::json!({"delivered": 0}));
    // The scheme is case-insensitive.
    let lower = format!("bearer {KEY}");
    let resp = d
        .http("POST", "/api/publish", &[("Authorization", &lower)], body)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);

    for bad_body in [
        "not json",
        "{\"topic\":\"a\"}",
        "{\"data\":1}",
        "{\"topic\":\"a b\",\"data\":1}",
        "{\"topic\":\"a\",\"data\":1,\"extra\":2}",
        "",
    ] {
        let resp = d.http("POST", "/api/publish", &auth, bad_body).await;
        assert_eq!(resp.status, 400, "{bad_body:?}: {}", resp.body);
        assert_eq!(resp.json()["error"], "bad_request");
    }

    // Exactly max_message_bytes passes; one byte more is 413.
    let exact = sized_body(100);
    assert_eq!(exact.len(), 100);
    let resp = d.http("POST", "/api/publish", &auth, &exact).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = d
        .http("POST", "/api/publish", &auth, &sized_body(101))
        .await;
    assert_eq!(resp.status, 413, "{}", resp.body);
    assert_eq!(resp.json()["error"], "too_large");
    // Without a Content-Length (chunked), the limit holds while reading.
    let status = chunked_publish(&d, &good, &sized_body(300)).await;
    assert_eq!(status, 413);

    for method in ["GET", "PUT", "DELETE"] {
        let resp = d.http(method, "/api/publish", &auth, "").await;
        assert_eq!(resp.status, 405, "{method}: {}", resp.body);
        assert_eq!(resp.json()["error"], "method_not_allowed");
    }

    d.wait_log(&["publish refused", "too_large"]).await;
    d.wait_log(&["publish refused", "method_not_allowed"]).await;
    let logs = d.logs();
    assert!(logs.contains("publish refused"), "{logs}");
    assert!(!logs.contains(KEY), "API key in logs:\n{logs}");
}

/// A valid publish body of exactly `len` bytes.
fn sized_body(len: usize) -> String {
    let frame = "{\"topic\":\"a\",\"data\":\"\"}";
    let pad = len.checked_sub(frame.len()).expect("long enough");
    format!("{{\"topic\":\"a\",\"data\":\"{}\"}}", "x".repeat(pad))
}

/// POSTs `body` chunked (no Content-Length); returns the status.
async fn chunked_publish(d: &Daemon, authorization: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(d.addr).await.expect("connect");
    let mut req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: {authorization}\r\nTransfer-Encoding: chunked\r\n\r\n",
        d.addr
    );
    for chunk in body.as_bytes().chunks(50) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).expect("ASCII")
        ));
    }
    req.push_str("0\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"))
}

/// Reads a response's head (through the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n == 1, "closed before a full response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let d = Daemon::start("").await;
    let resp = d.http("GET", "/healthz", &[], "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["status"], "ok");
    let resp = d.http("GET", "/readyz", &[], "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["status"], "ready");

    let _ws = d.connect("/ws/echo").await;
    let resp = d.http("GET", "/metrics", &[], "").await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.body.contains("wsgate_connections_open"),
        "{}",
        resp.body
    );
    assert_eq!(
        d.metric("wsgate_connections_open{route=\"/ws/echo\"}")
            .await,
        1.0
    );
}

/// A WebSocket client whose TCP connection comes from `src` (any address
/// in 127.0.0.0/8 reaches the daemon on 127.0.0.1).
async fn connect_from(d: &Daemon, src: [u8; 4], path: &str) -> Result<Ws, (u16, String)> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind((IpAddr::V4(Ipv4Addr::from(src)), 0).into())
        .expect("bind");
    let stream = socket.connect(d.addr).await.expect("connect");
    match tokio_tungstenite::client_async(d.url(path), MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        )),
        Err(e) => panic!("connect {path}: {e}"),
    }
}

async fn refused_from(d: &Daemon, src: [u8; 4], path: &str) -> (u16, String) {
    match connect_from(d, src, path).await {
        Ok(_) => panic!("{path} from {src:?}: admitted, expected a refusal"),
        Err(refusal) => refusal,
    }
}

/// Proves a connection is being served.
async fn echo_or_pubsub_alive(ws: &mut Ws, path: &str) {
    if path == "/ws/echo" {
        ws.send(Message::text("alive")).await.expect("send");
        assert_eq!(recv(ws).await, Message::text("alive"));
    } else {
        let welcome = recv_json(ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
    }
}

/// Closes cleanly: close frame, the server's answer, then the end.
async fn close_cleanly(mut ws: Ws) {
    ws.close(None).await.expect("close");
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the server did not end the connection");
}

/// Drops a connection with a TCP reset: no close frame, no FIN.
fn reset(ws: Ws) {
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_zero_linger().expect("linger");
    }
    drop(ws);
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test]
async fn counts_return_to_zero_after_churn() {
    let d = Daemon::start("[limits]\nmax_connections = 5\nmax_connections_per_ip = 3\n").await;
    const A: [u8; 4] = [127, 0, 0, 1];
    const B: [u8; 4] = [127, 0, 0, 2];
    let open_ws = "wsgate_connections_open{route=\"/ws\"}";
    let open_echo = "wsgate_connections_open{route=\"/ws/echo\"}";

    // Fill both caps: three from A (per-IP cap), two from B (total cap).
    let mut a1 = connect_from(&d, A, "/ws").await.expect("a1");
    let mut a2 = connect_from(&d, A, "/ws/echo").await.expect("a2");
    let mut a3 = connect_from(&d, A, "/ws").await.expect("a3");
    let (status, body) = refused_from(&d, A, "/ws/echo").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("ip_limit"), "{body}");
    let mut b1 = connect_from(&d, B, "/ws/echo").await.expect("b1");
    let mut b2 = connect_from(&d, B, "/ws").await.expect("b2");
    let (status, body) = refused_from(&d, B, "/ws/echo").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("total_limit"), "{body}");
    echo_or_pubsub_alive(&mut a1, "/ws").await;
    echo_or_pubsub_alive(&mut a2, "/ws/echo").await;
    echo_or_pubsub_alive(&mut a3, "/ws").await;
    echo_or_pubsub_alive(&mut b1, "/ws/echo").await;
    echo_or_pubsub_alive(&mut b2, "/ws").await;
    assert_eq!(d.metric(open_ws).await, 3.0);
    assert_eq!(d.metric(open_echo).await, 2.0);

    // Raw TCP clients that send half a request and vanish take no slot.
    for partial in [
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgr".to_string(),
        format!("GET /ws/echo HTTP/1.1\r\nHost: x\r\n{UPGRADE}"),
        "GET /ws".to_string(),
    ] {
        let mut raw = TcpStream::connect(d.addr).await.expect("raw");
        raw.write_all(partial.as_bytes()).await.expect("write");
        drop(raw);
    }

    // Free places: a1 vanishes (FIN, no close frame), b1 is reset, a2
    // closes cleanly.
    drop(a1);
    reset(b1);
    close_cleanly(a2).await;
    d.wait_metric(open_ws, 2.0).await;
    d.wait_metric(open_echo, 0.0).await;

    // A raw client that completes an upgrade, gets its 101, sends half a
    // frame and resets; another that is admitted and leaves before reading
    // its answer.
    let mut raw = TcpStream::connect(d.addr).await.expect("raw");
    raw.write_all(format!("GET /ws/echo HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n").as_bytes())
        .await
        .expect("write");
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    d.wait_metric(open_echo, 1.0).await;
    raw.write_all(&[0x81, 0x85, 1, 2]).await.expect("write");
    raw.set_zero_linger().expect("linger");
    drop(raw);
    let accepted_ws = "wsgate_connections_accepted_total{route=\"/ws\"}";
    assert_eq!(d.metric(accepted_ws).await, 3.0);
    let mut raw = TcpStream::connect(d.addr).await.expect("raw");
    raw.write_all(format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n").as_bytes())
        .await
        .expect("write");
    d.wait_metric(accepted_ws, 4.0).await;
    drop(raw);
    // Both raw clients' places are freed (a3 and b2 remain).
    d.wait_metric(open_echo, 0.0).await;
    d.wait_metric(open_ws, 2.0).await;

    // A fresh client from A is admitted again and closes cleanly; the rest
    // go: a3 cleanly, b2 by vanishing.
    let mut a4 = connect_from(&d, A, "/ws/echo").await.expect("a4");
    echo_or_pubsub_alive(&mut a4, "/ws/echo").await;
    close_cleanly(a4).await;
    close_cleanly(a3).await;
    drop(b2);

    d.wait_metric(open_ws, 0.0).await;
    d.wait_metric(open_echo, 0.0).await;

    // Every count is back to zero: A has its three places, and with B's
    // two the total is exactly full again.
    let mut again = Vec::new();
    for path in ["/ws", "/ws/echo", "/ws"] {
        let mut ws = connect_from(&d, A, path)
            .await
            .unwrap_or_else(|(s, b)| panic!("per-IP count drifted: {s} {b}"));
        echo_or_pubsub_alive(&mut ws, path).await;
        again.push(ws);
    }
    let (status, body) = refused_from(&d, A, "/ws/echo").await;
    assert_eq!(status, 429, "{body}");
    for path in ["/ws/echo", "/ws"] {
        let mut ws = connect_from(&d, B, path)
            .await
            .unwrap_or_else(|(s, b)| panic!("total count drifted: {s} {b}"));
        echo_or_pubsub_alive(&mut ws, path).await;
        again.push(ws);
    }
    let (status, body) = refused_from(&d, B, "/ws").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(d.metric(open_ws).await, 3.0);
    assert_eq!(d.metric(open_echo).await, 2.0);
}

/// Runs `wsgate check -c <file>` on `text`; returns (exit code, stdout,
/// stderr, the file's path).
fn check(text: &str) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wsgate.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run wsgate check");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn check_reports_an_unknown_key_with_its_position() {
    let (code, stdout, stderr, file) = check("[limits]\nmax_conections = 5\n");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{file}:2:1")),
        "no {file}:2:1 in {stderr}"
    );
    assert!(stderr.contains("max_conections"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn check_reports_an_invalid_value_with_its_key_and_line() {
    let (code, stdout, stderr, file) = check("[server]\n\n[limits]\nsend_queue = 0\n");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("limits.send_queue"), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4:")),
        "no line 4 in {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn check_prints_the_effective_config_with_secrets_redacted() {
    let (code, stdout, stderr, _) = check(concat!(
        "[api]\nkeys = [\"sekrit\"]\n\n",
        "[auth.t]\nplugin = \"token\"\ntokens = { \"tok-zed-4821\" = \"zed\" }\n\n",
        "[[routes]]\npath = \"/chat\"\nrouter = \"pubsub\"\nauth = \"t\"\n",
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("sekrit"), "{stdout}");
    assert!(!stdout.contains("tok-zed-4821"), "{stdout}");
    assert!(!stderr.contains("sekrit") && !stderr.contains("tok-zed-4821"));
    assert!(stdout.contains("<redacted>"), "{stdout}");

    // It is the effective config: valid TOML with the defaults filled in.
    let effective: toml::Table = stdout.parse().expect("TOML");
    assert_eq!(
        effective["api"]["keys"],
        toml::Value::Array(vec!["<redacted>".into()])
    );
    assert_eq!(effective["auth"]["t"]["plugin"].as_str(), Some("token"));
    assert_eq!(
        effective["auth"]["t"]["tokens"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        effective["limits"]["max_connections"].as_integer(),
        Some(10_000)
    );
    assert_eq!(
        effective["routes"][0]["path"].as_str(),
        Some("/chat"),
        "{stdout}"
    );
    assert_eq!(effective["routes"][0]["auth"].as_str(), Some("t"));
    assert!(effective["server"].get("listen").is_some(), "{stdout}");
}
