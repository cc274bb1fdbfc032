//! Property tests of the client message parser (the [`super::wire::Request`]
//! the router reads from each text message):
//!
//! - any text, and any bytes read as text (invalid UTF-8 replaced), is
//!   answered with exactly one message without a panic: the reply to the
//!   request it is, or the error docs/protocol.md gives for it, with the
//!   request's `id` when it can be read; what the answer must be is worked
//!   out here from the text itself, entry by entry;
//! - every request the protocol can express, written with its keys in any
//!   order, JSON whitespace between its tokens, escapes in its strings and
//!   unknown fields among its own, is read as itself: the reply lists its
//!   topics as sent, echoes its `id`, and a publish forwards `data` byte for
//!   byte;
//! - a request without a required field, with a field of the wrong JSON
//!   type or with an unknown `type` is refused with the documented code and
//!   message, its `id` echoed; a binary frame is refused whatever it holds.

use std::fmt;

use proptest::prelude::*;
use proptest::sample::{Index, Selector};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};
use wsgate_plugin_api::{Message, RawValue, Router};

use crate::router::PubSub;
use crate::tests::{router, FakeSession};

/// The message types of the protocol.
const TYPES: &[&str] = &["subscribe", "unsubscribe", "publish", "ping"];

/// The fields a client message may have.
const FIELDS: &[&str] = &["type", "id", "topics", "topic", "data"];

/// What `delivered` the session reports for a publish.
const DELIVERED: usize = 3;

// The model of the protocol.

/// What the documentation says an error message is.
#[derive(Debug, Clone, PartialEq)]
enum Says {
    Exactly(String),
    StartsWith(String),
}

/// The answer to one message, as docs/protocol.md describes it.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Error {
        code: &'static str,
        message: Says,
        id: Option<Value>,
    },
    Subscribed {
        topics: Vec<String>,
        id: Option<Value>,
    },
    Unsubscribed {
        topics: Vec<String>,
        id: Option<Value>,
    },
    /// `data` as the client wrote it.
    Published {
        topic: String,
        data: String,
        id: Option<Value>,
    },
    Pong {
        id: Option<Value>,
    },
}

fn bad_request(message: Says, id: Option<Value>) -> Answer {
    Answer::Error {
        code: "bad_request",
        message,
        id,
    }
}

/// The answer to a message of the unknown type `kind`, which is quoted up
/// to 64 bytes, cut before a character that would not fit.
fn unknown_type(kind: &str, id: Option<Value>) -> Answer {
    let mut quoted = String::new();
    for c in kind.chars() {
        if quoted.len() + c.len_utf8() > 64 {
            break;
        }
        quoted.push(c);
    }
    Answer::Error {
        code: "unknown_type",
        message: Says::Exactly(format!(
            "unknown message type `{quoted}`; expected subscribe, unsubscribe, publish or ping"
        )),
        id,
    }
}

/// A topic name as docs/protocol.md defines one.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 256
        && topic.split('.').all(|segment| !segment.is_empty())
        && !topic
            .chars()
            .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

/// An object's entries in their order, duplicates kept, values as written.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// What the server must answer to the text message `text`.
///
/// A message is read whole or not at all: a known field given twice, a
/// `type` or `topic` that is not a string, or `topics` that are not an
/// array of strings make it malformed (`null` is the same as no field,
/// except for `id` and `data`). The `id` of a malformed message is echoed
/// when `type` and `id` each appear at most once, and then an unknown
/// `type` string is reported as such. A well-formed message lacking a field
/// its type needs is refused naming the field.
fn expected(text: &str) -> Answer {
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
        return bad_request(Says::StartsWith("invalid message: ".into()), None);
    };
    if !raw.get().starts_with('{') {
        return bad_request(
            Says::Exactly("invalid message: expected a JSON object".into()),
            None,
        );
    }
    let Ok(Entries(entries)) = serde_json::from_str::<Entries>(raw.get()) else {
        panic!("a JSON object without entries: {raw}");
    };
    let count = |name: &str| entries.iter().filter(|(k, _)| k == name).count();
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.get())
    };
    // A field that is there and not `null`.
    let given = |name: &str| field(name).filter(|v| *v != "null");
    let string = |raw: &str| serde_json::from_str::<String>(raw).ok();
    let strings = |raw: &str| serde_json::from_str::<Vec<String>>(raw).ok();

    let id = field("id").map(|v| serde_json::from_str::<Value>(v).expect("an id is JSON"));
    let well_formed = FIELDS.iter().all(|f| count(f) <= 1)
        && given("type").is_none_or(|v| string(v).is_some())
        && given("topic").is_none_or(|v| string(v).is_some())
        && given("topics").is_none_or(|v| strings(v).is_some());
    if !well_formed {
        if count("type") > 1 || count("id") > 1 {
            return bad_request(Says::StartsWith("invalid message: ".into()), None);
        }
        if let Some(kind) = field("type").and_then(string) {
            if !TYPES.contains(&kind.as_str()) {
                return unknown_type(&kind, id);
            }
        }
        return bad_request(Says::StartsWith("invalid message: ".into()), id);
    }

    let missing = |name: &str| Says::Exactly(format!("missing field `{name}`"));
    let Some(kind) = given("type").and_then(string) else {
        return bad_request(missing("type"), id);
    };
    match kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let Some(topics) = given("topics").and_then(strings) else {
                return bad_request(missing("topics"), id);
            };
            if let Some(i) = topics.iter().position(|t| !valid_topic(t)) {
                return bad_request(Says::StartsWith(format!("topics[{i}]: ")), id);
            }
            if kind == "subscribe" {
                Answer::Subscribed { topics, id }
            } else {
                Answer::Unsubscribed { topics, id }
            }
        }
        "publish" => {
            let Some(topic) = given("topic").and_then(string) else {
                return bad_request(missing("topic"), id);
            };
            let Some(data) = field("data") else {
                return bad_request(missing("data"), id);
            };
            if !valid_topic(&topic) {
                return bad_request(Says::StartsWith("topic: ".into()), id);
            }
            Answer::Published {
                topic,
                data: data.to_string(),
                id,
            }
        }
        "ping" => Answer::Pong { id },
        other => unknown_type(other, id),
    }
}

/// The router of these tests: every topic may be subscribed and published.
fn open_router() -> PubSub {
    router("subscribe = [\"*\"]\npublish = [\"*\"]")
}

/// Sends `text` to a new connection and checks that the one answer, and
/// what the router did to the session, is `answer`; the answer.
fn check_answer(text: &str, answer: &Answer) -> Result<Value, TestCaseError> {
    let router = open_router();
    let mut session = FakeSession::new();
    session.delivered = DELIVERED;
    router
        .on_message(&mut (), &mut session, Message::Text(text))
        .map_err(|close| TestCaseError::fail(format!("{text:?} closed: {close:?}")))?;
    let mut sent = session.take();
    prop_assert_eq!(sent.len(), 1, "{:?} answered with {:?}", text, sent);
    let reply = sent.remove(0);

    let with_id = |mut reply: Value, id: &Option<Value>| {
        if let (Some(id), Value::Object(object)) = (id, &mut reply) {
            object.insert("id".into(), id.clone());
        }
        reply
    };
    let mut subscribed: Vec<String> = Vec::new();
    let mut published: Vec<(String, String)> = Vec::new();
    match answer {
        Answer::Error { code, message, id } => {
            let Value::Object(object) = &reply else {
                return Err(TestCaseError::fail(format!("{text:?}: {reply}")));
            };
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut want = vec!["code", "message", "type"];
            if id.is_some() {
                want.push("id");
            }
            want.sort_unstable();
            prop_assert_eq!(keys, want, "{:?}: {}", text, reply);
            prop_assert_eq!(&object["type"], "error", "{:?}: {}", text, reply);
            prop_assert_eq!(&object["code"], code, "{:?}: {}", text, reply);
            prop_assert_eq!(object.get("id"), id.as_ref(), "{:?}: {}", text, reply);
            let got = object["message"].as_str().unwrap_or_default();
            match message {
                Says::Exactly(m) => prop_assert_eq!(got, m, "{:?}", text),
                Says::StartsWith(m) => {
                    prop_assert!(
                        got.starts_with(m.as_str()) && got.len() > m.len(),
                        "{:?}: {:?} is not {:?}...",
                        text,
                        got,
                        m
                    );
                }
            }
        }
        Answer::Subscribed { topics, id } => {
            let want = with_id(json!({"type": "subscribed", "topics": topics}), id);
            prop_assert_eq!(&reply, &want, "{:?}", text);
            for topic in topics {
                if !subscribed.contains(topic) {
                    subscribed.push(topic.clone());
                }
            }
        }
        Answer::Unsubscribed { topics, id } => {
            let want = with_id(json!({"type": "unsubscribed", "topics": topics}), id);
            prop_assert_eq!(&reply, &want, "{:?}", text);
        }
        Answer::Published { topic, data, id } => {
            let want = with_id(
                json!({"type": "published", "topic": topic, "delivered": DELIVERED}),
                id,
            );
            prop_assert_eq!(&reply, &want, "{:?}", text);
            published.push((topic.clone(), data.clone()));
        }
        Answer::Pong { id } => {
            prop_assert_eq!(&reply, &with_id(json!({"type": "pong"}), id), "{:?}", text);
        }
    }
    prop_assert_eq!(&session.subscriptions, &subscribed, "{:?}", text);
    prop_assert_eq!(&session.publishes, &published, "{:?}", text);
    Ok(reply)
}

// Writing messages.

/// How a message is written: the whitespace around its tokens and how each
/// character of its strings is written, each list taken in turn.
#[derive(Debug, Clone)]
struct Style {
    spaces: Vec<String>,
    escapes: Vec<u8>,
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::collection::vec("[ \t\r\n]{0,3}", 1..12),
        prop::collection::vec(any::<u8>(), 1..16),
    )
        .prop_map(|(spaces, escapes)| Style { spaces, escapes })
}

struct Writer<'a> {
    style: &'a Style,
    spaces: usize,
    escapes: usize,
    out: String,
}

impl<'a> Writer<'a> {
    fn new(style: &'a Style) -> Self {
        Self {
            style,
            spaces: 0,
            escapes: 0,
            out: String::new(),
        }
    }

    fn space(&mut self) {
        let spaces = &self.style.spaces;
        self.out.push_str(&spaces[self.spaces % spaces.len()]);
        self.spaces += 1;
    }

    fn choice(&mut self) -> u8 {
        let escapes = &self.style.escapes;
        let choice = escapes[self.escapes % escapes.len()];
        self.escapes += 1;
        choice
    }

    /// `c` as `\uXXXX` (a surrogate pair beyond the BMP), in either case.
    fn escaped(&mut self, c: char, upper: bool) {
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let hex = if upper {
                format!("\\u{:04X}", unit)
            } else {
                format!("\\u{:04x}", unit)
            };
            self.out.push_str(&hex);
        }
    }

    /// A JSON string; a character is escaped where it must be, and
    /// otherwise where the style says so.
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let choice = self.choice();
            let upper = choice & 0x10 != 0;
            match c {
                '"' if choice.is_multiple_of(2) => self.out.push_str("\\\""),
                '\\' if choice.is_multiple_of(2) => self.out.push_str("\\\\"),
                '/' if choice.is_multiple_of(3) => self.out.push_str("\\/"),
                '\n' if choice.is_multiple_of(2) => self.out.push_str("\\n"),
                '\t' if choice.is_multiple_of(2) => self.out.push_str("\\t"),
                '\r' if choice.is_multiple_of(2) => self.out.push_str("\\r"),
                '\u{8}' if choice.is_multiple_of(2) => self.out.push_str("\\b"),
                '\u{c}' if choice.is_multiple_of(2) => self.out.push_str("\\f"),
                '"' | '\\' | '\u{0}'..='\u{1f}' => self.escaped(c, upper),
                c if choice.is_multiple_of(5) => self.escaped(c, upper),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        self.out.push(',');
                    }
                    self.space();
                    self.value(item);
                    self.space();
                }
                if items.is_empty() {
                    self.space();
                }
                self.out.push(']');
            }
            Value::Object(object) => {
                self.out.push('{');
                for (n, (key, value)) in object.iter().enumerate() {
                    if n > 0 {
                        self.out.push(',');
                    }
                    self.space();
                    self.string(key);
                    self.space();
                    self.out.push(':');
                    self.space();
                    self.value(value);
                    self.space();
                }
                if object.is_empty() {
                    self.space();
                }
                self.out.push('}');
            }
            other => self.out.push_str(&other.to_string()),
        }
    }

    /// An object of `entries` (a key and the value as written), in order.
    fn object(&mut self, entries: &[(String, String)]) {
        self.out.push('{');
        for (n, (key, value)) in entries.iter().enumerate() {
            if n > 0 {
                self.out.push(',');
            }
            self.space();
            self.string(key);
            self.space();
            self.out.push(':');
            self.space();
            self.out.push_str(value);
            self.space();
        }
        if entries.is_empty() {
            self.space();
        }
        self.out.push('}');
    }
}

fn write_value(value: &Value, style: &Style) -> String {
    let mut w = Writer::new(style);
    w.value(value);
    w.out
}

/// A message of `entries` (a key and its value), in order, surrounded by
/// whitespace.
fn write_message(entries: &[(String, Value)], style: &Style) -> String {
    let written: Vec<(String, String)> = entries
        .iter()
        .map(|(k, v)| (k.clone(), write_value(v, style)))
        .collect();
    write_entries(&written, style)
}

/// A message of `entries` as serde_json writes one.
fn write_plain(entries: &[(String, Value)]) -> String {
    let fields: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A message of `entries` (a key and its value as written), in order,
/// surrounded by whitespace.
fn write_entries(entries: &[(String, String)], style: &Style) -> String {
    let mut w = Writer::new(style);
    w.space();
    w.object(entries);
    w.space();
    w.out
}

// Generators.

/// Numbers that read back exactly (at most 15 significant digits).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-999_999_999_999_999i64..=999_999_999_999_999, 0i32..=15)
            .prop_map(|(n, k)| Value::from(n as f64 / 10f64.powi(k))),
        Just(Value::from(-0.0)),
        Just(Value::from(1e300)),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        ".{0,10}".prop_map(Value::from),
        Just(Value::from("\"\\/\u{0}\u{1f}\u{7f}\u{2028}\u{1F600}")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A valid topic: 1 to 4 segments of anything but `.`, `*`, `>`,
/// whitespace and control characters.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,8}(\\.[a-z0-9_-]{1,8}){0,3}",
        "[^.*>\\s\\p{Cc}]{1,6}(\\.[^.*>\\s\\p{Cc}]{1,6}){0,3}",
        Just("{user}".to_string()),
        Just("a".repeat(256)),
    ]
}

/// Topics valid or not.
fn any_topic() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => topic(),
        1 => prop::sample::select(vec![
            "", ".", "a.", ".a", "a..b", "a.*", "*", "a.>", "a b", "a\tb", "a\u{7}",
            "a\u{a0}b", "a\u{2028}",
        ])
        .prop_map(str::to_string),
        1 => Just("a".repeat(257)),
        1 => ".{0,12}",
    ]
}

/// Message types, known, near misses and random.
fn kind() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(TYPES.to_vec()).prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "", "Ping", "PING", "ping ", " ping", "pong", "subscribed", "sub", "publish\u{0}",
        ])
        .prop_map(str::to_string),
        1 => ".{0,8}",
        1 => Just("é".repeat(40)),
    ]
}

/// A type that is not one of the protocol's.
fn unknown_kind() -> impl Strategy<Value = String> {
    kind().prop_filter("an unknown type", |k| !TYPES.contains(&k.as_str()))
}

/// Field names: the protocol's, near misses and random.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        1 => prop::sample::select(vec!["Type", "TYPE", "types", "top", "", "id ", "datum"])
            .prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
        1 => ".{0,4}",
    ]
}

/// Values of every shape a field of the protocol may be given.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => kind().prop_map(Value::from),
        2 => any_topic().prop_map(Value::from),
        2 => prop::collection::vec(any_topic(), 0..4)
            .prop_map(|ts| Value::Array(ts.into_iter().map(Value::from).collect())),
        1 => prop::collection::vec(json_value(), 1..3).prop_map(Value::Array),
        1 => Just(Value::Null),
        2 => json_value(),
    ]
}

/// A request of the protocol.
#[derive(Debug, Clone)]
enum Op {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Publish(String, Value),
    Ping,
}

#[derive(Debug, Clone)]
struct Request {
    op: Op,
    /// `Some(Value::Null)` is an `id` of `null`, echoed as such.
    id: Option<Value>,
    /// Fields the protocol does not know.
    unknown: Vec<(String, Value)>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(topic(), 0..5).prop_map(Op::Subscribe),
        prop::collection::vec(topic(), 0..5).prop_map(Op::Unsubscribe),
        (topic(), json_value()).prop_map(|(t, d)| Op::Publish(t, d)),
        Just(Op::Ping),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        op(),
        prop::option::of(json_value()),
        prop::collection::btree_map(
            prop_oneof!["[a-z_]{1,10}", ".{0,6}"]
                .prop_filter("unknown", |k| !FIELDS.contains(&k.as_str())),
            json_value(),
            0..3,
        ),
    )
        .prop_map(|(op, id, unknown)| Request {
            op,
            id,
            unknown: unknown.into_iter().collect(),
        })
}

/// The request's fields: its own, then the unknown ones.
fn fields(request: &Request) -> Vec<(String, Value)> {
    let topics = |ts: &[String]| Value::Array(ts.iter().cloned().map(Value::from).collect());
    let mut out = match &request.op {
        Op::Subscribe(ts) => vec![("type", json!("subscribe")), ("topics", topics(ts))],
        Op::Unsubscribe(ts) => vec![("type", json!("unsubscribe")), ("topics", topics(ts))],
        Op::Publish(t, d) => vec![
            ("type", json!("publish")),
            ("topic", json!(t)),
            ("data", d.clone()),
        ],
        Op::Ping => vec![("type", json!("ping"))],
    }
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    if let Some(id) = &request.id {
        out.push(("id".into(), id.clone()));
    }
    out.extend(request.unknown.iter().cloned());
    out
}

/// The request's answer. `data` is the publication's data as written.
fn answer(request: &Request, data: &str) -> Answer {
    let id = request.id.clone();
    match &request.op {
        Op::Subscribe(topics) => Answer::Subscribed {
            topics: topics.clone(),
            id,
        },
        Op::Unsubscribe(topics) => Answer::Unsubscribed {
            topics: topics.clone(),
            id,
        },
        Op::Publish(topic, _) => Answer::Published {
            topic: topic.clone(),
            data: data.to_string(),
            id,
        },
        Op::Ping => Answer::Pong { id },
    }
}

/// `entries` in the order `order` picks.
fn shuffled<T>(mut entries: Vec<T>, order: &Selector) -> Vec<T> {
    let mut out = Vec::with_capacity(entries.len());
    while !entries.is_empty() {
        let i = order.select(0..entries.len());
        out.push(entries.remove(i));
    }
    out
}

/// A value of another JSON type than a string (`null` reads as no field).
fn not_a_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        number(),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(json_value(), 0..3).prop_map(Value::Array),
        prop::collection::btree_map(".{0,4}", json_value(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

/// A value that is not an array of strings, nor `null`.
fn not_strings() -> impl Strategy<Value = Value> {
    prop_oneof![
        topic().prop_map(Value::from),
        number(),
        any::<bool>().prop_map(Value::from),
        prop::collection::btree_map(".{0,4}", json_value(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        (
            prop::collection::vec(topic(), 0..3),
            prop_oneof![not_a_string(), Just(Value::Null)],
            any::<Index>()
        )
            .prop_map(|(ts, wrong, at)| {
                let mut items: Vec<Value> = ts.into_iter().map(Value::from).collect();
                items.insert(at.index(items.len() + 1), wrong);
                Value::Array(items)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_answered_as_documented(text in ".{0,64}") {
        check_answer(&text, &expected(&text))?;
    }

    #[test]
    fn any_bytes_read_as_text_are_answered_as_documented(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        check_answer(&text, &expected(&text))?;
    }

    /// Random text is rarely a JSON object: these are objects of the
    /// protocol's fields and others, with values of every shape, fields
    /// given twice among them, and JSON values that are not objects.
    #[test]
    fn any_json_is_answered_as_documented(
        entries in prop::collection::vec((name(), field_value()), 0..6),
        value in json_value(),
        style in style(),
    ) {
        let text = write_message(&entries, &style);
        check_answer(&text, &expected(&text))?;
        let text = write_value(&value, &style);
        check_answer(&text, &expected(&text))?;
    }

    #[test]
    fn every_request_is_read_as_itself(
        request in request(),
        order in any::<Selector>(),
        style in style(),
    ) {
        let written: Vec<(String, String)> = fields(&request)
            .into_iter()
            .map(|(k, v)| {
                let v = write_value(&v, &style);
                (k, v)
            })
            .collect();
        let data = written
            .iter()
            .find(|(k, _)| k == "data")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let text = write_entries(&shuffled(written, &order), &style);
        check_answer(&text, &answer(&request, &data))?;
        // As a serialiser writes it.
        let text = write_plain(&fields(&request));
        let data = match &request.op {
            Op::Publish(_, data) => data.to_string(),
            _ => String::new(),
        };
        check_answer(&text, &answer(&request, &data))?;
    }

    /// Without the field its type needs, or with it `null` (but `data`,
    /// which may be `null`), a request is refused naming the field.
    #[test]
    fn a_missing_field_is_named(
        request in request(),
        which in any::<Index>(),
        as_null in any::<bool>(),
        order in any::<Selector>(),
        style in style(),
    ) {
        let required: &[&str] = match request.op {
            Op::Subscribe(_) | Op::Unsubscribe(_) => &["type", "topics"],
            Op::Publish(..) => &["type", "topic", "data"],
            Op::Ping => &["type"],
        };
        let name = required[which.index(required.len())];
        let mut entries = fields(&request);
        if as_null && name != "data" {
            for (k, v) in &mut entries {
                if k == name {
                    *v = Value::Null;
                }
            }
        } else {
            entries.retain(|(k, _)| k != name);
        }
        let text = write_message(&shuffled(entries, &order), &style);
        let answer = bad_request(Says::Exactly(format!("missing field `{name}`")), request.id);
        check_answer(&text, &answer)?;
    }

    /// A `type` or `topic` that is not a string, or `topics` that are not
    /// an array of strings, is refused with serde_json's `invalid type`,
    /// the request's `id` echoed.
    #[test]
    fn a_field_of_the_wrong_type_is_refused(
        request in request(),
        which in any::<Index>(),
        wrong_string in not_a_string(),
        wrong_strings in not_strings(),
        order in any::<Selector>(),
        style in style(),
    ) {
        let typed: &[&str] = match request.op {
            Op::Subscribe(_) | Op::Unsubscribe(_) => &["type", "topics"],
            Op::Publish(..) => &["type", "topic"],
            Op::Ping => &["type"],
        };
        let name = typed[which.index(typed.len())];
        let wrong = if name == "topics" { wrong_strings } else { wrong_string };
        let expecting = match &wrong {
            Value::Array(_) if name == "topics" => "expected a string",
            _ if name == "topics" => "expected a sequence",
            _ => "expected a string",
        };
        let mut entries = fields(&request);
        for (k, v) in &mut entries {
            if k == name {
                *v = wrong.clone();
            }
        }
        let text = write_message(&shuffled(entries, &order), &style);
        let answer = bad_request(Says::StartsWith("invalid message: invalid type: ".into()), request.id.clone());
        let reply = check_answer(&text, &answer)?;
        let message = reply["message"].as_str().unwrap_or_default();
        prop_assert!(message.contains(expecting), "{:?}: {:?}", text, message);
    }

    /// An unknown `type` is reported as such, quoted up to 64 bytes, even
    /// beside fields of the wrong type, which such a message does not use.
    #[test]
    fn an_unknown_type_is_named(
        kind in unknown_kind(),
        id in prop::option::of(json_value()),
        others in prop::collection::btree_map(
            prop::sample::select(vec!["topics", "topic", "data", "x"]),
            field_value(),
            0..4,
        ),
        order in any::<Selector>(),
        style in style(),
    ) {
        let mut entries: Vec<(String, Value)> = vec![("type".into(), Value::from(kind.clone()))];
        if let Some(id) = &id {
            entries.push(("id".into(), id.clone()));
        }
        entries.extend(others.into_iter().map(|(k, v)| (k.to_string(), v)));
        let text = write_message(&shuffled(entries, &order), &style);
        check_answer(&text, &unknown_type(&kind, id))?;
    }

    #[test]
    fn a_binary_frame_is_refused_whatever_it_holds(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            request().prop_map(|r| write_plain(&fields(&r)).into_bytes()),
        ],
    ) {
        let mut session = FakeSession::new();
        open_router()
            .on_message(&mut (), &mut session, Message::Binary(&bytes))
            .map_err(|c| TestCaseError::fail(format!("{c:?}")))?;
        prop_assert_eq!(
            session.take(),
            vec![json!({
                "type": "error",
                "code": "bad_request",
                "message": "binary frames are not part of this protocol",
            })]
        );
        prop_assert!(session.subscriptions.is_empty() && session.publishes.is_empty());
    }
}

#[test]
fn the_model_agrees_with_the_documented_examples() {
    let id = |v: Value| Some(v);
    let cases = [
        (
            "not json",
            bad_request(Says::StartsWith("invalid message: ".into()), None),
        ),
        (
            "[1,2]",
            bad_request(
                Says::Exactly("invalid message: expected a JSON object".into()),
                None,
            ),
        ),
        (
            r#"{"id":7}"#,
            bad_request(Says::Exactly("missing field `type`".into()), id(json!(7))),
        ),
        (
            r#"{"type":"subscribe","topics":"a","id":5}"#,
            bad_request(Says::StartsWith("invalid message: ".into()), id(json!(5))),
        ),
        (
            r#"{"type":"publish","topic":"chat.room1"}"#,
            bad_request(Says::Exactly("missing field `data`".into()), None),
        ),
        (
            r#"{"type":"subscribe","topics":["bad topic"]}"#,
            bad_request(Says::StartsWith("topics[0]: ".into()), None),
        ),
        (
            r#"{"type":"frob","id":9}"#,
            unknown_type("frob", id(json!(9))),
        ),
        (
            r#"{"type":"ping","id":[1,2]}"#,
            Answer::Pong {
                id: id(json!([1, 2])),
            },
        ),
        (
            r#"{"type":"ping","type":"ping","id":1}"#,
            bad_request(Says::StartsWith("invalid message: ".into()), None),
        ),
        (
            r#"{"type":"publish","topic":"a","data": [1, 2.50] }"#,
            Answer::Published {
                topic: "a".into(),
                data: "[1, 2.50]".into(),
                id: None,
            },
        ),
    ];
    for (text, answer) in cases {
        assert_eq!(expected(text), answer, "{text}");
        if let Err(e) = check_answer(text, &answer) {
            panic!("{text}: {e}");
        }
    }
    // The writer escapes what it must.
    let style = Style {
        spaces: vec![" ".into()],
        escapes: vec![0, 5, 0x10],
    };
    let value = json!({"k\"\\": ["\u{0}\n/é\u{1F600}"]});
    let written = write_value(&value, &style);
    assert_eq!(
        serde_json::from_str::<Value>(&written).ok(),
        Some(value),
        "{written}"
    );
}
