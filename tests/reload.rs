//! Live reload: real file edits, real signals. A valid edit applies to new
//! connections without dropping existing ones; a broken edit changes
//! nothing and is reported.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The watcher reloads once the directory has been quiet for
/// `reload_debounce`. `write_config` truncates the file and then writes it,
/// so a debounce shorter than a stall of the test between those two calls
/// would load an empty file: 200 ms, not 20.
const BASE: &str = "[server]\nreload_debounce = \"200ms\"\n";

fn with_ip_cap(n: usize) -> String {
    format!("{BASE}[limits]\nmax_connections_per_ip = {n}\n")
}

/// The connection still works (it was not dropped by the reload).
async fn still_open(ws: &mut Ws) {
    ws.send(Message::text("still here")).await.expect("send");
    assert_eq!(recv(ws).await, Message::text("still here"));
}

#[tokio::test]
async fn lowering_and_raising_a_cap_applies_to_new_connections_only() {
    let d = Daemon::start(&with_ip_cap(10)).await;
    let mut a = d.connect("/ws/echo").await;
    let mut b = d.connect("/ws/echo").await;

    d.write_config(&with_ip_cap(1));
    d.wait_reloads("ok", 1.0).await;
    let last = d.wait_last_reload(|r| !r.is_null()).await;
    assert_eq!(
        (&last["ok"], &last["origin"], &last["restart_required"]),
        (&json!(true), &json!("file change"), &json!([])),
        "{last}"
    );
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 429, "{body}");
    still_open(&mut a).await;
    still_open(&mut b).await;
    d.wait_log(&["config reloaded", "limits.max_connections_per_ip: 10 -> 1"])
        .await;

    d.write_config(&with_ip_cap(3));
    d.wait_reloads("ok", 2.0).await;
    let _c = d.connect("/ws/echo").await;
    still_open(&mut a).await;
}

#[tokio::test]
async fn broken_edits_change_nothing_and_a_later_valid_edit_applies() {
    let d = Daemon::start(&with_ip_cap(1)).await;
    let _a = d.connect("/ws/echo").await;

    // Broken TOML.
    d.write_config(&format!("{BASE}[limits]\nmax_connections_per_ip = = 5\n"));
    d.wait_reloads("error", 1.0).await;
    // Line 5: the harness puts `listen` under `[server]`.
    d.wait_log(&["reload refused", "wsgate.toml:5:26: extra `=`"])
        .await;
    let first = d.wait_last_reload(|r| !r.is_null()).await;
    assert_eq!(first["ok"], false, "{first}");
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains("wsgate.toml:5:26")),
        "{first}"
    );
    assert_eq!(
        d.refused("/ws/echo", &[]).await.0,
        429,
        "old limits still apply"
    );

    // Valid TOML, invalid value.
    d.write_config(&format!("{BASE}[limits]\nmax_connections_per_ip = 0\n"));
    d.wait_reloads("error", 2.0).await;
    d.wait_log(&[
        "reload refused",
        "limits.max_connections_per_ip: must be at least 1",
    ])
    .await;
    let second = d.wait_last_reload(|r| r["error"] != first["error"]).await;
    assert_eq!(second["ok"], false, "{second}");
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.contains("limits.max_connections_per_ip: must be at least 1")),
        "{second}"
    );
    assert_eq!(
        d.refused("/ws/echo", &[]).await.0,
        429,
        "old limits still apply"
    );

    d.write_config(&with_ip_cap(2));
    d.wait_reloads("ok", 1.0).await;
    let _b = d.connect("/ws/echo").await;
}

#[tokio::test]
async fn editor_style_replace_is_seen() {
    let d = Daemon::start(&with_ip_cap(10)).await;
    let _a = d.connect("/ws/echo").await;
    d.replace_config(&with_ip_cap(1));
    d.wait_reloads("ok", 1.0).await;
    assert_eq!(d.refused("/ws/echo", &[]).await.0, 429);
}

#[tokio::test]
async fn sighup_reloads() {
    let config = |n: usize| {
        format!("[server]\nwatch_config = false\n[limits]\nmax_connections_per_ip = {n}\n")
    };
    let d = Daemon::start(&config(10)).await;
    let _a = d.connect("/ws/echo").await;
    d.write_config(&config(1));
    d.signal("HUP");
    d.wait_reloads("ok", 1.0).await;
    d.wait_log(&["config reloaded", "SIGHUP"]).await;
    let last = d.wait_last_reload(|r| !r.is_null()).await;
    assert_eq!(
        (&last["ok"], &last["origin"]),
        (&json!(true), &json!("SIGHUP")),
        "{last}"
    );
    assert_eq!(d.refused("/ws/echo", &[]).await.0, 429);
}

#[tokio::test]
async fn removed_route_closes_its_connections_with_1001() {
    let two = concat!(
        "[server]\nreload_debounce = \"200ms\"\n",
        "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
        "[[routes]]\npath = \"/b\"\nrouter = \"echo\"\n",
    );
    let d = Daemon::start(two).await;
    let mut a = d.connect("/a").await;
    let mut b = d.connect("/b").await;
    d.write_config(
        "[server]\nreload_debounce = \"200ms\"\n[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
    );
    let (code, reason) = expect_close(&mut b).await;
    assert_eq!((code, reason.as_str()), (1001, "route removed"));
    still_open(&mut a).await;
    assert_eq!(d.refused("/b", &[]).await.0, 404);
}

#[tokio::test]
async fn enforce_on_reload_closes_the_oldest_over_a_tightened_cap() {
    let config = |n: usize| {
        format!("{BASE}[limits]\nenforce_on_reload = true\nmax_connections_per_ip = {n}\n")
    };
    let d = Daemon::start(&config(10)).await;
    let mut oldest = d.connect("/ws/echo").await;
    let mut middle = d.connect("/ws/echo").await;
    let mut newest = d.connect("/ws/echo").await;
    d.write_config(&config(1));
    let (code, reason) = expect_close(&mut oldest).await;
    assert_eq!((code, reason.as_str()), (4006, "limit tightened"));
    assert_eq!(expect_close(&mut middle).await.0, 4006);
    still_open(&mut newest).await;
}

#[tokio::test]
async fn live_limits_reach_existing_connections() {
    let config = |bytes: usize| format!("{BASE}[limits]\nmax_message_bytes = {bytes}\n");
    let d = Daemon::start(&config(100)).await;
    let mut ws = d.connect("/ws/echo").await;
    still_open(&mut ws).await;
    d.write_config(&config(5));
    d.wait_reloads("ok", 1.0).await;
    ws.send(Message::text("123456")).await.expect("send");
    assert_eq!(expect_close(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn listen_change_is_reported_as_restart_required() {
    let d = Daemon::start(BASE).await;
    // The harness always writes port 0; name another address instead.
    std::fs::write(
        &d.config_path,
        "[server]\nlisten = \"127.0.0.1:1\"\nreload_debounce = \"200ms\"\n",
    )
    .expect("write");
    d.wait_reloads("ok", 1.0).await;
    d.wait_log(&["restart required", "server.listen"]).await;
    let last = d.wait_last_reload(|r| !r.is_null()).await;
    assert_eq!(last["ok"], true, "{last}");
    let restart = last["restart_required"].as_array().expect("a list");
    assert!(
        restart
            .iter()
            .any(|k| k.as_str().is_some_and(|k| k.starts_with("server.listen"))),
        "{last}"
    );
    // Still serving on the old address.
    let _ws = d.connect("/ws/echo").await;
}

#[tokio::test]
async fn topic_permissions_change_for_live_connections() {
    let config = |publish: &str| {
        format!(
            "{BASE}[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\n[routes.options]\npublish = [{publish}]\n"
        )
    };
    let d = Daemon::start(&config("")).await;
    let mut ws = d.connect("/ws").await;
    recv_type(&mut ws, "welcome").await;
    let publish = serde_json::json!({"type": "publish", "topic": "news", "data": 1});
    send_json(&mut ws, publish.clone()).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "forbidden");

    d.write_config(&config("\"news\""));
    d.wait_reloads("ok", 1.0).await;
    send_json(&mut ws, publish).await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["type"], "published", "{reply}");
}

#[tokio::test]
async fn a_route_that_changes_router_closes_its_connections() {
    let config = |router: &str| format!("{BASE}[[routes]]\npath = \"/x\"\nrouter = \"{router}\"\n");
    let d = Daemon::start(&config("echo")).await;
    let mut ws = d.connect("/x").await;
    d.write_config(&config("pubsub"));
    d.wait_reloads("ok", 1.0).await;
    // The next event of the connection applies the change.
    ws.send(Message::text("hi")).await.expect("send");
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1001, "route changed"));
}
