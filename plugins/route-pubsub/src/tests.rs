//! Unit tests of the pubsub router against a fake session: the wire protocol,
//! topic permissions and limits, message by message.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use wsgate_plugin_api::{
    check_topic, ConnLimits, Identity, Message, OptionsError, Outbound, Outlet, RawValue, Router,
    RouterPlugin, SendError, Session, SubscribeError, Table,
};

use super::*;
use crate::pattern::Pattern;
use crate::router::PubSub;
use crate::wire::truncate;

/// A session that records what the router does to it.
pub(crate) struct FakeSession {
    id: String,
    identity: Identity,
    query: Option<String>,
    sent: Vec<Outbound>,
    pub(crate) subscriptions: Vec<String>,
    limit: usize,
    /// `(topic, data)` of each publish, `data` as the client wrote it.
    pub(crate) publishes: Vec<(String, String)>,
    /// What `publish` reports as delivered.
    pub(crate) delivered: usize,
    /// Sends after this many succeeded fail with `QueueFull`.
    send_capacity: usize,
}

impl FakeSession {
    pub(crate) fn new() -> Self {
        Self {
            id: "c1".into(),
            identity: Identity::anonymous(),
            query: None,
            sent: Vec::new(),
            subscriptions: Vec::new(),
            limit: 100,
            publishes: Vec::new(),
            delivered: 0,
            send_capacity: usize::MAX,
        }
    }

    fn user(mut self, user: &str) -> Self {
        self.identity = Identity::user(user);
        self
    }

    fn query(mut self, query: &str) -> Self {
        self.query = Some(query.into());
        self
    }

    fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The sent messages as JSON, draining them.
    pub(crate) fn take(&mut self) -> Vec<Value> {
        self.sent
            .drain(..)
            .map(|m| match m {
                Outbound::Text(b) => serde_json::from_slice(&b).unwrap(),
                Outbound::Binary(_) => panic!("the router sent a binary frame"),
            })
            .collect()
    }

    /// The one sent message, draining it.
    fn one(&mut self) -> Value {
        let mut sent = self.take();
        assert_eq!(sent.len(), 1, "expected one message, got {sent:?}");
        sent.remove(0)
    }
}

impl Session for FakeSession {
    fn id(&self) -> &str {
        &self.id
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    fn send(&mut self, message: Outbound) -> Result<(), SendError> {
        if self.sent.len() >= self.send_capacity {
            return Err(SendError::QueueFull);
        }
        self.sent.push(message);
        Ok(())
    }

    fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError> {
        if self.subscriptions.iter().any(|t| t == topic) {
            return Ok(false);
        }
        if self.subscriptions.len() >= self.limit {
            return Err(SubscribeError::TooMany { limit: self.limit });
        }
        self.subscriptions.push(topic.into());
        Ok(true)
    }

    fn unsubscribe(&mut self, topic: &str) -> bool {
        let before = self.subscriptions.len();
        self.subscriptions.retain(|t| t != topic);
        self.subscriptions.len() != before
    }

    fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.clone()
    }

    fn publish(&mut self, topic: &str, data: &RawValue) -> usize {
        self.publishes.push((topic.into(), data.get().into()));
        self.delivered
    }

    fn outlet(&self) -> Outlet {
        Outlet::detached()
    }

    fn spawn(&self, _task: wsgate_plugin_api::BoxFuture<'static, ()>) {}

    fn limits(&self) -> ConnLimits {
        ConnLimits {
            max_message_bytes: 65_536,
            ping_interval: std::time::Duration::ZERO,
            pong_timeout: std::time::Duration::ZERO,
            close_timeout: std::time::Duration::ZERO,
        }
    }
}

fn options(toml: &str) -> Table {
    toml.parse::<Table>().unwrap()
}

pub(crate) fn router(toml: &str) -> PubSub {
    PubSub::from_options(&options(toml)).unwrap()
}

fn build_error(toml: &str) -> OptionsError {
    match Plugin.build(&options(toml)) {
        Ok(_) => panic!("options `{toml}` were accepted"),
        Err(e) => e,
    }
}

fn text(router: &PubSub, session: &mut FakeSession, message: &str) -> Value {
    router
        .on_message(&mut (), session, Message::Text(message))
        .unwrap();
    session.one()
}

fn matches(pattern: &str, topic: &str, user: Option<&str>) -> bool {
    Pattern::parse(pattern).unwrap().matches(topic, user)
}

// --- options ---------------------------------------------------------------

#[test]
fn defaults_allow_any_subscribe_and_no_publish() {
    assert_eq!(Plugin.name(), "pubsub");
    let r = router("");
    assert_eq!(&*r.subscribe, &[Pattern::Any]);
    assert!(r.publish.is_empty());
}

#[test]
fn unknown_option_is_refused() {
    let e = build_error("subscribe = [\"*\"]\npublsh = [\"*\"]");
    assert!(e.message.contains("publsh"), "{e:?}");
}

#[test]
fn bad_patterns_are_refused_at_their_index() {
    let cases = [
        ("subscribe = [\"\"]", "subscribe[0]", "empty"),
        (
            "subscribe = [\"a\", \"a..b\"]",
            "subscribe[1]",
            "empty segment",
        ),
        ("publish = [\"a.\"]", "publish[0]", "empty segment"),
        ("publish = [\"a.>.b\"]", "publish[0]", "last segment"),
        ("publish = [\"a*\"]", "publish[0]", "whole segment"),
        ("publish = [\"a.{usr}\"]", "publish[0]", "only placeholder"),
        ("publish = [\"a.{user\"]", "publish[0]", "only placeholder"),
        ("publish = [\"a b\"]", "publish[0]", "whitespace"),
    ];
    for (toml, path, needle) in cases {
        let e = build_error(toml);
        assert_eq!(e.path.as_deref(), Some(path), "{toml}");
        assert!(e.message.contains(needle), "{toml}: {e:?}");
    }
}

#[test]
fn wrong_option_type_is_refused() {
    let e = build_error("subscribe = \"*\"");
    assert!(!e.message.is_empty());
}

// --- patterns and topics --------------------------------------------------

#[test]
fn lone_star_matches_every_topic() {
    assert!(matches("*", "a", None));
    assert!(matches("*", "a.b.c", None));
}

#[test]
fn star_segment_matches_exactly_one_segment() {
    assert!(matches("chat.*", "chat.a", None));
    assert!(!matches("chat.*", "chat", None));
    assert!(!matches("chat.*", "chat.a.b", None));
    assert!(!matches("chat.*", "news.a", None));
    assert!(matches("*.x", "a.x", None));
    assert!(!matches("*.x", "a.y", None));
}

#[test]
fn trailing_gt_matches_one_or_more_segments() {
    assert!(matches("chat.>", "chat.a", None));
    assert!(matches("chat.>", "chat.a.b.c", None));
    assert!(!matches("chat.>", "chat", None));
    assert!(!matches("chat.>", "news.a", None));
    assert!(matches(">", "anything.at.all", None));
}

#[test]
fn literals_match_whole_topics_only() {
    assert!(matches("a.b", "a.b", None));
    assert!(!matches("a.b", "a.bc", None));
    assert!(!matches("a.b", "a", None));
    assert!(!matches("a.b", "a.b.c", None));
}

#[test]
fn user_placeholder_matches_the_connection_user() {
    assert!(matches("inbox.{user}", "inbox.alice", Some("alice")));
    assert!(!matches("inbox.{user}", "inbox.bob", Some("alice")));
    assert!(!matches("inbox.{user}", "inbox.alice", None));
    assert!(matches(
        "chat.user-{user}",
        "chat.user-alice",
        Some("alice")
    ));
    assert!(!matches(
        "chat.user-{user}",
        "chat.user-alicex",
        Some("alice")
    ));
    assert!(!matches("chat.user-{user}", "chat.alice", Some("alice")));
    assert!(matches("{user}-{user}.>", "al-al.x", Some("al")));
    assert!(matches("{user}x", "alicex", Some("alice")));
    // A user id with a `.` can never be one segment.
    assert!(!matches("inbox.{user}", "inbox.a.b", Some("a.b")));
    // An empty user id is no user.
    assert!(!matches("chat.user-{user}", "chat.user-", Some("")));
}

#[test]
fn topic_validation() {
    for ok in ["a", "a.b", "chat.room-1", "é.ü", "{user}", &"a".repeat(256)] {
        assert_eq!(check_topic(ok), Ok(()), "{ok}");
    }
    let long = "a".repeat(257);
    for bad in [
        "", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a\tb", "a\u{7}", "a\u{a0}b", &long,
    ] {
        assert!(check_topic(bad).is_err(), "{bad:?}");
    }
}

// --- open ------------------------------------------------------------------

#[test]
fn welcome_names_connection_and_user() {
    let r = router("");
    let mut s = FakeSession::new();
    r.on_open(&mut s).unwrap();
    assert_eq!(
        s.one(),
        json!({"type": "welcome", "id": "c1", "user": null})
    );

    let mut s = FakeSession::new().user("alice");
    r.on_open(&mut s).unwrap();
    assert_eq!(
        s.one(),
        json!({"type": "welcome", "id": "c1", "user": "alice"})
    );
}

#[test]
fn query_topics_are_subscribed() {
    let r = router("");
    let mut s = FakeSession::new().query("access_token=x&topics=a%2Eb,,c,a.b");
    r.on_open(&mut s).unwrap();
    let sent = s.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1],
        json!({"type": "subscribed", "topics": ["a.b", "c"]})
    );
    assert_eq!(s.subscriptions, ["a.b", "c"]);
}

#[test]
fn query_topics_skip_forbidden_and_invalid_ones() {
    let r = router("subscribe = [\"public.*\", \"inbox.{user}\"]");
    let mut s = FakeSession::new()
        .user("bob")
        .query("topics=public.a,secret,inbox.bob,inbox.alice,a..b");
    r.on_open(&mut s).unwrap();
    let sent = s.take();
    assert_eq!(sent[0]["type"], "welcome");
    let codes: Vec<&Value> = sent[1..sent.len() - 1].iter().map(|m| &m["code"]).collect();
    assert_eq!(codes, ["forbidden", "forbidden", "bad_request"]);
    assert!(sent[1]["message"].as_str().unwrap().contains("`secret`"));
    assert_eq!(
        sent[sent.len() - 1],
        json!({"type": "subscribed", "topics": ["public.a", "inbox.bob"]})
    );
    assert_eq!(s.subscriptions, ["public.a", "inbox.bob"]);
}

#[test]
fn query_topics_stop_at_the_cap() {
    let r = router("");
    let mut s = FakeSession::new().limit(2).query("topics=a,b,c,d");
    r.on_open(&mut s).unwrap();
    let sent = s.take();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[1]["code"], "too_many_subscriptions");
    assert_eq!(sent[2], json!({"type": "subscribed", "topics": ["a", "b"]}));
    assert_eq!(s.subscriptions, ["a", "b"]);
}

#[test]
fn no_subscribed_message_when_nothing_subscribed() {
    let r = router("subscribe = []");
    let mut s = FakeSession::new().query("topics=a");
    r.on_open(&mut s).unwrap();
    let sent = s.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["code"], "forbidden");
    assert!(s.subscriptions.is_empty());
}

#[test]
fn failed_welcome_stops_open() {
    let r = router("");
    let mut s = FakeSession::new().query("topics=a");
    s.send_capacity = 0;
    assert!(r.on_open(&mut s).is_ok());
    assert!(s.subscriptions.is_empty());
}

#[test]
fn open_through_the_erased_router() {
    let dynr = Plugin.build(&options("")).unwrap();
    let mut s = FakeSession::new();
    let mut handler = dynr.open(&mut s).unwrap();
    assert_eq!(s.one()["type"], "welcome");
    handler
        .on_message(&mut s, Message::Text(r#"{"type":"ping"}"#))
        .unwrap();
    assert_eq!(s.one(), json!({"type": "pong"}));
}

// --- subscribe / unsubscribe ----------------------------------------------

#[test]
fn subscribe_and_unsubscribe() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"subscribe","topics":["a","b.c"],"id":7}"#,
    );
    assert_eq!(
        reply,
        json!({"type": "subscribed", "topics": ["a", "b.c"], "id": 7})
    );
    assert_eq!(s.subscriptions, ["a", "b.c"]);

    let reply = text(&r, &mut s, r#"{"type":"unsubscribe","topics":["a","zz"]}"#);
    assert_eq!(
        reply,
        json!({"type": "unsubscribed", "topics": ["a", "zz"]})
    );
    assert_eq!(s.subscriptions, ["b.c"]);
}

#[test]
fn escaped_topics_are_decoded() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"type":"subscribe","topics":["\u0061.b"]}"#);
    assert_eq!(reply, json!({"type": "subscribed", "topics": ["a.b"]}));
    assert_eq!(s.subscriptions, ["a.b"]);
}

#[test]
fn subscribe_is_all_or_nothing_on_bad_or_forbidden_topics() {
    let r = router("subscribe = [\"ok.*\"]");
    let mut s = FakeSession::new();
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"subscribe","topics":["ok.a","ok..b"],"id":"x"}"#,
    );
    assert_eq!(reply["code"], "bad_request");
    assert_eq!(reply["id"], "x");
    assert!(reply["message"].as_str().unwrap().contains("topics[1]"));

    let reply = text(&r, &mut s, r#"{"type":"subscribe","topics":["ok.a","no"]}"#);
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "forbidden");
    assert!(reply["message"].as_str().unwrap().contains("`no`"));
    assert!(s.subscriptions.is_empty());
}

#[test]
fn subscribe_over_the_cap_is_rolled_back() {
    let r = router("");
    let mut s = FakeSession::new().limit(2);
    text(&r, &mut s, r#"{"type":"subscribe","topics":["x"]}"#);
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"subscribe","topics":["x","y","z"],"id":1}"#,
    );
    assert_eq!(reply["code"], "too_many_subscriptions");
    assert_eq!(reply["id"], 1);
    assert!(reply["message"].as_str().unwrap().contains("limit of 2"));
    // `x` was there before the request and stays; `y` is taken back.
    assert_eq!(s.subscriptions, ["x"]);
}

#[test]
fn user_patterns_for_subscribe() {
    let r = router("subscribe = [\"inbox.{user}\"]");
    let mut s = FakeSession::new().user("alice");
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"subscribe","topics":["inbox.alice"]}"#,
    );
    assert_eq!(reply["type"], "subscribed");
    let reply = text(&r, &mut s, r#"{"type":"subscribe","topics":["inbox.bob"]}"#);
    assert_eq!(reply["code"], "forbidden");

    let mut anon = FakeSession::new();
    let reply = text(
        &r,
        &mut anon,
        r#"{"type":"subscribe","topics":["inbox.alice"]}"#,
    );
    assert_eq!(reply["code"], "forbidden");
}

#[test]
fn unsubscribe_rejects_invalid_topics() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"type":"unsubscribe","topics":["a.*"]}"#);
    assert_eq!(reply["code"], "bad_request");
}

// --- publish ---------------------------------------------------------------

#[test]
fn publish_is_forbidden_by_default() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"type":"publish","topic":"a","data":1}"#);
    assert_eq!(reply["code"], "forbidden");
    assert!(s.publishes.is_empty());
}

#[test]
fn publish_forwards_data_verbatim() {
    let r = router("publish = [\"chat.>\"]");
    let mut s = FakeSession::new();
    s.delivered = 3;
    let msg =
        r#"{"id":"p1","type":"publish","topic":"chat.a","data": {"b" : [1, 2.50], "s":"\u00e9"} }"#;
    let reply = text(&r, &mut s, msg);
    assert_eq!(
        reply,
        json!({"type": "published", "topic": "chat.a", "delivered": 3, "id": "p1"})
    );
    assert_eq!(
        s.publishes,
        [(
            "chat.a".to_string(),
            r#"{"b" : [1, 2.50], "s":"\u00e9"}"#.to_string()
        )]
    );
}

#[test]
fn publish_accepts_null_data_but_not_missing_data() {
    let r = router("publish = [\"*\"]");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"type":"publish","topic":"a","data":null}"#);
    assert_eq!(reply["type"], "published");
    assert_eq!(s.publishes, [("a".to_string(), "null".to_string())]);

    let reply = text(&r, &mut s, r#"{"type":"publish","topic":"a"}"#);
    assert_eq!(reply["code"], "bad_request");
    assert!(reply["message"].as_str().unwrap().contains("data"));
    let reply = text(&r, &mut s, r#"{"type":"publish","data":1}"#);
    assert_eq!(reply["code"], "bad_request");
    assert!(reply["message"].as_str().unwrap().contains("topic"));
    assert_eq!(s.publishes.len(), 1);
}

#[test]
fn publish_checks_topic_and_user_pattern() {
    let r = router("publish = [\"user-{user}.>\"]");
    let mut s = FakeSession::new().user("bob");
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"publish","topic":"user-bob.x","data":1}"#,
    );
    assert_eq!(reply["type"], "published");
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"publish","topic":"user-eve.x","data":1}"#,
    );
    assert_eq!(reply["code"], "forbidden");
    let reply = text(
        &r,
        &mut s,
        r#"{"type":"publish","topic":"user-bob.>","data":1}"#,
    );
    assert_eq!(reply["code"], "bad_request");
    assert_eq!(s.publishes.len(), 1);
}

// --- other messages and errors --------------------------------------------

#[test]
fn ping_echoes_any_id() {
    let r = router("");
    let mut s = FakeSession::new();
    assert_eq!(
        text(&r, &mut s, r#"{"type":"ping"}"#),
        json!({"type": "pong"})
    );
    assert_eq!(
        text(&r, &mut s, r#"{"type":"ping","id":{"n":[1]}}"#),
        json!({"type": "pong", "id": {"n": [1]}})
    );
    assert_eq!(
        text(&r, &mut s, r#"{"type":"ping","id":null}"#),
        json!({"type": "pong", "id": null})
    );
}

#[test]
fn malformed_messages_are_bad_requests() {
    let r = router("");
    let mut s = FakeSession::new();
    for msg in [
        "not json",
        "{\"type\":\"ping\"",
        "[1,2]",
        "42",
        "{}",
        r#"{"type":5}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","topics":[1]}"#,
        r#"{"type":"publish","topic":["a"],"data":1}"#,
        r#"{"type":"ping","type":"ping"}"#,
    ] {
        let reply = text(&r, &mut s, msg);
        assert_eq!(reply["type"], "error", "{msg}");
        assert_eq!(reply["code"], "bad_request", "{msg}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
}

#[test]
fn bad_field_errors_still_echo_the_id() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"id":9,"type":"subscribe","topics":"a"}"#);
    assert_eq!(reply["code"], "bad_request");
    assert_eq!(reply["id"], 9);
    assert!(reply["message"].as_str().unwrap().contains("sequence"));
}

#[test]
fn unknown_type_is_reported_with_id() {
    let r = router("");
    let mut s = FakeSession::new();
    let reply = text(&r, &mut s, r#"{"type":"hello","id":"h"}"#);
    assert_eq!(reply["code"], "unknown_type");
    assert_eq!(reply["id"], "h");
    assert!(reply["message"].as_str().unwrap().contains("`hello`"));

    // An unknown type wins over fields it would not use anyway.
    let reply = text(&r, &mut s, r#"{"type":"hello","topics":5,"id":2}"#);
    assert_eq!(reply["code"], "unknown_type");
    assert_eq!(reply["id"], 2);

    // A long type is quoted only in part.
    let long = format!(r#"{{"type":"{}"}}"#, "é".repeat(1000));
    let reply = text(&r, &mut s, &long);
    assert_eq!(reply["code"], "unknown_type");
    assert!(reply["message"].as_str().unwrap().len() < 200);
}

#[test]
fn binary_frames_are_bad_requests() {
    let r = router("");
    let mut s = FakeSession::new();
    r.on_message(&mut (), &mut s, Message::Binary(b"{\"type\":\"ping\"}"))
        .unwrap();
    assert_eq!(
        s.one(),
        json!({
            "type": "error",
            "code": "bad_request",
            "message": "binary frames are not part of this protocol"
        })
    );
}

#[test]
fn rate_limited_and_shutdown_notices() {
    let r = router("");
    let mut s = FakeSession::new();
    r.on_rate_limited(&mut (), &mut s);
    assert_eq!(
        s.one(),
        json!({
            "type": "error",
            "code": "rate_limited",
            "message": "message dropped: rate limit exceeded"
        })
    );
    r.on_shutdown(&mut (), &mut s, 1500);
    assert_eq!(
        s.one(),
        json!({"type": "shutdown", "reconnect_after_ms": 1500})
    );
}

#[test]
fn failed_send_is_not_an_error() {
    let r = router("");
    let mut s = FakeSession::new();
    s.send_capacity = 0;
    let result = r.on_message(
        &mut (),
        &mut s,
        Message::Text(r#"{"type":"subscribe","topics":["a"]}"#),
    );
    assert!(result.is_ok());
    assert!(s.sent.is_empty());
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("abc", 5), "abc");
    assert_eq!(truncate("abc", 2), "ab");
    assert_eq!(truncate("éé", 3), "é");
}
