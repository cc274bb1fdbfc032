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

use std::sync::Arc;

use wsgate_plugin_api::{erase, DynRouter, OptionsError, RouterPlugin, Table};

mod pattern;
mod router;
mod wire;

/// The factory, registered as `pubsub`.
pub struct Plugin;

impl RouterPlugin for Plugin {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError> {
        let router = router::PubSub::from_options(options)?;
        Ok(erase(router))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_props;
