//! The pub/sub wire protocol end to end: welcome, subscribe, publish from
//! the API and from clients, permissions, the subscription cap, and errors
//! that keep the connection open.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "k";

/// Connects and reads the welcome message.
async fn join(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Ws {
    let mut ws = d
        .try_connect(path, headers)
        .await
        .unwrap_or_else(|(s, b)| panic!("connect {path}: {s} {b}"));
    let welcome = recv_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert!(welcome["id"].is_string(), "{welcome}");
    ws
}

async fn subscribe(ws: &mut Ws, topics: &[&str]) {
    send_json(ws, json!({"type": "subscribe", "topics": topics})).await;
    let reply = recv_json(ws).await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "topics": topics}),
        "subscribe {topics:?}"
    );
}

/// The next message must be the pong for `id`: nothing was queued before it.
async fn expect_pong(ws: &mut Ws, id: Value) {
    send_json(ws, json!({"type": "ping", "id": id})).await;
    let reply = recv_json(ws).await;
    assert_eq!(reply, json!({"type": "pong", "id": id}));
}

/// The next message must be an error with this code (and `id`, if any).
async fn expect_error(ws: &mut Ws, code: &str, id: Option<Value>) -> Value {
    let reply = recv_json(ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
    match id {
        Some(id) => assert_eq!(reply["id"], id, "{reply}"),
        None => assert!(reply.get("id").is_none(), "{reply}"),
    }
    reply
}

#[tokio::test]
async fn api_publish_reaches_exactly_the_subscribers() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n").await;
    let mut a1 = join(&d, "/ws", &[]).await;
    let mut a2 = join(&d, "/ws", &[]).await;
    let mut b = join(&d, "/ws", &[]).await;

    send_json(
        &mut a1,
        json!({"type": "subscribe", "topics": ["a"], "id": "s1"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut a1).await,
        json!({"type": "subscribed", "topics": ["a"], "id": "s1"})
    );
    subscribe(&mut a2, &["a"]).await;
    subscribe(&mut b, &["b"]).await;

    // Nested data with escapes, unicode, big and odd numbers, written
    // with spacing: it is forwarded verbatim, never reparsed.
    let data = r#"{"n": [1, 2.50, -0, 1e3, 123456789012345678901234567890], "s": "é \"q\" \u00e9\n", "o": {"deep": [[{"x": null}], true, false, {}]}}"#;
    assert_eq!(d.publish(API_KEY, "a", data).await, 2);
    let want = json!({
        "type": "message",
        "topic": "a",
        "data": serde_json::from_str::<Value>(data).expect("data"),
    });
    for ws in [&mut a1, &mut a2] {
        let Message::Text(text) = recv(ws).await else {
            panic!("expected a text frame");
        };
        let got: Value = serde_json::from_str(text.as_str()).expect("JSON");
        assert_eq!(got, want);
        assert!(text.as_str().contains(data), "data not verbatim: {text}");
    }
    // `b` got nothing for `a`.
    expect_pong(&mut b, json!(1)).await;

    assert_eq!(d.publish(API_KEY, "nobody.here", "1").await, 0);
    assert_eq!(d.publish(API_KEY, "b", "\"just a string\"").await, 1);
    assert_eq!(
        recv_json(&mut b).await,
        json!({"type": "message", "topic": "b", "data": "just a string"})
    );

    // Unsubscribe stops delivery to that connection only.
    send_json(
        &mut a1,
        json!({"type": "unsubscribe", "topics": ["a"], "id": 9}),
    )
    .await;
    assert_eq!(
        recv_json(&mut a1).await,
        json!({"type": "unsubscribed", "topics": ["a"], "id": 9})
    );
    assert_eq!(d.publish(API_KEY, "a", "[1,2,3]").await, 1);
    assert_eq!(
        recv_json(&mut a2).await,
        json!({"type": "message", "topic": "a", "data": [1, 2, 3]})
    );
    expect_pong(&mut a1, json!("after")).await;
    assert_eq!(
        d.metric("wsgate_publishes_total{source=\"api\"}").await,
        4.0
    );
}

#[tokio::test]
async fn topics_in_the_query_are_subscribed_at_connect() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n").await;
    let mut ws = join(&d, "/ws?topics=a,b", &[]).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "subscribed", "topics": ["a", "b"]})
    );
    assert_eq!(d.publish(API_KEY, "b", "{\"k\":1}").await, 1);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "message", "topic": "b", "data": {"k": 1}})
    );
    assert_eq!(d.publish(API_KEY, "a", "null").await, 1);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "message", "topic": "a", "data": null})
    );
}

#[tokio::test]
async fn clients_publish_only_where_the_route_allows() {
    let d = Daemon::start(concat!(
        "[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\n",
        "[routes.options]\npublish = [\"chat.*\"]\n",
    ))
    .await;
    let mut listener = join(&d, "/ws", &[]).await;
    subscribe(&mut listener, &["chat.x"]).await;
    let mut talker = join(&d, "/ws", &[]).await;

    send_json(
        &mut talker,
        json!({"type": "publish", "topic": "chat.x", "data": {"text": "hi", "n": [1]}, "id": 5}),
    )
    .await;
    assert_eq!(
        recv_json(&mut talker).await,
        json!({"type": "published", "topic": "chat.x", "delivered": 1, "id": 5})
    );
    assert_eq!(
        recv_json(&mut listener).await,
        json!({"type": "message", "topic": "chat.x", "data": {"text": "hi", "n": [1]}})
    );

    // No subscriber: delivered 0.
    send_json(
        &mut talker,
        json!({"type": "publish", "topic": "chat.y", "data": 0}),
    )
    .await;
    assert_eq!(
        recv_json(&mut talker).await,
        json!({"type": "published", "topic": "chat.y", "delivered": 0})
    );

    // Not matching `chat.*`: forbidden, and the connection stays.
    for (topic, id) in [("other", 6), ("chat", 7), ("chat.x.y", 8)] {
        send_json(
            &mut talker,
            json!({"type": "publish", "topic": topic, "data": 1, "id": id}),
        )
        .await;
        expect_error(&mut talker, "forbidden", Some(json!(id))).await;
    }
    expect_pong(&mut talker, json!("still open")).await;
    // Nothing forbidden reached the listener.
    expect_pong(&mut listener, json!(0)).await;
    assert_eq!(
        d.metric("wsgate_publishes_total{source=\"client\"}").await,
        2.0
    );
}

#[tokio::test]
async fn publishing_is_off_by_default() {
    let d = Daemon::start("").await;
    let mut ws = join(&d, "/ws", &[]).await;
    send_json(
        &mut ws,
        json!({"type": "publish", "topic": "a", "data": 1, "id": 1}),
    )
    .await;
    expect_error(&mut ws, "forbidden", Some(json!(1))).await;
    expect_pong(&mut ws, json!(2)).await;
}

#[tokio::test]
async fn user_patterns_follow_the_authenticated_user() {
    let d = Daemon::start(concat!(
        "[auth.t]\nplugin = \"token\"\n",
        "tokens = { \"tok-alice\" = \"alice\", \"tok-bob\" = \"bob\" }\n",
        "[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\nauth = \"t\"\n",
        "[routes.options]\nsubscribe = [\"user.{user}\", \"public\"]\n",
    ))
    .await;
    let mut alice = join(&d, "/ws", &[("Authorization", "Bearer tok-alice")]).await;
    subscribe(&mut alice, &["user.alice"]).await;
    subscribe(&mut alice, &["public"]).await;
    for (topic, id) in [
        ("user.bob", 1),
        ("user", 2),
        ("user.alice.x", 3),
        ("other", 4),
    ] {
        send_json(
            &mut alice,
            json!({"type": "subscribe", "topics": [topic], "id": id}),
        )
        .await;
        expect_error(&mut alice, "forbidden", Some(json!(id))).await;
    }
    // All or nothing: one forbidden topic voids the whole request.
    send_json(
        &mut alice,
        json!({"type": "subscribe", "topics": ["public", "user.bob"], "id": 5}),
    )
    .await;
    expect_error(&mut alice, "forbidden", Some(json!(5))).await;

    let mut bob = join(&d, "/ws", &[("Authorization", "Bearer tok-bob")]).await;
    subscribe(&mut bob, &["user.bob"]).await;
    send_json(
        &mut bob,
        json!({"type": "subscribe", "topics": ["user.alice"], "id": 6}),
    )
    .await;
    expect_error(&mut bob, "forbidden", Some(json!(6))).await;
    expect_pong(&mut alice, json!(7)).await;
    expect_pong(&mut bob, json!(8)).await;
}

#[tokio::test]
async fn subscription_cap_refuses_more_topics_and_keeps_the_connection() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n[limits]\nmax_subscriptions = 2\n").await;
    let mut ws = join(&d, "/ws", &[]).await;
    subscribe(&mut ws, &["a", "b"]).await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "topics": ["c"], "id": "third"}),
    )
    .await;
    expect_error(&mut ws, "too_many_subscriptions", Some(json!("third"))).await;
    // Resubscribing an existing topic does not count against the cap.
    subscribe(&mut ws, &["a"]).await;
    expect_pong(&mut ws, json!(1)).await;
    assert_eq!(d.publish(API_KEY, "c", "1").await, 0);

    // Room again after an unsubscribe.
    send_json(&mut ws, json!({"type": "unsubscribe", "topics": ["b"]})).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "unsubscribed", "topics": ["b"]})
    );
    subscribe(&mut ws, &["c"]).await;
    assert_eq!(d.publish(API_KEY, "c", "2").await, 1);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "message", "topic": "c", "data": 2})
    );
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_connection_stays() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n").await;
    let mut ws = join(&d, "/ws", &[]).await;

    let send_text = |text: &'static str| Message::text(text);
    // Not JSON; not an object.
    for text in [
        "{not json",
        "\"subscribe\"",
        "42",
        "null",
        "",
        "{\"type\":\"ping\"",
    ] {
        ws.send(send_text(text)).await.expect("send");
        expect_error(&mut ws, "bad_request", None).await;
    }
    // An object without a type.
    ws.send(send_text("{\"id\":1}")).await.expect("send");
    expect_error(&mut ws, "bad_request", Some(json!(1))).await;
    // A wrong-typed field: the id is still echoed.
    ws.send(send_text(
        "{\"type\":\"subscribe\",\"topics\":\"a\",\"id\":{\"req\":3}}",
    ))
    .await
    .expect("send");
    expect_error(&mut ws, "bad_request", Some(json!({"req": 3}))).await;
    // Missing fields.
    send_json(&mut ws, json!({"type": "subscribe", "id": 4})).await;
    expect_error(&mut ws, "bad_request", Some(json!(4))).await;
    send_json(&mut ws, json!({"type": "publish", "topic": "a", "id": 5})).await;
    expect_error(&mut ws, "bad_request", Some(json!(5))).await;

    // Unknown types, with and without an id.
    send_json(&mut ws, json!({"type": "dance", "id": "d1"})).await;
    let err = expect_error(&mut ws, "unknown_type", Some(json!("d1"))).await;
    assert!(
        err["message"].as_str().unwrap_or("").contains("dance"),
        "{err}"
    );
    send_json(&mut ws, json!({"type": "dance"})).await;
    expect_error(&mut ws, "unknown_type", None).await;

    // Invalid topics.
    for (i, topic) in ["", "a..b", "a b", "chat.*", "chat.>", ".a", "a."]
        .into_iter()
        .enumerate()
    {
        let id = json!(100 + i);
        send_json(
            &mut ws,
            json!({"type": "subscribe", "topics": ["ok", topic], "id": id}),
        )
        .await;
        expect_error(&mut ws, "bad_request", Some(id)).await;
    }
    send_json(
        &mut ws,
        json!({"type": "subscribe", "topics": ["x".repeat(257)], "id": "long"}),
    )
    .await;
    expect_error(&mut ws, "bad_request", Some(json!("long"))).await;
    send_json(
        &mut ws,
        json!({"type": "unsubscribe", "topics": ["a b"], "id": "u"}),
    )
    .await;
    expect_error(&mut ws, "bad_request", Some(json!("u"))).await;

    // A binary frame is not part of the protocol.
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    expect_error(&mut ws, "bad_request", None).await;

    expect_pong(&mut ws, json!("alive")).await;
    // The failed subscribes added nothing (all or nothing): `ok` was in
    // every one of them.
    assert_eq!(d.publish(API_KEY, "ok", "1").await, 0);
    expect_pong(&mut ws, json!("nothing queued")).await;
}

/// Every message is a JSON object; an array is a `bad_request`, never read
/// positionally as the fields of a request.
#[tokio::test]
async fn arrays_are_bad_requests_not_positional_requests() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n").await;
    let mut ws = join(&d, "/ws", &[]).await;
    for text in ["[\"subscribe\", 3, [\"a\"]]", "[\"ping\", 7]", "[1,2]"] {
        ws.send(Message::text(text)).await.expect("send");
        let reply = recv_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{text} => {reply}");
        assert_eq!(reply["code"], "bad_request", "{text} => {reply}");
        assert!(reply.get("id").is_none(), "{text} => {reply}");
    }
    // The array did not subscribe anything.
    assert_eq!(d.publish(API_KEY, "a", "1").await, 0);
    expect_pong(&mut ws, json!("alive")).await;
}
