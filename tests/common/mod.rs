//! The test harness: a real `wsgate serve` process on port 0, real
//! WebSocket clients (tokio-tungstenite, a different implementation from the
//! server's) and plain HTTP over loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something that should happen promptly. Only a
/// bound for failure; passing tests never wait it out.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running daemon; killed when dropped.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// Puts `listen = "127.0.0.1:0"` into a config's `[server]` table (not
/// when the config has `[[server.listeners]]`: they give the addresses).
pub fn with_port_zero(config: &str) -> String {
    if config.contains("[[server.listeners]]") {
        config.to_string()
    } else if config.contains("[server]") {
        config.replacen("[server]", "[server]\nlisten = \"127.0.0.1:0\"", 1)
    } else {
        format!("[server]\nlisten = \"127.0.0.1:0\"\n{config}")
    }
}

impl Daemon {
    /// Starts `wsgate serve` with this config (port 0 is put in).
    pub async fn start(config: &str) -> Daemon {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("wsgate.toml");
        std::fs::write(&config_path, with_port_zero(config)).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsgate"));
        cmd.arg("serve")
            .arg("-c")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("WSGATE_LOG", "info")
            // The admin socket defaults to ./wsgate-admin.sock in the temp
            // dir, so parallel daemons never share one.
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Two runtime workers per daemon (the daemon leaves `worker_threads`
        // unset, so tokio reads this): dozens of daemons run at once, and one
        // worker per core each makes their timers jitter. A value in the
        // test's own environment, or in `env`, wins.
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            cmd.env("TOKIO_WORKER_THREADS", "2");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wsgate");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("");
                        let _ = tx.send(addr.to_string());
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(PATIENCE))
            .await
            .expect("join")
            .unwrap_or_else(|_| {
                panic!(
                    "wsgate did not start listening:\n{}",
                    logs.lock().expect("logs").join("\n")
                )
            });
        Daemon {
            child,
            addr: addr.parse().expect("listen address"),
            logs,
            dir,
            config_path,
        }
    }

    /// The address of the listener with this name, from its `listening on`
    /// line.
    pub async fn listener(&self, name: &str) -> SocketAddr {
        let field = format!("listener={name} ");
        self.wait_log(&["listening on", &field]).await;
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("listening on") && l.contains(&field))
            .expect("the listening line");
        line.split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in: {line}"))
    }

    /// The admin socket (the default, in the daemon's directory).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("wsgate-admin.sock")
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Waits until a log line contains every one of `needles`.
    pub async fn wait_log(&self, needles: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self
                .logs
                .lock()
                .expect("logs")
                .iter()
                .any(|l| needles.iter().all(|n| l.contains(n)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connects a WebSocket client; panics if refused.
    pub async fn connect(&self, path: &str) -> Ws {
        self.try_connect(path, &[])
            .await
            .unwrap_or_else(|(status, body)| panic!("connect {path}: refused {status}: {body}"))
    }

    /// Connects a WebSocket client whose socket asks for a receive buffer of
    /// `bytes` (`SO_RCVBUF`, set before connecting, so the window is sized
    /// from it). A buffer set this way is no longer grown by the kernel: what
    /// a client that never reads can hold does not depend on the host's
    /// `net.ipv4.tcp_rmem`.
    pub async fn connect_with_recv_buffer(&self, path: &str, bytes: u32) -> Ws {
        let socket = if self.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(self.addr).await.expect("connect");
        let (ws, _) =
            tokio_tungstenite::client_async(self.url(path), MaybeTlsStream::Plain(stream))
                .await
                .unwrap_or_else(|e| panic!("connect {path}: {e}"));
        ws
    }

    /// Connects with extra headers; a refusal gives its status and body.
    pub async fn try_connect(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, (u16, String)> {
        let mut req = self.url(path).into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(e) => panic!("connect {path}: {e}"),
        }
    }

    /// Connects expecting a refusal; returns its status and body.
    pub async fn refused(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        match self.try_connect(path, headers).await {
            Ok(_) => panic!("connect {path}: expected a refusal, got a connection"),
            Err(r) => r,
        }
    }

    /// A plain HTTP/1.1 request; returns status, headers (lower-case names)
    /// and body.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        http_to(self.addr, method, path, headers, body).await
    }

    /// Publishes `data` (JSON text) to `topic` through the API with
    /// `api_key`; asserts a 200 and returns the `delivered` count.
    pub async fn publish(&self, api_key: &str, topic: &str, data: &str) -> u64 {
        let body = format!("{{\"topic\":{},\"data\":{data}}}", Value::from(topic));
        let resp = self
            .http(
                "POST",
                "/api/publish",
                &[
                    ("Authorization", &format!("Bearer {api_key}")),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.json()["delivered"].as_u64().expect("delivered")
    }

    /// The value of one metric line, e.g. `wsgate_rejections_total{reason="ip_limit"}`;
    /// 0 when the series does not exist yet.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(self.addr, series).await
    }

    /// Waits until a metric has a value.
    pub async fn wait_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.metric(series).await;
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{series} is {got}, want {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rewrites the config file in place (port 0 is put in again; the
    /// listener keeps its address).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config_path, with_port_zero(config)).expect("write config");
    }

    /// Replaces the config file the way editors do: write a temporary file,
    /// then rename it over the old one.
    pub fn replace_config(&self, config: &str) {
        let tmp = self.dir.path().join(".wsgate.toml.tmp");
        std::fs::write(&tmp, with_port_zero(config)).expect("write temp");
        std::fs::rename(&tmp, &self.config_path).expect("rename");
    }

    /// Waits until `wsgate_config_reloads_total{result}` reaches `n`.
    pub async fn wait_reloads(&self, result: &str, n: f64) {
        self.wait_metric(
            &format!("wsgate_config_reloads_total{{result=\"{result}\"}}"),
            n,
        )
        .await
    }

    /// One admin request over the admin socket (one JSON line each way);
    /// it must succeed. Returns its `result`.
    pub async fn admin(&self, request: Value) -> Value {
        let stream = tokio::net::UnixStream::connect(self.admin_socket())
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.admin_socket().display()));
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .expect("write to the admin socket");
        let mut lines = tokio::io::BufReader::new(read).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("an admin answer in time")
            .expect("read from the admin socket")
            .expect("an admin answer");
        let answer: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(answer["ok"], true, "{request} -> {answer}");
        answer["result"].clone()
    }

    /// Waits until the admin `stats.last_reload` is one `recorded` holds
    /// for (the reload counter moves just before it is recorded); returns it.
    pub async fn wait_last_reload(&self, recorded: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = self
                .admin(serde_json::json!({"id": "stats", "cmd": "stats"}))
                .await;
            let last = &stats["last_reload"];
            if recorded(last) {
                return last.clone();
            }
            assert!(
                Instant::now() < deadline,
                "stats.last_reload is still {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one metric line in the `/metrics` of the listener at
/// `addr`; 0 when the series does not exist yet.
pub async fn metric_at(addr: SocketAddr, series: &str) -> f64 {
    let resp = http_to(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(resp.status, 200);
    resp.body
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("number"))
        .unwrap_or(0.0)
}

/// Waits until a metric at `addr` is at least `want`.
pub async fn wait_metric_at_least(addr: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = metric_at(addr, series).await;
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {got}, want {want} or more"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 request to `addr`; returns status, headers (lower-case
/// names) and body.
pub async fn http_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    Response::parse(&raw)
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The next text message as JSON (pings are answered by the client).
pub async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next data message.
pub async fn recv(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

pub async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// Reads until the server's close frame; returns its code and reason.
/// Data messages before it are skipped.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("a close frame in time");
        match msg {
            Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                return (u16::from(code), reason.to_string())
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before a close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Waits for a pub/sub message of a given type, skipping others.
pub async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = recv_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// A certificate for `localhost` signed by a CA of the test's own, written
/// to `dir` as `ca.pem`, `localhost.pem` and `localhost.key`.
pub struct LocalCert {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert_der: rustls_pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl LocalCert {
    pub fn new(dir: &std::path::Path) -> LocalCert {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("sign");
        let (ca_file, cert_file, key_file) = (
            dir.join("ca.pem"),
            dir.join("localhost.pem"),
            dir.join("localhost.key"),
        );
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        std::fs::write(&cert_file, cert.pem()).expect("write certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        LocalCert {
            ca_file,
            cert_file,
            key_file,
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A TLS acceptor serving this certificate (ring, as the daemon).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A PEM file of a CA that signed nothing the tests serve.
pub fn stranger_ca(dir: &std::path::Path) -> PathBuf {
    let stranger =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("self-signed");
    let file = dir.join("stranger.pem");
    std::fs::write(&file, stranger.cert.pem()).expect("write");
    file
}
