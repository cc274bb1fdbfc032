//! A real browser against a real daemon: headless Chromium loads a page
//! served by the test, the page's script opens a WebSocket to a pub/sub
//! route with `allowed_origins` and the static token authenticator, and
//! what the browser saw is read back from the dumped DOM. A publish over the
//! HTTP API lands in the page; a page from another origin and a page with a
//! bad token are refused before the upgrade (the browser sees close code
//! 1006, the daemon counts a 403 `origin` / a 401 `unauthorized`).
//!
//! Chromium is Debian's `chromium` (`.ci/deps` installs it). Without it the
//! tests fail: they never pass without having run a browser.
//!
//! How the page stays alive: `--dump-dom` prints the DOM when the page's
//! load event fires, and the page ends with `<img src="/hold">`, which the
//! page server answers only when the page reports its outcome at `/done`
//! (the delivery arrived, or the socket closed), or after [`PATIENCE`]. So
//! the browser runs in real time exactly as long as the exchange takes, and
//! the dump follows right after the outcome, with no fixed sleep on either
//! side. `--virtual-time-budget` (dump once a budget of virtual time is
//! used up; virtual time stands still while a fetch is pending) is not used:
//! an open WebSocket does not hold virtual time, and with a pending fetch
//! holding it, Chromium at times delays the page's next fetch until the
//! pending one ends, so the page could not report the subscription in time.
//! Driving Chromium over the DevTools protocol would need far more
//! machinery.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const API_KEY: &str = "api-key-browser-3c7e";
const TOKEN: &str = "tok-browser-8d21";
const USER: &str = "browser-user";
const ROUTE: &str = "/ws/news";

/// Chromium is killed (its whole process group) after this long.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// A daemon with one pub/sub route behind a static token, open to pages
/// from `allowed_origin` only, and the publish API enabled.
async fn daemon(allowed_origin: &str) -> Daemon {
    Daemon::start(&format!(
        "[api]\n\
         keys = [\"{API_KEY}\"]\n\
         \n\
         [auth.t]\n\
         plugin = \"token\"\n\
         tokens = {{ \"{TOKEN}\" = \"{USER}\" }}\n\
         \n\
         [[routes]]\n\
         path = \"{ROUTE}\"\n\
         router = \"pubsub\"\n\
         auth = \"t\"\n\
         allowed_origins = [\"{allowed_origin}\"]\n"
    ))
    .await
}

/// The page: it notes every WebSocket event in `<pre id="log">`, one line
/// each, signals `/opened` once subscribed, and `/done` on the first
/// delivery or on close; its load event waits for `/hold`.
fn page_html(ws_url: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>wsgate in a browser</title>
<link rel="icon" href="data:,"></head>
<body><pre id="log"></pre>
<script>
const log = document.getElementById("log");
function note(line) {{ log.textContent += line + "\n"; }}
let finished = false;
function finish() {{ if (!finished) {{ finished = true; fetch("/done"); }} }}
const ws = new WebSocket("{ws_url}");
ws.onopen = () => note("open");
ws.onerror = () => note("error");
ws.onclose = (e) => {{ note("close " + e.code); finish(); }};
ws.onmessage = (e) => {{
  const m = JSON.parse(e.data);
  if (m.type === "welcome") {{
    note("welcome " + m.user);
  }} else if (m.type === "subscribed") {{
    note("subscribed " + m.topics.join(","));
    fetch("/opened");
  }} else if (m.type === "message") {{
    note("message " + m.topic + " " + JSON.stringify(m.data));
    finish();
  }} else {{
    note("other " + e.data);
  }}
}};
</script>
<!-- Answered once the outcome is reported: the load event, and so the dump, waits for it. -->
<img src="/hold" alt="">
</body></html>
"#
    )
}

/// A page server: answers `GET /` with the page, `/opened` and `/done` as
/// signals from the page, and holds `/hold` until `/done` (or
/// [`PATIENCE`]).
struct Page {
    addr: std::net::SocketAddr,
    opened: watch::Receiver<bool>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Page {
    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Asserts that the page reported its outcome itself, so the dump
    /// came right after it rather than at the page server's deadline.
    fn reported(&self) {
        let requests = self.requests();
        assert!(
            requests.iter().any(|r| r == "/done") && !requests.iter().any(|r| r == HOLD_EXPIRED),
            "the page did not report its outcome; requests {requests:?}"
        );
    }

    /// The request paths seen so far, in order.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }
}

/// Noted among the requests when `/hold` was answered because the page
/// never reported an outcome.
const HOLD_EXPIRED: &str = "(hold expired)";

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// The origin a browser sends for pages from this listener.
fn origin(listener: &TcpListener) -> String {
    format!("http://{}", listener.local_addr().expect("local addr"))
}

fn serve(listener: TcpListener, html: String) -> Page {
    let addr = listener.local_addr().expect("local addr");
    let (opened_tx, opened) = watch::channel(false);
    let (done_tx, _) = watch::channel(false);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new((html, opened_tx, done_tx, Arc::clone(&requests)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer(stream, Arc::clone(&state)));
        }
    });
    Page {
        addr,
        opened,
        requests,
    }
}

type PageState = (
    String,
    watch::Sender<bool>,
    watch::Sender<bool>,
    Arc<Mutex<Vec<String>>>,
);

/// One request per connection (`Connection: close`).
async fn answer(mut stream: TcpStream, state: Arc<PageState>) {
    let (html, opened, done, requests) = &*state;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        // Browsers open spare connections that never send a request.
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    requests.lock().expect("requests").push(path.clone());
    let (status, content_type, body) = match path.as_str() {
        "/" => ("200 OK", "text/html; charset=utf-8", html.clone()),
        "/hold" => {
            let mut done = done.subscribe();
            if tokio::time::timeout(PATIENCE, done.wait_for(|d| *d))
                .await
                .is_err()
            {
                requests.lock().expect("requests").push(HOLD_EXPIRED.into());
            }
            ("204 No Content", "image/gif", String::new())
        }
        "/opened" => {
            opened.send_replace(true);
            ("200 OK", "text/plain", "ok".to_string())
        }
        "/done" => {
            done.send_replace(true);
            ("200 OK", "text/plain", "ok".to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Debian's Chromium: `/usr/bin/chromium`, else `chromium` on `PATH`.
fn chromium() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join("chromium"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH): \
                 these tests need a real browser; install it with .ci/deps \
                 (apt-get install chromium)"
            )
        })
}

/// What a Chromium run printed.
struct Dump {
    dom: String,
    stderr: String,
}

impl Dump {
    /// The page's event log: the text of `<pre id="log">`.
    fn log(&self) -> &str {
        let start = r#"<pre id="log">"#;
        self.dom
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(log, _)| log)
            .unwrap_or_else(|| panic!("no event log in the DOM:\n{}", self.dom))
    }
}

/// Loads `url` in headless Chromium with a fresh profile and returns the
/// DOM it dumps.
async fn dump_dom(url: String) -> Dump {
    let browser = chromium();
    tokio::task::spawn_blocking(move || run_chromium(&browser, &url))
        .await
        .expect("join")
}

fn run_chromium(browser: &Path, url: &str) -> Dump {
    let profile = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            // Required when running as root; the tests often do (CI, containers).
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // No traffic of Chromium's own: on a closed network its
            // connections are refused and it stalls.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the deadline ends the renderer and
        // helpers along with it.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", browser.display()));
    let pid = child.id();
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{pid}"))
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let dom = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        Some(s) if s.success() => Dump { dom, stderr },
        Some(s) => panic!("chromium failed ({s}) on {url}:\n{stderr}\n{dom}"),
        None => panic!("chromium did not finish {url} within {BROWSER_DEADLINE:?}:\n{stderr}"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The browser task's dump; a panic in it (e.g. Chromium is missing) is
/// the test's panic.
fn joined(task: Result<Dump, tokio::task::JoinError>) -> Dump {
    task.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn ws_url(d: &Daemon, token: &str) -> String {
    d.url(&format!("{ROUTE}?access_token={token}&topics=news"))
}

#[tokio::test]
async fn a_publish_lands_in_the_page() {
    let listener = bind().await;
    let d = daemon(&origin(&listener)).await;
    let page = serve(listener, page_html(&ws_url(&d, TOKEN)));
    let mut browser = tokio::spawn(dump_dom(page.url()));

    // The page reports once it is subscribed to `news`; then a backend
    // publishes.
    let mut opened = page.opened.clone();
    tokio::select! {
        opened = tokio::time::timeout(PATIENCE, opened.wait_for(|o| *o)) => {
            if !matches!(opened, Ok(Ok(_))) {
                let dump = joined(browser.await);
                panic!(
                    "the page did not subscribe in time; requests {:?}\nthe DOM:\n{}\nchromium:\n{}\n{}",
                    page.requests(),
                    dump.dom,
                    dump.stderr,
                    d.logs()
                );
            }
        }
        dump = &mut browser => {
            let dump = joined(dump);
            panic!(
                "chromium finished before the page subscribed:\n{}\n{}\n{}",
                dump.dom, dump.stderr, d.logs()
            );
        }
    }
    let data = r#"{"headline":"hello from the API","n":42}"#;
    assert_eq!(d.publish(API_KEY, "news", data).await, 1);

    let dump = joined(browser.await);
    assert_eq!(
        dump.log(),
        format!("open\nwelcome {USER}\nsubscribed news\nmessage news {data}\n"),
        "the DOM:\n{}\nchromium:\n{}",
        dump.dom,
        dump.stderr
    );
    page.reported();
    assert_eq!(
        d.metric(&format!(
            "wsgate_connections_accepted_total{{route=\"{ROUTE}\"}}"
        ))
        .await,
        1.0
    );
}

/// Loads the page; its WebSocket must have failed: a refused handshake
/// is, to the page, an error and an abnormal close, and it never opened.
async fn assert_refused_in_the_page(page: &Page) {
    let dump = dump_dom(page.url()).await;
    assert_eq!(
        dump.log(),
        "error\nclose 1006\n",
        "the DOM:\n{}\nchromium:\n{}",
        dump.dom,
        dump.stderr
    );
    page.reported();
    assert!(!page.requests().contains(&"/opened".to_string()));
}

#[tokio::test]
async fn a_page_from_another_origin_is_refused() {
    let allowed = bind().await;
    let d = daemon(&origin(&allowed)).await;
    let other = bind().await;
    let other_origin = origin(&other);
    let page = serve(other, page_html(&ws_url(&d, TOKEN)));

    assert_refused_in_the_page(&page).await;
    d.wait_metric("wsgate_rejections_total{reason=\"origin\"}", 1.0)
        .await;
    d.wait_log(&[&format!(
        "upgrade refused: origin not allowed (Origin: \"{other_origin}\")"
    )])
    .await;
    assert_eq!(
        d.metric(&format!(
            "wsgate_connections_accepted_total{{route=\"{ROUTE}\"}}"
        ))
        .await,
        0.0
    );
    drop(allowed);
}

#[tokio::test]
async fn a_page_with_a_bad_token_is_refused() {
    let listener = bind().await;
    let d = daemon(&origin(&listener)).await;
    let bad = "tok-browser-wrong-5e90";
    let page = serve(listener, page_html(&ws_url(&d, bad)));

    assert_refused_in_the_page(&page).await;
    d.wait_metric("wsgate_rejections_total{reason=\"unauthorized\"}", 1.0)
        .await;
    d.wait_log(&["upgrade refused", "invalid token"]).await;
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"origin\"}").await,
        0.0
    );
    assert!(!d.logs().contains(bad), "the token is in the log");
}
