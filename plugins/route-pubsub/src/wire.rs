//! The client wire protocol: the JSON requests a client sends and the replies it gets.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use wsgate_plugin_api::{Bytes, Outbound, RawValue, SendError, Session};

/// A JSON string, borrowed from the message unless it has escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

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
pub(crate) struct Request<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(crate) kind: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) topics: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    pub(crate) topic: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub(crate) data: Option<&'a RawValue>,
}

/// What is salvaged of a message that did not parse as a [`Request`], to
/// echo its `id` and tell an unknown type from a bad field.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    pub(crate) kind: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub(crate) id: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Reply<'a> {
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
pub(crate) enum Code {
    BadRequest,
    Forbidden,
    RateLimited,
    TooManySubscriptions,
    UnknownType,
}

pub(crate) fn send(session: &mut dyn Session, reply: &Reply<'_>) -> Result<(), SendError> {
    // Serialising these plain structs cannot fail; if it ever did, the reply
    // is skipped rather than the connection broken.
    match serde_json::to_string(reply) {
        Ok(s) => session.send(Outbound::Text(Bytes::from(s))),
        Err(_) => Ok(()),
    }
}

pub(crate) fn send_error(
    session: &mut dyn Session,
    code: Code,
    message: &str,
    id: Option<&RawValue>,
) -> Result<(), SendError> {
    send(session, &Reply::Error { code, message, id })
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
