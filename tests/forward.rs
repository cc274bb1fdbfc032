//! The `forward` authenticator against a real app: an in-test hyper server
//! on loopback that knows its users by a session cookie, records every call
//! and answers by the session it is shown (yes with a user, 401, 403, 500,
//! or nothing in time).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const KEY_ENV: &str = "WSGATE_TEST_FORWARD_KEY";
const KEY: &str = "forward-key-4711";

/// One call the app received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    headers: HashMap<String, Vec<String>>,
    body: String,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The app: `session=<name>` decides the answer.
struct App {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let recorded = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let calls = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let calls = Arc::clone(&calls);
                        async move {
                            let method = req.method().to_string();
                            let mut headers: HashMap<String, Vec<String>> = HashMap::new();
                            for (k, v) in req.headers() {
                                headers
                                    .entry(k.as_str().to_string())
                                    .or_default()
                                    .push(v.to_str().unwrap_or("").to_string());
                            }
                            let raw = req.into_body().collect().await?.to_bytes();
                            let call = Call {
                                method,
                                headers,
                                body: String::from_utf8_lossy(&raw).into_owned(),
                            };
                            calls.lock().expect("calls").push(call.clone());
                            Ok::<_, hyper::Error>(answer(&call).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        App { addr, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }
}

/// The app's answer to one call: by the session in the cookie (or, for a
/// POST, in the JSON body's headers).
async fn answer(call: &Call) -> hyper::Response<Full<Bytes>> {
    let cookie = if call.method == "POST" {
        let body: Value = serde_json::from_str(&call.body).unwrap_or(Value::Null);
        body["headers"]["cookie"].as_str().unwrap_or("").to_string()
    } else {
        call.header("cookie").unwrap_or("").to_string()
    };
    let session = cookie
        .split(';')
        .filter_map(|kv| kv.trim().strip_prefix("session="))
        .next()
        .unwrap_or("");
    let reply = |status: u16, body: &str| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("answer")
    };
    match session {
        "alice" | "bob" => {
            let mut r = reply(
                200,
                &json!({"user": session, "claims": {"plan": "pro"}}).to_string(),
            );
            r.headers_mut()
                .insert("x-user-id", session.parse().expect("value"));
            r
        }
        "expired" => reply(401, "{\"detail\":\"session expired\"}"),
        "banned" => reply(403, "{\"detail\":\"banned\"}"),
        "boom" => reply(500, "{\"detail\":\"database down\"}"),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reply(200, "{}")
        }
        "nouser" => reply(200, "{}"),
        _ => reply(401, "{\"detail\":\"no session\"}"),
    }
}

/// A pub/sub route per auth instance: `/ws` behind `app` (the app, with
/// `app_extra` options; the user from `X-User-Id` unless they say), `/ws/down` behind an app that is not there,
/// `/ws/slow` behind the app with a short timeout.
fn config(app: &App, app_extra: &str, limits: &str) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    format!(
        "{limits}\n\
         [auth.app]\n\
         plugin = \"forward\"\n\
         url = \"{url}\"\n\
         {user_from}\
         key_env = \"{KEY_ENV}\"\n\
         {app_extra}\n\
         [auth.down]\n\
         plugin = \"forward\"\n\
         url = \"http://{gone}/auth\"\n\
         \n\
         [auth.slow]\n\
         plugin = \"forward\"\n\
         url = \"{url}\"\n\
         timeout = \"300ms\"\n\
         \n\
         [[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\nauth = \"app\"\n\
         [[routes]]\npath = \"/ws/down\"\nrouter = \"pubsub\"\nauth = \"down\"\n\
         [[routes]]\npath = \"/ws/slow\"\nrouter = \"pubsub\"\nauth = \"slow\"\n",
        url = app.url("/internal/ws-auth"),
        user_from = if app_extra.contains("user_from") {
            ""
        } else {
            "user_from = \"header:X-User-Id\"\n"
        },
    )
}

async fn start(app: &App, app_extra: &str, limits: &str) -> Daemon {
    Daemon::start_with_env(&config(app, app_extra, limits), &[(KEY_ENV, KEY)]).await
}

fn session(name: &str) -> (&'static str, String) {
    ("Cookie", format!("theme=dark; session={name}"))
}

async fn connect_as(d: &Daemon, path: &str, name: &str) -> Result<Ws, (u16, String)> {
    let (k, v) = session(name);
    d.try_connect(path, &[(k, &v)]).await
}

/// Reads the welcome message and returns its `user`.
async fn welcome_user(ws: &mut Ws) -> Value {
    let welcome = recv_json(ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    welcome["user"].clone()
}

#[tokio::test]
async fn a_cookie_session_is_the_user_the_app_names_and_a_forged_user_header_is_not() {
    let app = App::start().await;
    let d = start(&app, "", "").await;
    let (k, v) = session("alice");
    let mut ws = d
        .try_connect(
            "/ws?room=1",
            &[
                (k, &v),
                ("X-User-Id", "mallory"),
                ("X-Forwarded-For", "203.0.113.9"),
                ("User-Agent", "client/1"),
            ],
        )
        .await
        .expect("alice is let in");
    assert_eq!(welcome_user(&mut ws).await, "alice");

    let calls = app.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.header("cookie"), Some("theme=dark; session=alice"));
    assert_eq!(call.header("x-wsgate-key"), Some(KEY));
    assert_eq!(call.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(call.headers["x-forwarded-for"].len(), 1);
    assert_eq!(call.header("x-forwarded-proto"), Some("http"));
    assert_eq!(call.header("x-forwarded-uri"), Some("/ws?room=1"));
    assert_eq!(call.header("x-forwarded-method"), Some("GET"));
    // Only the forward_headers of the client's request reach the app.
    assert_eq!(call.header("x-user-id"), None);
    assert!(call
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("wsgate/")));
    assert_eq!(call.header("sec-websocket-key"), None);

    assert_eq!(
        d.metric("wsgate_forward_auth_calls_total{result=\"ok\"}")
            .await,
        1.0
    );
    // The key is never in the log.
    assert!(!d.logs().contains(KEY));
}

#[tokio::test]
async fn the_apps_401_and_403_reach_the_client_without_its_body_unless_asked() {
    let app = App::start().await;
    let d = start(&app, "cache_ttl = \"0s\"", "").await;
    let (status, body) = connect_as(&d, "/ws", "expired").await.expect_err("401");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error\":\"unauthorized\""), "{body}");
    assert!(!body.contains("session expired"), "{body}");
    let (status, body) = connect_as(&d, "/ws", "banned").await.expect_err("403");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"error\":\"forbidden\""), "{body}");
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"unauthorized\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric("wsgate_forward_auth_calls_total{result=\"forbidden\"}")
            .await,
        1.0
    );

    let d = start(&app, "pass_body = true", "").await;
    let (status, body) = connect_as(&d, "/ws", "expired").await.expect_err("401");
    assert_eq!(status, 401);
    assert_eq!(body, "{\"detail\":\"session expired\"}");
    let (status, body) = connect_as(&d, "/ws", "banned").await.expect_err("403");
    assert_eq!((status, body.as_str()), (403, "{\"detail\":\"banned\"}"));
}

#[tokio::test]
async fn an_outage_of_the_app_is_503_auth_unavailable_and_counted_apart() {
    let app = App::start().await;
    let d = start(&app, "", "").await;

    let (status, body) = connect_as(&d, "/ws", "boom").await.expect_err("500");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"error\":\"auth_unavailable\""), "{body}");
    assert!(!body.contains("database down"), "{body}");
    let (status, body) = connect_as(&d, "/ws/slow", "slow")
        .await
        .expect_err("timeout");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("auth_unavailable"), "{body}");
    let (status, body) = connect_as(&d, "/ws/down", "alice").await.expect_err("down");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("auth_unavailable"), "{body}");
    // A 2xx without the user the options read is an outage too.
    let (status, _) = connect_as(&d, "/ws", "nouser").await.expect_err("no user");
    assert_eq!(status, 503);

    // The answer invites the client back.
    let (k, v) = session("boom");
    let resp = d
        .http(
            "GET",
            "/ws",
            &[
                (k, &v),
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        )
        .await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);

    for (result, n) in [
        ("error_status", 2.0),
        ("timeout", 1.0),
        ("unreachable", 1.0),
        ("malformed", 1.0),
        ("unauthorized", 0.0),
    ] {
        assert_eq!(
            d.metric(&format!(
                "wsgate_forward_auth_calls_total{{result=\"{result}\"}}"
            ))
            .await,
            n,
            "{result}"
        );
    }
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"auth_unavailable\"}")
            .await,
        5.0
    );
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"unauthorized\"}")
            .await,
        0.0
    );
    // An outage is never cached: the app is asked again.
    let before = app.count();
    connect_as(&d, "/ws", "boom").await.expect_err("500");
    assert_eq!(app.count(), before + 1);
}

#[tokio::test]
async fn the_cache_answers_a_repeat_within_cache_ttl_and_asks_again_after() {
    let app = App::start().await;
    let d = start(&app, "cache_ttl = \"1s\"", "").await;
    let mut first = connect_as(&d, "/ws", "alice").await.expect("first");
    assert_eq!(welcome_user(&mut first).await, "alice");
    let mut second = connect_as(&d, "/ws", "alice").await.expect("second");
    assert_eq!(welcome_user(&mut second).await, "alice");
    assert_eq!(app.count(), 1, "the repeat came from the cache");
    assert_eq!(
        d.metric("wsgate_forward_auth_cache_total{result=\"hit\"}")
            .await,
        1.0
    );
    // Other credentials are another entry.
    let mut bob = connect_as(&d, "/ws", "bob").await.expect("bob");
    assert_eq!(welcome_user(&mut bob).await, "bob");
    assert_eq!(app.count(), 2);
    // A refusal is not cached (negative_ttl is 0).
    connect_as(&d, "/ws", "expired").await.expect_err("401");
    connect_as(&d, "/ws", "expired").await.expect_err("401");
    assert_eq!(app.count(), 4);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut third = connect_as(&d, "/ws", "alice").await.expect("third");
    assert_eq!(welcome_user(&mut third).await, "alice");
    assert_eq!(app.count(), 5, "asked again after cache_ttl");
}

#[tokio::test]
async fn post_describes_the_request_and_the_user_and_claims_come_from_json() {
    let app = App::start().await;
    let d = start(
        &app,
        "method = \"POST\"\nuser_from = \"json:/user\"\nclaims_from = \"json:/claims\"\n\
         forward_headers = [\"Cookie\", \"X-Request-Id\"]",
        "",
    )
    .await;
    let (k, v) = session("bob");
    let mut ws = d
        .try_connect("/ws?x=1", &[(k, &v), ("X-Request-Id", "r-1")])
        .await
        .expect("bob");
    assert_eq!(welcome_user(&mut ws).await, "bob");
    let calls = app.calls();
    assert_eq!(calls[0].method, "POST");
    let body: Value = serde_json::from_str(&calls[0].body).expect("JSON");
    assert_eq!(body["path"], "/ws");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["ip"], "127.0.0.1");
    assert_eq!(body["secure"], false);
    assert_eq!(
        body["headers"],
        json!({"cookie": "theme=dark; session=bob", "x-request-id": "r-1"})
    );
    assert_eq!(calls[0].header("x-request-id"), Some("r-1"));
}

#[tokio::test]
async fn the_per_user_cap_evicts_the_oldest_forward_authenticated_connection() {
    let app = App::start().await;
    let d = start(
        &app,
        "",
        "[limits]\nmax_connections_per_user = 1\non_user_limit = \"evict_oldest\"\n",
    )
    .await;
    let mut old = connect_as(&d, "/ws", "alice").await.expect("first");
    assert_eq!(welcome_user(&mut old).await, "alice");
    let mut bob = connect_as(&d, "/ws", "bob").await.expect("bob");
    assert_eq!(welcome_user(&mut bob).await, "bob");
    let mut new = connect_as(&d, "/ws", "alice").await.expect("second");
    assert_eq!(welcome_user(&mut new).await, "alice");
    let (code, reason) = expect_close(&mut old).await;
    assert_eq!(code, 4001, "{reason}");
    // Bob, another user of the same app, is untouched.
    send_json(&mut bob, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv_type(&mut bob, "pong").await["id"], 1);
}

#[tokio::test]
async fn a_reload_changes_what_is_forwarded_and_a_broken_edit_is_refused() {
    let app = App::start().await;
    let d = start(&app, "cache_ttl = \"0s\"", "").await;
    let mut ws = connect_as(&d, "/ws", "alice").await.expect("alice");
    assert_eq!(welcome_user(&mut ws).await, "alice");

    // A broken edit: refused, the running instance stays.
    d.replace_config(&config(&app, "method = \"PUT\"", ""));
    d.wait_reloads("error", 1.0).await;
    let mut again = connect_as(&d, "/ws", "alice").await.expect("still alice");
    assert_eq!(welcome_user(&mut again).await, "alice");

    // The cookie is no longer forwarded: the app sees no session.
    d.replace_config(&config(
        &app,
        "cache_ttl = \"0s\"\nforward_headers = [\"Authorization\"]",
        "",
    ));
    d.wait_reloads("ok", 1.0).await;
    let (status, body) = connect_as(&d, "/ws", "alice").await.expect_err("401");
    assert_eq!(status, 401, "{body}");
    assert_eq!(app.calls().last().and_then(|c| c.header("cookie")), None);
    // The connection admitted before the reload stays open.
    send_json(&mut ws, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv_type(&mut ws, "pong").await["id"], 1);
}

/// The app behind TLS, with a certificate for `localhost` signed by a CA
/// of the test's own; returns its port and the CA's PEM file.
async fn tls_app(dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    let cert = LocalCert::new(dir);
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
                    let cookie = req
                        .headers()
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let call = Call {
                        method: "GET".to_string(),
                        headers: HashMap::from([("cookie".to_string(), vec![cookie])]),
                        body: String::new(),
                    };
                    Ok::<_, hyper::Error>(answer(&call).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert.ca_file)
}

#[tokio::test]
async fn an_https_app_is_called_with_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, ca_file) = tls_app(dir.path()).await;
    let instance = |ca: &std::path::Path| {
        format!(
            "[auth.app]\nplugin = \"forward\"\nurl = \"https://localhost:{port}/auth\"\n\
             user_from = \"header:X-User-Id\"\nca_file = \"{}\"\n\
             [[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\nauth = \"app\"\n",
            ca.display()
        )
    };
    let d = Daemon::start(&instance(&ca_file)).await;
    let mut ws = connect_as(&d, "/ws", "alice")
        .await
        .expect("alice over https");
    assert_eq!(welcome_user(&mut ws).await, "alice");

    // A CA that did not sign the app's certificate: the app cannot be
    // reached, which is an outage.
    let wrong = stranger_ca(dir.path());
    let d = Daemon::start(&instance(&wrong)).await;
    let (status, body) = connect_as(&d, "/ws", "alice").await.expect_err("refused");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        d.metric("wsgate_forward_auth_calls_total{result=\"unreachable\"}")
            .await,
        1.0
    );
}
