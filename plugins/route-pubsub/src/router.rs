//! The router: checks each request against the route's patterns and acts on the session.

use std::borrow::Cow;

use serde::Deserialize;
use wsgate_plugin_api::{
    check_topic, Close, Message, OptionsError, RawValue, Router, SendError, Session,
    SubscribeError, Table,
};

use crate::pattern::{parse_patterns, Pattern};
use crate::wire::{send, send_error, truncate, Code, Head, Reply, Request, Text};

/// How much of an unknown `"type"` is quoted back in the error.
const MAX_QUOTED_TYPE: usize = 64;

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

/// One per route: the route's permission patterns.
pub(crate) struct PubSub {
    /// The topics a client may subscribe to.
    pub(crate) subscribe: Box<[Pattern]>,
    /// The topics a client may publish to.
    pub(crate) publish: Box<[Pattern]>,
}

impl PubSub {
    pub(crate) fn from_options(options: &Table) -> Result<Self, OptionsError> {
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
        if let Some(message) = invalid_topic(topics) {
            return send_error(session, Code::BadRequest, &message, id);
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
        if let Some(message) = invalid_topic(topics) {
            return send_error(session, Code::BadRequest, &message, id);
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

/// What is wrong with the first invalid topic of a request's `topics`, as
/// `topics[<index>]: <reason>`.
fn invalid_topic(topics: &[Text<'_>]) -> Option<String> {
    topics.iter().enumerate().find_map(|(i, topic)| {
        check_topic(&topic.0)
            .err()
            .map(|reason| format!("topics[{i}]: {reason}"))
    })
}
