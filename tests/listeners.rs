//! Several listeners: what each serves, a public one next to an internal
//! one, `serve` changed live, an address change that waits for a restart,
//! and the checks of `[[server.listeners]]`.

mod common;

use std::net::SocketAddr;

use common::{http_to, metric_at, recv_type, Daemon};

const KEY: &str = "listener-test-key";

fn two_listeners(public_serves: &str) -> String {
    format!(
        r#"
[api]
keys = ["{KEY}"]

[[server.listeners]]
name = "public"
address = "127.0.0.1:0"
serve = {public_serves}

[[server.listeners]]
name = "internal"
address = "127.0.0.1:0"
serve = ["metrics", "api", "health"]
"#
    )
}

async fn status(addr: SocketAddr, method: &str, path: &str) -> u16 {
    http_to(addr, method, path, &[], "").await.status
}

async fn publish_at(addr: SocketAddr, topic: &str) -> (u16, String) {
    let body = format!(r#"{{"topic":"{topic}","data":{{"n":1}}}}"#);
    let auth = format!("Bearer {KEY}");
    let resp = http_to(
        addr,
        "POST",
        "/api/publish",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    (resp.status, resp.body)
}

#[tokio::test]
async fn the_internal_listener_serves_metrics_and_the_api_and_the_public_one_does_not() {
    let d = Daemon::start(&two_listeners(r#"["ws", "health"]"#)).await;
    let public = d.listener("public").await;
    let internal = d.listener("internal").await;
    assert_eq!(d.addr, public, "the first listener is the harness's");
    assert_ne!(public, internal);

    // The public listener: the routes and health, nothing else.
    assert_eq!(status(public, "GET", "/healthz").await, 200);
    assert_eq!(status(public, "GET", "/readyz").await, 200);
    let resp = http_to(public, "GET", "/metrics", &[], "").await;
    assert_eq!(resp.status, 404, "{}", resp.body);
    assert_eq!(resp.json()["error"], "not_found");
    let (code, body) = publish_at(public, "news").await;
    assert_eq!(code, 404, "{body}");

    // The internal listener: metrics, the API and health, and no routes.
    assert_eq!(status(internal, "GET", "/healthz").await, 200);
    let upgrade = http_to(
        internal,
        "GET",
        "/ws?topics=news",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    )
    .await;
    assert_eq!(upgrade.status, 404, "{}", upgrade.body);

    // A subscriber on the public listener gets what a backend publishes on
    // the internal one.
    let mut ws = d.connect("/ws?topics=news").await;
    let (code, body) = publish_at(internal, "news").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""delivered":1"#), "{body}");
    let msg = recv_type(&mut ws, "message").await;
    assert_eq!(msg["topic"], "news");
    assert_eq!(msg["data"]["n"], 1);

    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_listener_refusals_total{listener="public",reason="not_served"}"#
        )
        .await,
        2.0
    );
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_listener_refusals_total{listener="internal",reason="not_served"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn serve_applies_live_and_an_address_change_waits_for_a_restart() {
    let d = Daemon::start(&two_listeners(r#"["ws", "health"]"#)).await;
    let public = d.listener("public").await;
    let internal = d.listener("internal").await;
    assert_eq!(status(public, "GET", "/metrics").await, 404);
    let mut ws = d.connect("/ws?topics=t").await;

    // Live: the public listener also serves metrics from now on.
    d.write_config(&two_listeners(r#"["ws", "health", "metrics"]"#));
    let reload = d.admin(serde_json::json!({"cmd": "reload"})).await;
    let applied = reload["changes"]["applied"].to_string();
    assert!(applied.contains("server.listeners"), "{reload}");
    assert_eq!(reload["changes"]["restart_required"], serde_json::json!([]));
    assert_eq!(status(public, "GET", "/metrics").await, 200);

    // A new address needs a restart: reported, and the running listeners
    // keep all their settings (and their addresses).
    let moved = two_listeners(r#"["ws"]"#).replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    d.write_config(&moved);
    let reload = d.admin(serde_json::json!({"cmd": "reload"})).await;
    let restart = reload["changes"]["restart_required"].to_string();
    assert!(restart.contains("server.listeners"), "{reload}");
    assert_eq!(status(public, "GET", "/metrics").await, 200, "kept whole");
    assert_eq!(status(public, "GET", "/healthz").await, 200);
    assert_eq!(status(internal, "GET", "/metrics").await, 200);

    // The connection from before every reload is still served.
    let (code, body) = publish_at(internal, "t").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(recv_type(&mut ws, "message").await["topic"], "t");
}

/// Runs `wsgate check` on a file that must fail; returns its stderr.
fn check_fails(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(path)
        .output()
        .expect("run wsgate check");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_refuses_broken_listeners_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wsgate.toml");
    std::fs::write(
        &path,
        r#"[[server.listeners]]
address = "127.0.0.1:9001"
serve = ["ws"]

[[server.listeners]]
address = "127.0.0.1:9001"
serve = ["ws", "admin"]
"#,
    )
    .expect("write");
    let err = check_fails(&path);
    assert!(err.contains("server.listeners[1].serve"), "{err}");
    assert!(err.contains("unknown variant `admin`"), "{err}");

    std::fs::write(
        &path,
        r#"[[server.listeners]]
address = "127.0.0.1:9001"
serve = ["ws"]

[[server.listeners]]
address = "127.0.0.1:9001"
serve = []
proxy_protocol = true
tls = { cert_file = "/nonexistent.pem" }
"#,
    )
    .expect("write");
    let err = check_fails(&path);
    for needle in [
        "server.listeners[1].address",
        "is already the address of server.listeners[0]",
        "server.listeners[1].serve",
        "server.listeners[1].proxy_protocol",
        "server.listeners[1].tls.cert_file",
        "wsgate.toml:6:",
    ] {
        assert!(err.contains(needle), "{needle} in:\n{err}");
    }
}

/// `systemd-socket-activate` (Debian's systemd package) listens, and
/// starts the daemon with the socket (`LISTEN_FDS`, named by `--fdname`)
/// when the first client connects: that client, which connected while no
/// process was serving, is served by the daemon that starts.
#[tokio::test]
async fn a_client_that_connects_before_the_daemon_runs_is_served_through_socket_activation() {
    use futures_util::{SinkExt, StreamExt};
    use std::io::{BufRead, BufReader};
    use tokio_tungstenite::tungstenite::Message;

    let activate = "systemd-socket-activate";
    let found = std::process::Command::new(activate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{activate} is needed (Debian's systemd package; .ci/deps installs it)"
    );
    // A free port for the socket systemd-socket-activate binds.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("wsgate.toml");
    // The listener's own address is another one: the socket is matched by
    // its name.
    std::fs::write(
        &config,
        r#"[[server.listeners]]
name = "public"
address = "127.0.0.1:1"
"#,
    )
    .expect("write config");
    let mut child = std::process::Command::new(activate)
        .arg("-l")
        .arg(addr.to_string())
        .arg("--fdname=public")
        .arg("-E")
        .arg("WSGATE_LOG=info")
        .arg(env!("CARGO_BIN_EXE_wsgate"))
        .arg("serve")
        .arg("-c")
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().expect("stderr");
    let child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    // systemd-socket-activate says when it listens.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !seen.iter().any(|l: &String| l.contains("Listening on")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("{activate} did not listen:\n{}", seen.join("\n")),
        }
    }
    assert!(
        !seen.iter().any(|l| l.contains("listening on")),
        "no daemon runs before the first connect"
    );

    // Connect now: the daemon starts only because of this connection.
    let url = format!("ws://{addr}/ws/echo");
    let (mut ws, _) = tokio::time::timeout(common::PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("served in time")
        .expect("upgrade");
    ws.send(Message::text("hello")).await.expect("send");
    let echoed = tokio::time::timeout(common::PATIENCE, ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(echoed, Message::text("hello"));

    // The daemon served on systemd's socket, matched by name.
    let logs = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + common::PATIENCE;
        while !seen.iter().any(|l| l.contains("socket=systemd")) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen.join("\n")
    })
    .await
    .expect("join");
    assert!(
        logs.contains(&format!("listening on {addr} listener=public"))
            && logs.contains("socket=systemd"),
        "{logs}"
    );
    drop(child);
}

/// A listener behind a TCP load balancer (`proxy_protocol = true`) and an
/// internal one to watch it from.
fn behind_a_balancer(trusted: &str) -> String {
    format!(
        r#"
[server]
trusted_proxies = ["{trusted}"]

[limits]
max_connections_per_ip = 1

[[server.listeners]]
name = "edge"
address = "127.0.0.1:0"
serve = ["ws", "health"]
proxy_protocol = true

[[server.listeners]]
name = "internal"
address = "127.0.0.1:0"
serve = ["metrics"]
"#
    )
}

/// Opens a TCP connection, sends `header`, then upgrades to `path` on it.
async fn upgrade_after(
    addr: SocketAddr,
    header: &[u8],
    path: &str,
) -> Result<common::Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(header).await.expect("write header");
    tokio_tungstenite::client_async(
        format!("ws://{addr}{path}"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .map(|(ws, _)| ws)
}

fn v2_header(source: &str, destination: &str) -> Vec<u8> {
    let source: SocketAddr = source.parse().expect("source");
    let destination: SocketAddr = destination.parse().expect("destination");
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, destination),
    )
    .build()
    .expect("v2 header")
}

#[tokio::test]
async fn proxy_protocol_headers_set_the_client_address_that_the_per_ip_cap_counts() {
    let d = Daemon::start(&behind_a_balancer("127.0.0.1")).await;
    let edge = d.listener("edge").await;
    let internal = d.listener("internal").await;

    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {}\r\n", edge.port());
    let _first = upgrade_after(edge, v1.as_bytes(), "/ws/echo")
        .await
        .expect("the first connection of 203.0.113.7");
    // The same client through a v2 header: over its cap of 1.
    match upgrade_after(
        edge,
        &v2_header("203.0.113.7:40001", "192.0.2.1:443"),
        "/ws/echo",
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429)
        }
        other => panic!("expected 429 for the second connection of one client: {other:?}"),
    }
    // Another client, over the same TCP peer (the balancer): admitted.
    let _other = upgrade_after(
        edge,
        &v2_header("[2001:db8::9]:40002", "[2001:db8::1]:443"),
        "/ws/echo",
    )
    .await
    .expect("another client");
    let list = d
        .admin(serde_json::json!({"cmd": "list"}))
        .await
        .to_string();
    assert!(
        list.contains("203.0.113.7") && list.contains("2001:db8::9"),
        "{list}"
    );
    assert!(
        !list.contains("\"127.0.0.1\""),
        "the balancer is not the client: {list}"
    );

    // A balancer health check (v2 LOCAL) keeps the peer's own address.
    let local = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .expect("LOCAL header");
    let health = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(edge).await.expect("connect");
        s.write_all(&local).await.expect("header");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // No header at all: closed before HTTP, counted.
    let plain = http_to_closed(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        plain.is_empty(),
        "no HTTP answer without the header: {plain:?}"
    );
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_listener_refusals_total{listener="edge",reason="proxy_header_missing"}"#
        )
        .await,
        1.0
    );
}

/// Writes `bytes` and reads until the server closes; returns what it sent.
async fn http_to_closed(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(common::PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("closed in time");
    out
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_sender_is_refused() {
    let d = Daemon::start(&behind_a_balancer("10.0.0.0/8")).await;
    let edge = d.listener("edge").await;
    let internal = d.listener("internal").await;
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {}\r\n", edge.port());
    let mut bytes = v1.into_bytes();
    bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(http_to_closed(edge, &bytes).await.is_empty());
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_listener_refusals_total{listener="edge",reason="proxy_untrusted"}"#
        )
        .await,
        1.0
    );
    d.wait_log(&["not in trusted_proxies", "listener=\"edge\""])
        .await;
}
