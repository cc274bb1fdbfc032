//! The `pubsub` router: JSON publish/subscribe over named topics.
//!
//! # Options (`[routes.options]`)
//!
//! ```toml
//! subscribe = ["*"]             # patterns a client may subscribe to (default: ["*"])
//! publish = ["chat.{user}.>"]   # patterns a client may publish to (default: [] = none)
//! ```
//!
//! Unknown keys are refused. Every pattern is checked when the config is
//! loaded; a bad one is reported at its index, e.g. `subscribe[0]`.
//!
//! # Topics and patterns
//!
//! A topic is a string of segments separated by `.`, e.g. `chat.room-1`. A
//! topic sent by a client must be non-empty, at most 256 bytes, have no empty
//! segment, and contain no `*`, no `>`, no whitespace and no control
//! character; otherwise the request fails with `bad_request`.
//!
//! A pattern is matched against a topic segment by segment:
//!
//! - the lone pattern `*` matches any topic, whatever its number of segments;
//! - elsewhere, a `*` segment matches exactly one segment (`chat.*` matches
//!   `chat.a` but neither `chat` nor `chat.a.b`);
//! - a `>` segment, only allowed as the last one, matches one or more
//!   remaining segments (`chat.>` matches `chat.a` and `chat.a.b`, not
//!   `chat`);
//! - `{user}` is replaced by the connection's user id, alone as a segment
//!   (`inbox.{user}`) or inside one (`user-{user}`); a pattern with `{user}`
//!   never matches on an anonymous connection (or an empty user id), nor for
//!   a user id that could not be one topic segment (e.g. one containing a
//!   `.`);
//! - any other segment matches itself literally.
//!
//! `*` and `>` must be whole segments, and `{user}` is the only placeholder.
//!
//! # Wire protocol
//!
//! Every message is a JSON object in a text frame, with a `"type"`. Any
//! client message may carry an `"id"` (any JSON value), echoed as `"id"` in
//! its reply or error. Unknown fields are ignored.
//!
//! On open, the server sends
//! `{"type":"welcome","id":"<connection id>","user":"alice"|null}`. If the
//! query string has `topics=a,b`, each topic is subscribed as if requested,
//! except that a topic which is invalid, forbidden or over the subscription
//! cap only gets an `error` (the connection stays open) and the others are
//! still subscribed; then `{"type":"subscribed","topics":[...]}` lists the
//! subscribed ones (not sent when there are none).
//!
//! | client sends | server replies |
//! |---|---|
//! | `{"type":"subscribe","topics":["a","b"]}` | `{"type":"subscribed","topics":["a","b"]}` |
//! | `{"type":"unsubscribe","topics":["a"]}` | `{"type":"unsubscribed","topics":["a"]}` |
//! | `{"type":"publish","topic":"a","data":<any JSON>}` | `{"type":"published","topic":"a","delivered":N}` |
//! | `{"type":"ping"}` | `{"type":"pong"}` |
//!
//! A subscribe is all or nothing: if any topic is invalid (`bad_request`),
//! not allowed by `subscribe` (`forbidden`) or would go over the
//! connection's subscription cap (`too_many_subscriptions`), none of the
//! request's topics is subscribed. A publish needs its topic to match a
//! `publish` pattern (`forbidden` otherwise); `data` is forwarded verbatim,
//! never reparsed, and `delivered` is the number of connections that took
//! it. How subscribers receive a publication is framed by the daemon.
//!
//! Errors keep the connection open:
//! `{"type":"error","code":"...","message":"...","id":...}` with `code` one
//! of `bad_request` (malformed JSON, not an object, missing or wrong-typed
//! field, invalid topic, binary frame), `forbidden`, `rate_limited` (a
//! message was dropped by the rate limit), `too_many_subscriptions` and
//! `unknown_type`.
//!
//! When the daemon drains, the server sends
//! `{"type":"shutdown","reconnect_after_ms":N}` before closing with 1001.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use wsgate_plugin_api::{
    check_topic, erase, Bytes, Close, DynRouter, Message, OptionsError, Outbound, RawValue, Router,
    RouterPlugin, SendError, Session, SubscribeError, Table,
};

/// How much of an unknown `"type"` is quoted back in the error.
const MAX_QUOTED_TYPE: usize = 64;

/// The factory, registered as `pubsub`.
pub struct Plugin;

impl RouterPlugin for Plugin {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError> {
        Ok(erase(PubSub::from_options(options)?))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_subscribe")]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

fn default_subscribe() -> Vec<String> {
    vec!["*".to_string()]
}

// ---------------------------------------------------------------------------
// Patterns and topics
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// The lone `*`: every topic.
    Any,
    /// Segment by segment; `tail` is a trailing `>` (one or more segments).
    Segments {
        segments: Box<[Segment]>,
        tail: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// A segment with `{user}` in it, e.g. `{user}` or `user-{user}`.
    Template(Box<[Piece]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    User,
}

const USER: &str = "{user}";

impl Pattern {
    fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a pattern must not be empty".into());
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "pattern `{}` contains whitespace or a control character",
                pattern.escape_debug()
            ));
        }
        if pattern == "*" {
            return Ok(Pattern::Any);
        }
        let parts: Vec<&str> = pattern.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut tail = false;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "" => return Err(format!("pattern `{pattern}` has an empty segment")),
                "*" => segments.push(Segment::One),
                ">" if last => tail = true,
                ">" => {
                    return Err(format!(
                        "pattern `{pattern}`: `>` is only allowed as the last segment"
                    ))
                }
                part if part.contains(['*', '>']) => {
                    return Err(format!(
                        "pattern `{pattern}`: `*` and `>` must be a whole segment"
                    ))
                }
                part => segments.push(Segment::parse(pattern, part)?),
            }
        }
        Ok(Pattern::Segments {
            segments: segments.into_boxed_slice(),
            tail,
        })
    }

    /// Whether `topic` (already validated) matches for the user `user`.
    fn matches(&self, topic: &str, user: Option<&str>) -> bool {
        let (segments, tail) = match self {
            Pattern::Any => return true,
            Pattern::Segments { segments, tail } => (segments, *tail),
        };
        let mut parts = topic.split('.');
        for segment in segments.iter() {
            match parts.next() {
                Some(part) if segment.matches(part, user) => {}
                _ => return false,
            }
        }
        // `>` wants at least one more segment; otherwise there must be none.
        parts.next().is_some() == tail
    }
}

impl Segment {
    fn parse(pattern: &str, part: &str) -> Result<Self, String> {
        if !part.contains(['{', '}']) {
            return Ok(Segment::Literal(part.into()));
        }
        let mut pieces = Vec::new();
        let mut rest = part;
        while let Some(at) = rest.find(USER) {
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].into()));
            }
            pieces.push(Piece::User);
            rest = &rest[at + USER.len()..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.into()));
        }
        let stray = pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains(['{', '}'])));
        if stray {
            return Err(format!(
                "pattern `{pattern}`: `{{user}}` is the only placeholder; `{{` and `}}` are not allowed elsewhere"
            ));
        }
        Ok(Segment::Template(pieces.into_boxed_slice()))
    }

    fn matches(&self, part: &str, user: Option<&str>) -> bool {
        match self {
            Segment::Literal(literal) => **literal == *part,
            Segment::One => true,
            Segment::Template(pieces) => {
                let mut rest = part;
                for piece in pieces.iter() {
                    let want = match piece {
                        Piece::Text(text) => &**text,
                        // An empty user id is treated as anonymous.
                        Piece::User => match user {
                            Some(user) if !user.is_empty() => user,
                            _ => return false,
                        },
                    };
                    match rest.strip_prefix(want) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
        }
    }
}

fn parse_patterns(key: &str, patterns: &[String]) -> Result<Box<[Pattern]>, OptionsError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Pattern::parse(p).map_err(|m| OptionsError::at(format!("{key}[{i}]"), m)))
        .collect()
}

// ---------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------

/// A JSON string, borrowed from the message unless it has escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }

        deserializer.deserialize_str(StrVisitor).map(Text)
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A field that is present, even as `null` (which `Option` alone maps to
/// `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Any client message; which fields are required depends on `type`.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct Request<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    topics: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    topic: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// What is salvaged of a message that did not parse as a [`Request`], to
/// echo its `id` and tell an unknown type from a bad field.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply<'a> {
    Welcome {
        id: &'a str,
        user: Option<&'a str>,
    },
    Subscribed {
        topics: &'a [Text<'a>],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Unsubscribed {
        topics: &'a [Text<'a>],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Published {
        topic: &'a str,
        delivered: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Error {
        code: Code,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Shutdown {
        reconnect_after_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Code {
    BadRequest,
    Forbidden,
    RateLimited,
    TooManySubscriptions,
    UnknownType,
}

fn send(session: &mut dyn Session, reply: &Reply<'_>) -> Result<(), SendError> {
    // Serialising these plain structs cannot fail; if it ever did, the reply
    // is skipped rather than the connection broken.
    match serde_json::to_string(reply) {
        Ok(s) => session.send(Outbound::Text(Bytes::from(s))),
        Err(_) => Ok(()),
    }
}

fn send_error(
    session: &mut dyn Session,
    code: Code,
    message: &str,
    id: Option<&RawValue>,
) -> Result<(), SendError> {
    send(session, &Reply::Error { code, message, id })
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------

struct PubSub {
    subscribe: Box<[Pattern]>,
    publish: Box<[Pattern]>,
}

impl PubSub {
    fn from_options(options: &Table) -> Result<Self, OptionsError> {
        let options: Options = OptionsError::parse(options)?;
        Ok(PubSub {
            subscribe: parse_patterns("subscribe", &options.subscribe)?,
            publish: parse_patterns("publish", &options.publish)?,
        })
    }

    fn allowed(patterns: &[Pattern], topic: &str, user: Option<&str>) -> bool {
        patterns.iter().any(|p| p.matches(topic, user))
    }

    fn open(&self, session: &mut dyn Session) -> Result<(), SendError> {
        let user = session.identity().user.clone();
        let user = user.as_deref();
        let id = session.id().to_owned();
        send(session, &Reply::Welcome { id: &id, user })?;

        let Some(wanted) = session
            .query()
            .and_then(|q| wsgate_plugin_api::query_param(q, "topics"))
        else {
            return Ok(());
        };
        let mut subscribed = Vec::new();
        for topic in wanted.split(',').filter(|t| !t.is_empty()) {
            if let Err(reason) = check_topic(topic) {
                let message = format!("topics: {reason}");
                send_error(session, Code::BadRequest, &message, None)?;
                continue;
            }
            if !Self::allowed(&self.subscribe, topic, user) {
                let message = format!("not allowed to subscribe to `{topic}`");
                send_error(session, Code::Forbidden, &message, None)?;
                continue;
            }
            match session.subscribe(topic) {
                Ok(true) => subscribed.push(Text(Cow::Borrowed(topic))),
                // Named twice in the query: listed once.
                Ok(false) => {}
                Err(e @ SubscribeError::TooMany { .. }) => {
                    let message = format!("cannot subscribe to `{topic}` and later topics: {e}");
                    send_error(session, Code::TooManySubscriptions, &message, None)?;
                    break;
                }
            }
        }
        if !subscribed.is_empty() {
            send(
                session,
                &Reply::Subscribed {
                    topics: &subscribed,
                    id: None,
                },
            )?;
        }
        Ok(())
    }

    fn handle(&self, session: &mut dyn Session, message: Message<'_>) -> Result<(), SendError> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return send_error(
                    session,
                    Code::BadRequest,
                    "binary frames are not part of this protocol",
                    None,
                )
            }
        };
        // Derived structs also read JSON arrays positionally; the protocol
        // is objects only.
        if !text.trim_start().starts_with('{') {
            return send_error(
                session,
                Code::BadRequest,
                "invalid message: expected a JSON object",
                None,
            );
        }
        let request: Request<'_> = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(e) => return Self::reject(session, text, &e),
        };
        let id = request.id;
        let Some(kind) = request.kind else {
            return send_error(session, Code::BadRequest, "missing field `type`", id);
        };
        match &*kind.0 {
            "subscribe" => match request.topics {
                Some(topics) => self.subscribe(session, &topics, id),
                None => send_error(session, Code::BadRequest, "missing field `topics`", id),
            },
            "unsubscribe" => match request.topics {
                Some(topics) => Self::unsubscribe(session, &topics, id),
                None => send_error(session, Code::BadRequest, "missing field `topics`", id),
            },
            "publish" => match (request.topic, request.data) {
                (Some(topic), Some(data)) => self.publish(session, &topic.0, data, id),
                (None, _) => send_error(session, Code::BadRequest, "missing field `topic`", id),
                (_, None) => send_error(session, Code::BadRequest, "missing field `data`", id),
            },
            "ping" => send(session, &Reply::Pong { id }),
            other => Self::unknown_type(session, other, id),
        }
    }

    /// Answers a message that is not a well-formed request, echoing its
    /// `id` if that much can be read.
    fn reject(
        session: &mut dyn Session,
        text: &str,
        error: &serde_json::Error,
    ) -> Result<(), SendError> {
        let head: Option<Head<'_>> = serde_json::from_str(text).ok();
        let id = head.as_ref().and_then(|h| h.id);
        // A well-formed object whose only fault is an unknown type plus some
        // field this protocol does not know how to read.
        let kind = head
            .as_ref()
            .and_then(|h| h.kind)
            .and_then(|k| serde_json::from_str::<Text<'_>>(k.get()).ok());
        if let Some(kind) = kind {
            if !matches!(&*kind.0, "subscribe" | "unsubscribe" | "publish" | "ping") {
                return Self::unknown_type(session, &kind.0, id);
            }
        }
        let message = format!("invalid message: {error}");
        send_error(session, Code::BadRequest, &message, id)
    }

    fn unknown_type(
        session: &mut dyn Session,
        kind: &str,
        id: Option<&RawValue>,
    ) -> Result<(), SendError> {
        let message = format!(
            "unknown message type `{}`; expected subscribe, unsubscribe, publish or ping",
            truncate(kind, MAX_QUOTED_TYPE)
        );
        send_error(session, Code::UnknownType, &message, id)
    }

    fn subscribe(
        &self,
        session: &mut dyn Session,
        topics: &[Text<'_>],
        id: Option<&RawValue>,
    ) -> Result<(), SendError> {
        for (i, topic) in topics.iter().enumerate() {
            if let Err(reason) = check_topic(&topic.0) {
                let message = format!("topics[{i}]: {reason}");
                return send_error(session, Code::BadRequest, &message, id);
            }
        }
        let user = session.identity().user.clone();
        let user = user.as_deref();
        if let Some(topic) = topics
            .iter()
            .find(|t| !Self::allowed(&self.subscribe, &t.0, user))
        {
            let message = format!("not allowed to subscribe to `{}`", topic.0);
            return send_error(session, Code::Forbidden, &message, id);
        }
        // Topics this request added, to take back if the cap is hit.
        let mut added: Vec<&str> = Vec::new();
        for topic in topics {
            match session.subscribe(&topic.0) {
                Ok(true) => added.push(&topic.0),
                Ok(false) => {}
                Err(e @ SubscribeError::TooMany { .. }) => {
                    for topic in added {
                        session.unsubscribe(topic);
                    }
                    let message = format!("cannot subscribe to `{}`: {e}", topic.0);
                    return send_error(session, Code::TooManySubscriptions, &message, id);
                }
            }
        }
        send(session, &Reply::Subscribed { topics, id })
    }

    fn unsubscribe(
        session: &mut dyn Session,
        topics: &[Text<'_>],
        id: Option<&RawValue>,
    ) -> Result<(), SendError> {
        for (i, topic) in topics.iter().enumerate() {
            if let Err(reason) = check_topic(&topic.0) {
                let message = format!("topics[{i}]: {reason}");
                return send_error(session, Code::BadRequest, &message, id);
            }
        }
        for topic in topics {
            session.unsubscribe(&topic.0);
        }
        send(session, &Reply::Unsubscribed { topics, id })
    }

    fn publish(
        &self,
        session: &mut dyn Session,
        topic: &str,
        data: &RawValue,
        id: Option<&RawValue>,
    ) -> Result<(), SendError> {
        if let Err(reason) = check_topic(topic) {
            let message = format!("topic: {reason}");
            return send_error(session, Code::BadRequest, &message, id);
        }
        let allowed = {
            let user = session.identity().user.as_deref();
            Self::allowed(&self.publish, topic, user)
        };
        if !allowed {
            let message = format!("not allowed to publish to `{topic}`");
            return send_error(session, Code::Forbidden, &message, id);
        }
        let delivered = session.publish(topic, data);
        send(
            session,
            &Reply::Published {
                topic,
                delivered,
                id,
            },
        )
    }
}

impl Router for PubSub {
    type State = ();

    fn on_open(&self, session: &mut dyn Session) -> Result<(), Close> {
        // A failed send is the daemon's to handle: it closes the connection.
        let _ = self.open(session);
        Ok(())
    }

    fn on_message(
        &self,
        _state: &mut (),
        session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close> {
        let _ = self.handle(session, message);
        Ok(())
    }

    fn on_rate_limited(&self, _state: &mut (), session: &mut dyn Session) {
        let _ = send_error(
            session,
            Code::RateLimited,
            "message dropped: rate limit exceeded",
            None,
        );
    }

    fn on_shutdown(&self, _state: &mut (), session: &mut dyn Session, reconnect_after_ms: u64) {
        let _ = send(session, &Reply::Shutdown { reconnect_after_ms });
    }
}

#[cfg(test)]
mod tests;
