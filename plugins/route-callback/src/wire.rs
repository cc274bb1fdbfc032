//! What goes over the wire: the JSON bodies of the events posted to the
//! backend, the backend's answers, and the error and shutdown messages the
//! client gets (the shapes of the `pubsub` router's).

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wsgate_plugin_api::{check_topic, Close, Outbound, RawValue};

use crate::metrics::Event;

/// Who an event is about.
#[derive(Debug, Clone)]
pub struct Who<'a> {
    /// The connection's id (`None` only where the daemon gave none).
    pub conn: Option<&'a str>,
    pub user: Option<&'a str>,
    pub route: &'a str,
}

/// One event as posted.
#[derive(Serialize)]
struct Body<'a> {
    event: &'static str,
    conn: Option<&'a str>,
    user: Option<&'a str>,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl<'a> Body<'a> {
    fn new(event: Event, who: &Who<'a>) -> Self {
        Body {
            event: event.label(),
            conn: who.conn,
            user: who.user,
            route: who.route,
            data: None,
            binary: None,
            code: None,
            reason: None,
        }
    }

    fn bytes(&self) -> Bytes {
        // Plain strings, numbers and booleans: serialising cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `{"event":"open","conn":"7","user":...,"route":...}`
pub fn open(who: &Who<'_>) -> Bytes {
    Body::new(Event::Open, who).bytes()
}

/// `{"event":"message",...,"data":"<text>","binary":false}`, or for a
/// binary message `"data":"<standard base64, padded>","binary":true`.
pub fn message(who: &Who<'_>, text: bool, data: &[u8]) -> Bytes {
    let mut body = Body::new(Event::Message, who);
    let encoded;
    if text {
        // The daemon hands over text that is valid UTF-8 only.
        body.data = Some(std::str::from_utf8(data).unwrap_or_default());
    } else {
        encoded = base64::engine::general_purpose::STANDARD.encode(data);
        body.data = Some(&encoded);
    }
    body.binary = Some(!text);
    body.bytes()
}

/// `{"event":"close",...,"code":1000,"reason":"..."}`
pub fn close(who: &Who<'_>, code: u16, reason: &str) -> Bytes {
    let mut body = Body::new(Event::Close, who);
    body.code = Some(code);
    body.reason = Some(reason);
    body.bytes()
}

/// What the backend's answer asks for, checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// For this connection, in order.
    pub send: Vec<Outbound>,
    /// Topics to subscribe it to (each passed `check_topic`).
    pub subscribe: Vec<String>,
    pub close: Option<Close>,
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct RawAnswer<'a> {
    #[serde(default, borrow)]
    send: Vec<&'a RawValue>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    close: Option<RawClose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClose {
    code: u16,
    #[serde(default)]
    reason: String,
}

/// The close codes an answer may ask for: normal, or an application's own.
fn valid_close_code(code: u16) -> bool {
    code == 1000 || (3000..=4999).contains(&code)
}

/// The most of a close reason that fits in a close frame (RFC 6455 5.5).
const MAX_CLOSE_REASON: usize = 123;

impl Answer {
    /// Checks a 2xx answer's body: empty (nothing to do) or a JSON object
    /// with `send`, `subscribe` and `close`, all optional. A `send` item
    /// that is a JSON string is sent as that text; any other JSON value as
    /// its JSON text, as written in the answer.
    pub fn parse(body: &[u8]) -> Result<Answer, Malformed> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Ok(Answer::default()),
            // serde would take a struct from an array too.
            Some(b'{') => {}
            Some(_) => return Err(Malformed("the answer is not a JSON object".into())),
        }
        let raw: RawAnswer<'_> = serde_json::from_slice(body)
            .map_err(|e| Malformed(format!("the answer is not a valid one: {e}")))?;
        let mut send = Vec::with_capacity(raw.send.len());
        for (i, item) in raw.send.iter().enumerate() {
            let text = item.get();
            if text.starts_with('"') {
                let s: String =
                    serde_json::from_str(text).map_err(|e| Malformed(format!("send[{i}]: {e}")))?;
                send.push(Outbound::text(s));
            } else {
                send.push(Outbound::Text(Bytes::copy_from_slice(text.as_bytes())));
            }
        }
        for (i, topic) in raw.subscribe.iter().enumerate() {
            check_topic(topic).map_err(|e| Malformed(format!("subscribe[{i}]: {e}")))?;
        }
        let close = match raw.close {
            None => None,
            Some(c) if !valid_close_code(c.code) => {
                return Err(Malformed(format!(
                    "close.code {} is not 1000 or 3000-4999",
                    c.code
                )))
            }
            Some(c) if c.reason.len() > MAX_CLOSE_REASON => {
                return Err(Malformed(format!(
                    "close.reason is over {MAX_CLOSE_REASON} bytes"
                )))
            }
            Some(c) => Some(Close::new(c.code, c.reason)),
        };
        Ok(Answer {
            send,
            subscribe: raw.subscribe,
            close,
        })
    }
}

/// The `code` of an error message to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The backend did not answer within `timeout`.
    BackendTimeout,
    /// The backend answered 5xx.
    BackendError,
    /// The backend could not be reached.
    BackendUnreachable,
    /// The backend answered 4xx.
    BackendRefused,
    /// The backend's answer was not a valid one.
    BackendMalformed,
    /// A message on a route whose `events` leave out `message`.
    BadRequest,
    /// A message was dropped by the rate limit.
    RateLimited,
    /// A topic of an answer's `subscribe` went over `max_subscriptions`.
    TooManySubscriptions,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply<'a> {
    Error { code: Code, message: &'a str },
    Shutdown { reconnect_after_ms: u64 },
}

fn reply(reply: &Reply<'_>) -> Outbound {
    // Plain strings and numbers: serialising cannot fail.
    Outbound::Text(Bytes::from(serde_json::to_vec(reply).unwrap_or_default()))
}

/// `{"type":"error","code":"...","message":"..."}`
pub fn error(code: Code, message: &str) -> Outbound {
    reply(&Reply::Error { code, message })
}

/// `{"type":"shutdown","reconnect_after_ms":N}`
pub fn shutdown(reconnect_after_ms: u64) -> Outbound {
    reply(&Reply::Shutdown { reconnect_after_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn json_of(b: &Bytes) -> Value {
        serde_json::from_slice(b).expect("JSON")
    }

    fn text(o: &Outbound) -> &str {
        match o {
            Outbound::Text(b) => std::str::from_utf8(b).expect("UTF-8"),
            Outbound::Binary(_) => panic!("binary"),
        }
    }

    const WHO: Who<'static> = Who {
        conn: Some("7"),
        user: Some("alice"),
        route: "/ws/rpc",
    };

    #[test]
    fn events_are_encoded() {
        assert_eq!(
            json_of(&open(&WHO)),
            json!({"event":"open","conn":"7","user":"alice","route":"/ws/rpc"})
        );
        assert_eq!(
            json_of(&message(&WHO, true, "{\"a\":\"é\\n\"}".as_bytes())),
            json!({"event":"message","conn":"7","user":"alice","route":"/ws/rpc",
                   "data":"{\"a\":\"é\\n\"}","binary":false})
        );
        assert_eq!(
            json_of(&message(
                &Who { user: None, ..WHO },
                false,
                &[0, 0xff, 0x10]
            )),
            json!({"event":"message","conn":"7","user":null,"route":"/ws/rpc",
                   "data":"AP8Q","binary":true})
        );
        assert_eq!(
            json_of(&close(&WHO, 4000, "bye")),
            json!({"event":"close","conn":"7","user":"alice","route":"/ws/rpc",
                   "code":4000,"reason":"bye"})
        );
    }

    #[test]
    fn answers_are_parsed() {
        assert_eq!(Answer::parse(b""), Ok(Answer::default()));
        assert_eq!(Answer::parse(b" \n"), Ok(Answer::default()));
        assert_eq!(Answer::parse(b"{}"), Ok(Answer::default()));
        let a = Answer::parse(
            br#"{"send":["hi \"you\"", {"n": 1}, 2, null, ["x"]],
                "subscribe":["room.1"],
                "close":{"code":4000,"reason":"done"}}"#,
        )
        .expect("valid");
        let sent: Vec<&str> = a.send.iter().map(text).collect();
        assert_eq!(sent, ["hi \"you\"", "{\"n\": 1}", "2", "null", "[\"x\"]"]);
        assert_eq!(a.subscribe, ["room.1"]);
        assert_eq!(a.close, Some(Close::new(4000, "done")));
        let a = Answer::parse(br#"{"close":{"code":1000}}"#).expect("no reason");
        assert_eq!(a.close, Some(Close::new(1000, "")));
    }

    #[test]
    fn malformed_answers_are_refused() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"\"send\"",
            br#"{"send":"x"}"#,
            br#"{"sned":["x"]}"#,
            br#"{"subscribe":["a b"]}"#,
            br#"{"subscribe":["a.*"]}"#,
            br#"{"subscribe":[1]}"#,
            br#"{"close":{"code":1005}}"#,
            br#"{"close":{"code":1001}}"#,
            br#"{"close":{"code":2999}}"#,
            br#"{"close":{"code":5000}}"#,
            br#"{"close":{"code":70000}}"#,
            br#"{"close":{"reason":"x"}}"#,
            br#"{"close":{"code":4000,"why":"x"}}"#,
        ] {
            assert!(
                Answer::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"close":{{"code":4000,"reason":"{}"}}}}"#,
            "r".repeat(MAX_CLOSE_REASON + 1)
        );
        assert!(Answer::parse(long.as_bytes()).is_err());
        for code in [1000, 3000, 4999] {
            let ok = format!(r#"{{"close":{{"code":{code}}}}}"#);
            assert!(Answer::parse(ok.as_bytes()).is_ok(), "{code}");
        }
    }

    #[test]
    fn client_messages_have_the_pubsub_shapes() {
        assert_eq!(
            serde_json::from_str::<Value>(text(&error(Code::BackendTimeout, "late")))
                .expect("JSON"),
            json!({"type":"error","code":"backend_timeout","message":"late"})
        );
        assert_eq!(
            serde_json::from_str::<Value>(text(&shutdown(250))).expect("JSON"),
            json!({"type":"shutdown","reconnect_after_ms":250})
        );
    }
}
