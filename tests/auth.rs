//! Admission before the upgrade: allowed origins, token and JWT
//! authentication (without leaking any secret), and the per-user caps
//! (`reject` and `evict_oldest`).

mod common;

use common::*;
use futures_util::StreamExt;
use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
use serde_json::{json, Value};

/// A pub/sub route at `/ws` behind the token instance `t` (alice and bob),
/// after `extra` (e.g. a `[limits]` table).
fn token_config(extra: &str) -> String {
    format!(
        "{extra}\n\
         [auth.t]\n\
         plugin = \"token\"\n\
         tokens = {{ \"tok-alice\" = \"alice\", \"tok-bob\" = \"bob\" }}\n\
         \n\
         [[routes]]\n\
         path = \"/ws\"\n\
         router = \"pubsub\"\n\
         auth = \"t\"\n"
    )
}

const ALICE: (&str, &str) = ("Authorization", "Bearer tok-alice");
const BOB: (&str, &str) = ("Authorization", "Bearer tok-bob");

/// Reads the welcome message and returns its `user`.
async fn welcome_user(ws: &mut Ws) -> Value {
    let welcome = recv_json(ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    welcome["user"].clone()
}

/// A ping/pong round trip: the connection is open and served.
async fn round_trip(ws: &mut Ws, id: u64) {
    send_json(ws, json!({"type": "ping", "id": id})).await;
    let pong = recv_type(ws, "pong").await;
    assert_eq!(pong["id"], id, "{pong}");
}

#[tokio::test]
async fn origin_must_be_one_of_the_allowed() {
    let d = Daemon::start(concat!(
        "[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\n",
        "allowed_origins = [\"https://app.example\"]\n",
    ))
    .await;

    let (status, body) = d.try_connect("/ws", &[]).await.expect_err("refused");
    assert_eq!(status, 403, "no Origin: {body}");
    assert!(body.contains("\"error\":\"origin\""), "{body}");

    let (status, body) = d
        .try_connect("/ws", &[("Origin", "https://evil.example")])
        .await
        .expect_err("refused");
    assert_eq!(status, 403, "wrong Origin: {body}");
    assert!(body.contains("\"error\":\"origin\""), "{body}");

    // A prefix or a different scheme is not the same origin.
    let (status, _) = d
        .try_connect("/ws", &[("Origin", "http://app.example")])
        .await
        .expect_err("refused");
    assert_eq!(status, 403);
    // The log says which Origin was sent, quoted.
    d.wait_log(&["upgrade refused: origin not allowed (Origin: \"http://app.example\")"])
        .await;

    let mut ws = d
        .try_connect("/ws", &[("Origin", "https://app.example")])
        .await
        .expect("allowed origin connects");
    assert_eq!(welcome_user(&mut ws).await, Value::Null);
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"origin\"}").await,
        3.0
    );
}

#[tokio::test]
async fn token_auth_refuses_missing_and_bad_tokens_without_leaking_them() {
    let d = Daemon::start(&token_config("")).await;

    let (status, body) = d.try_connect("/ws", &[]).await.expect_err("refused");
    assert_eq!(status, 401, "missing: {body}");
    assert!(body.contains("\"error\":\"unauthorized\""), "{body}");

    let presented = "tok-mallory-guess";
    let mut bodies = vec![body];
    let bearer = format!("Bearer {presented}");
    let (status, body) = d
        .try_connect("/ws", &[("Authorization", &bearer)])
        .await
        .expect_err("refused");
    assert_eq!(status, 401, "bad header token: {body}");
    bodies.push(body);
    let (status, body) = d
        .try_connect(&format!("/ws?access_token={presented}"), &[])
        .await
        .expect_err("refused");
    assert_eq!(status, 401, "bad query token: {body}");
    bodies.push(body);
    // A configured token with the wrong scheme is not accepted either.
    let (status, body) = d
        .try_connect("/ws", &[("Authorization", "Basic tok-alice")])
        .await
        .expect_err("refused");
    assert_eq!(status, 401, "wrong scheme: {body}");
    bodies.push(body);

    // Every refusal is logged; wait for all four before reading the logs.
    d.wait_metric("wsgate_rejections_total{reason=\"unauthorized\"}", 4.0)
        .await;
    d.wait_log(&["upgrade refused", "invalid token"]).await;

    // Good tokens, by header and by query parameter.
    let mut by_header = d.try_connect("/ws", &[ALICE]).await.expect("header");
    assert_eq!(welcome_user(&mut by_header).await, "alice");
    let mut by_query = d
        .try_connect("/ws?access_token=tok-alice", &[])
        .await
        .expect("query");
    assert_eq!(welcome_user(&mut by_query).await, "alice");
    let mut bob = d.try_connect("/ws", &[BOB]).await.expect("bob");
    assert_eq!(welcome_user(&mut bob).await, "bob");

    let logs = d.logs();
    for secret in [presented, "tok-alice", "tok-bob"] {
        for body in &bodies {
            assert!(!body.contains(secret), "{secret} in body: {body}");
        }
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

const JWT_SECRET: &str = "jwt-test-secret-7f3a9c1e5b";

fn jwt(secret: &str, claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

#[tokio::test]
async fn jwt_auth_accepts_good_tokens_and_refuses_bad_and_expired_ones() {
    let d = Daemon::start_with_env(
        concat!(
            "[auth.j]\nplugin = \"jwt\"\nsecret_env = \"WSGATE_TEST_JWT\"\n",
            "[[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\nauth = \"j\"\n",
        ),
        &[("WSGATE_TEST_JWT", JWT_SECRET)],
    )
    .await;
    let now = get_current_timestamp();

    let good = jwt(JWT_SECRET, &json!({"sub": "carol", "exp": now + 600}));
    let bearer = format!("Bearer {good}");
    let mut ws = d
        .try_connect("/ws", &[("Authorization", &bearer)])
        .await
        .expect("good token");
    assert_eq!(welcome_user(&mut ws).await, "carol");
    let mut ws = d
        .try_connect(&format!("/ws?access_token={good}"), &[])
        .await
        .expect("good token in the query");
    assert_eq!(welcome_user(&mut ws).await, "carol");

    let forged = jwt(
        "some-other-secret",
        &json!({"sub": "carol", "exp": now + 600}),
    );
    let bearer = format!("Bearer {forged}");
    let (status, body) = d
        .try_connect("/ws", &[("Authorization", &bearer)])
        .await
        .expect_err("refused");
    assert_eq!(status, 401, "bad signature: {body}");
    assert!(!body.contains("expired"), "{body}");

    let expired = jwt(JWT_SECRET, &json!({"sub": "carol", "exp": now - 3600}));
    let bearer = format!("Bearer {expired}");
    let (status, body) = d
        .try_connect("/ws", &[("Authorization", &bearer)])
        .await
        .expect_err("refused");
    assert_eq!(status, 401, "expired: {body}");
    assert!(body.contains("expired"), "{body}");

    let (status, _) = d
        .try_connect("/ws", &[("Authorization", "Bearer not.a.jwt")])
        .await
        .expect_err("refused");
    assert_eq!(status, 401);

    d.wait_metric("wsgate_rejections_total{reason=\"unauthorized\"}", 3.0)
        .await;
    d.wait_log(&["upgrade refused", "expired"]).await;
    let logs = d.logs();
    assert!(!logs.contains(JWT_SECRET), "secret in logs:\n{logs}");
    for token in [&good, &forged, &expired] {
        assert!(!logs.contains(token.as_str()), "token in logs:\n{logs}");
    }
}

#[tokio::test]
async fn per_user_cap_with_reject_refuses_the_second_connection() {
    let d = Daemon::start(&token_config(
        "[limits]\nmax_connections_per_user = 1\non_user_limit = \"reject\"\n",
    ))
    .await;
    let mut alice = d.try_connect("/ws", &[ALICE]).await.expect("alice");
    assert_eq!(welcome_user(&mut alice).await, "alice");

    let (status, body) = d.try_connect("/ws", &[ALICE]).await.expect_err("refused");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"error\":\"user_limit\""), "{body}");

    let mut bob = d.try_connect("/ws", &[BOB]).await.expect("bob");
    assert_eq!(welcome_user(&mut bob).await, "bob");
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"user_limit\"}")
            .await,
        1.0
    );
    // The first connection is untouched by the refusal.
    round_trip(&mut alice, 1).await;
}

#[tokio::test]
async fn per_user_cap_evicts_the_oldest_by_default() {
    let d = Daemon::start(&token_config("[limits]\nmax_connections_per_user = 2\n")).await;
    let mut first = d.try_connect("/ws", &[ALICE]).await.expect("first");
    assert_eq!(welcome_user(&mut first).await, "alice");
    let mut second = d.try_connect("/ws", &[ALICE]).await.expect("second");
    assert_eq!(welcome_user(&mut second).await, "alice");
    let mut third = d.try_connect("/ws", &[ALICE]).await.expect("third");
    assert_eq!(welcome_user(&mut third).await, "alice");

    let (code, reason) = expect_close(&mut first).await;
    assert_eq!(code, 4001, "{reason}");
    // Reading on lets the client answer the close frame.
    let end = tokio::time::timeout(PATIENCE, first.next()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "nothing after a close: {end:?}"
    );

    // The newest connection is fully served.
    send_json(
        &mut third,
        json!({"type": "subscribe", "topics": ["t"], "id": 1}),
    )
    .await;
    let subscribed = recv_type(&mut third, "subscribed").await;
    assert_eq!(subscribed["topics"], json!(["t"]));
    assert_eq!(subscribed["id"], 1);
    round_trip(&mut third, 2).await;
    // The second one was not evicted.
    round_trip(&mut second, 3).await;

    d.wait_metric("wsgate_closes_total{code=\"4001\"}", 1.0)
        .await;
    assert_eq!(
        d.metric("wsgate_rejections_total{reason=\"user_limit\"}")
            .await,
        0.0
    );
}
