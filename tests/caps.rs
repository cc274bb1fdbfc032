//! Connection caps, checked before the upgrade: total, per IP, per user
//! (reject and evict_oldest), per route; and counts that return to zero.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn echo_route_echoes_text_and_binary() {
    let d = Daemon::start("").await;
    let mut ws = d.connect("/ws/echo").await;
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    assert_eq!(recv(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    assert_eq!(d.metric("wsgate_messages_in_total").await, 2.0);
    assert_eq!(d.metric("wsgate_messages_out_total").await, 2.0);
    assert_eq!(d.metric("wsgate_messages_in_bytes_total").await, 9.0);
    // The totals keep what a closed connection carried.
    drop(ws);
    d.wait_metric("wsgate_connections_open{route=\"/ws/echo\"}", 0.0)
        .await;
    assert_eq!(d.metric("wsgate_messages_out_bytes_total").await, 9.0);
}

#[tokio::test]
async fn total_cap_refuses_with_503_and_retry_after() {
    let d = Daemon::start("[limits]\nmax_connections = 2\n").await;
    let _a = d.connect("/ws/echo").await;
    let _b = d.connect("/ws").await;
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"error\":\"total_limit\""), "{body}");
    let resp = d
        .http(
            "GET",
            "/ws/echo",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
            "",
        )
        .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"total_limit\"}")
            .await,
        2.0
    );
    d.wait_log(&["upgrade refused", "total_limit"]).await;
}

#[tokio::test]
async fn per_ip_cap_refuses_with_429() {
    let d = Daemon::start("[limits]\nmax_connections_per_ip = 1\n").await;
    let _a = d.connect("/ws/echo").await;
    let (status, body) = d.refused("/ws/echo", &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("ip_limit"), "{body}");
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"ip_limit\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn route_cap_counts_only_its_route() {
    let d = Daemon::start(concat!(
        "[[routes]]\npath = \"/small\"\nrouter = \"echo\"\n[routes.limits]\nmax_connections = 1\n",
        "[[routes]]\npath = \"/big\"\nrouter = \"echo\"\n",
    ))
    .await;
    let _a = d.connect("/small").await;
    let (status, body) = d.refused("/small", &[]).await;
    assert_eq!(status, 503);
    assert!(body.contains("route_limit"), "{body}");
    let _b = d.connect("/big").await;
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"route_limit\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn message_of_exactly_the_limit_passes_one_byte_more_is_1009() {
    let d = Daemon::start("[limits]\nmax_message_bytes = 1000\n").await;
    let mut ws = d.connect("/ws/echo").await;
    let exact = "x".repeat(1000);
    ws.send(Message::text(exact.clone())).await.expect("send");
    assert_eq!(recv(&mut ws).await, Message::text(exact));
    ws.send(Message::text("y".repeat(1001)))
        .await
        .expect("send");
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1009);
    d.wait_metric("wsgate_closes_total{code=\"1009\"}", 1.0)
        .await;
}

#[tokio::test]
async fn unknown_path_is_404_and_plain_http_on_a_route_is_400() {
    let d = Daemon::start("").await;
    let (status, body) = d.refused("/nope", &[]).await;
    assert_eq!(status, 404);
    assert!(body.contains("not_found"), "{body}");
    let resp = d.http("GET", "/ws/echo", &[], "").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"], "bad_request");
}
