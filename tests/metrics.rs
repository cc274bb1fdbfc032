//! `/metrics` as Prometheus sees it: after connections, refusals, closes,
//! publishes, pings and reloads from real clients, the Prometheus text
//! format 0.0.4 passes `promtool check metrics` without a lint remark, and
//! a real Prometheus server scrapes the OpenMetrics answer it negotiates.
//!
//! Both tools come with Debian's `prometheus` package (`.ci/deps` installs
//! it); without them these tests fail and say so.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What Prometheus 2 sends (scrape.go, `scrapeAcceptHeader`).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const CONFIG: &str = r#"
[api]
keys = ["k"]

[limits]
ping_interval = "100ms"

[[routes]]
path = "/ws/echo"
router = "echo"

[[routes]]
path = "/ws"
router = "pubsub"
[routes.options]
publish = ["news"]

[[routes]]
path = "/ws/app"
router = "echo"
allowed_origins = ["https://app.example"]
"#;

/// A tool from Debian's `prometheus` package, or a failure that says how
/// to get it.
fn tool(name: &str) -> String {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match found {
        Ok(s) if s.success() => name.to_string(),
        _ => panic!(
            "`{name}` is not installed: it comes with Debian's `prometheus` package \
             (`.ci/deps` installs it: apt-get install --no-install-recommends prometheus)"
        ),
    }
}

/// The first value of a series in an exposition, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads from `ws` (so that its client answers the daemon's pings) until
/// `series` is at least `want`.
async fn read_until_metric(d: &Daemon, ws: &mut Ws, series: &str, want: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
        let got = d.metric(series).await;
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {got}, want {want}");
    }
}

/// Drives every kind of event the metrics count, with real clients.
async fn exercise(d: &Daemon) {
    // An echo exchange, closed by the client with 1000.
    let mut echo = d.connect("/ws/echo").await;
    echo.send(Message::text("hello")).await.expect("send");
    assert_eq!(recv(&mut echo).await, Message::text("hello"));
    echo.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .expect("close");
    while let Some(Ok(_)) = echo.next().await {}

    // A pub/sub session: a subscribe, an API publish and a client publish.
    let mut sub = d.connect("/ws").await;
    assert_eq!(recv_type(&mut sub, "welcome").await["type"], "welcome");
    send_json(&mut sub, json!({"type": "subscribe", "topics": ["news"]})).await;
    recv_type(&mut sub, "subscribed").await;
    let resp = d
        .http(
            "POST",
            "/api/publish",
            &[("Authorization", "Bearer k")],
            r#"{"topic":"news","data":{"n":1}}"#,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        recv_type(&mut sub, "message").await["data"],
        json!({"n": 1})
    );
    send_json(
        &mut sub,
        json!({"type": "publish", "topic": "news", "data": 2}),
    )
    .await;
    recv_type(&mut sub, "published").await;
    // The daemon pings every 100 ms; the client answers while read.
    read_until_metric(d, &mut sub, "wsgate_ping_rtt_seconds_count", 1.0).await;
    drop(sub);

    // Refusals before the upgrade: no route, a foreign origin; and one
    // refused publish.
    assert_eq!(d.refused("/nowhere", &[]).await.0, 404);
    let origin = [("Origin", "https://evil.example")];
    assert_eq!(d.refused("/ws/app", &origin).await.0, 403);
    let resp = d.http("POST", "/api/publish", &[], "{}").await;
    assert_eq!(resp.status, 401);

    // A reload that applies and one that is refused.
    d.write_config(&format!("{CONFIG}\n# touched\n"));
    d.wait_reloads("ok", 1.0).await;
    d.write_config("[limits]\nmax_connections = 0\n");
    d.wait_reloads("error", 1.0).await;

    d.wait_metric("wsgate_connections_open{route=\"/ws\"}", 0.0)
        .await;
    d.wait_metric("wsgate_closes_total{code=\"1000\"}", 1.0)
        .await;
}

#[tokio::test]
async fn the_text_format_passes_promtool_after_real_traffic() {
    let promtool = tool("promtool");
    let d = Daemon::start(CONFIG).await;
    exercise(&d).await;

    let text = d
        .http(
            "GET",
            "/metrics",
            &[("Accept", "text/plain;version=0.0.4")],
            "",
        )
        .await;
    assert_eq!(text.status, 200);
    assert_eq!(text.header("content-type"), Some(TEXT_0_0_4));
    assert_eq!(text.header("vary"), Some("accept"));
    let body = &text.body;
    assert!(
        !body.contains("# EOF") && !body.contains("# UNIT"),
        "{body}"
    );
    // Counters are declared by their sample's name in 0.0.4.
    assert!(
        body.contains("# TYPE wsgate_closes_total counter\n"),
        "{body}"
    );
    for series in [
        "wsgate_messages_in_bytes_total",
        "wsgate_messages_out_bytes_total",
        "wsgate_publishes_total{source=\"api\"}",
        "wsgate_publishes_total{source=\"client\"}",
        "wsgate_rejections_total{reason=\"not_found\"}",
        "wsgate_rejections_total{reason=\"origin\"}",
        "wsgate_api_refusals_total{reason=\"unauthorized\"}",
        "wsgate_config_reloads_total{result=\"ok\"}",
        "wsgate_config_reloads_total{result=\"error\"}",
        "wsgate_publish_fanout_seconds_count",
        "wsgate_handshake_seconds_count",
        "wsgate_ping_rtt_seconds_count",
    ] {
        let v = value(body, series).unwrap_or_else(|| panic!("no {series}:\n{body}"));
        assert!(v >= 1.0, "{series} is {v}");
    }
    // Two accepted upgrades, each timed from accept.
    assert_eq!(value(body, "wsgate_handshake_seconds_count"), Some(2.0));
    assert_eq!(
        value(body, "wsgate_handshake_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0)
    );
    let rss = value(body, "process_resident_memory_bytes").expect("rss");
    assert!(rss > 1e6, "rss {rss}");
    let fds = value(body, "process_open_fds").expect("open fds");
    let max = value(body, "process_max_fds").expect("max fds");
    assert!(fds >= 3.0 && max >= fds, "fds {fds}, max {max}");
    value(body, "process_cpu_seconds_total").expect("cpu");
    let start = value(body, "process_start_time_seconds").expect("start");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        start <= now && start > now - 600.0,
        "start {start}, now {now}"
    );

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool: {:?}\n{said}\n{body}",
        out.status
    );
    assert_eq!(said.trim(), "", "promtool has remarks:\n{said}");

    // Prometheus's own Accept header and no header at all get OpenMetrics.
    for accept in [&[("Accept", PROMETHEUS_ACCEPT)][..], &[]] {
        let om = d.http("GET", "/metrics", accept, "").await;
        assert_eq!(om.header("content-type"), Some(OPENMETRICS), "{accept:?}");
        assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
        assert!(
            om.body.contains("# TYPE wsgate_closes counter\n")
                && om.body.contains("# UNIT wsgate_messages_in_bytes bytes\n"),
            "{}",
            om.body
        );
    }
}

/// A Prometheus server; killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second.
    fn start(target: &str) -> Prometheus {
        let binary = tool("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: wsgate\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        // A free port: bound, read, released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on its HTTP API, as JSON; `None` while it is not up.
    async fn get(&self, path: &str) -> Option<Value> {
        let mut stream = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_openmetrics_it_asked_for() {
    let d = Daemon::start(CONFIG).await;
    exercise(&d).await;
    let prometheus = Prometheus::start(&d.addr.to_string());

    // Prometheus picks its parser by the answer's Content-Type; a scrape
    // that parses (health "up", no error) with samples of every kind shows
    // the negotiation and the OpenMetrics text are right.
    let deadline = Instant::now() + 4 * PATIENCE;
    // `{__name__=~"a|b|c|d"}`, URL-encoded.
    let query = "/api/v1/query?query=%7B__name__%3D~%22wsgate_messages_in_bytes_total%7Cwsgate_ping_rtt_seconds_count%7Cprocess_cpu_seconds_total%7Cwsgate_closes_total%22%7D";
    let (target, series) = loop {
        let target = prometheus
            .get("/api/v1/targets")
            .await
            .and_then(|v| v["data"]["activeTargets"].get(0).cloned());
        if let Some(t) = &target {
            if t["health"] == "up" {
                if let Some(result) = prometheus.get(query).await {
                    let names: Vec<String> = result["data"]["result"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s["metric"]["__name__"].as_str())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    if names.len() >= 4 {
                        break (t.clone(), names);
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape wsgate: target {target:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(target["lastError"], "", "{target}");
    for name in [
        "wsgate_messages_in_bytes_total",
        "wsgate_ping_rtt_seconds_count",
        "process_cpu_seconds_total",
        "wsgate_closes_total",
    ] {
        assert!(series.iter().any(|s| s == name), "{name} in {series:?}");
    }
}
