//! The lines of a `watch` stream after its first answer.

use serde::{Deserialize, Serialize};

use crate::results::{ConnRow, Stats};

/// A `watch` stream line. The daemon writes each one as it serialises
/// (`event` first, then the fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Snapshot {
        stats: Box<Stats>,
        connections: Vec<ConnRow>,
    },
    Connected {
        id: u64,
        route: String,
        ip: String,
        user: Option<String>,
    },
    Closed {
        id: u64,
        route: String,
        code: u16,
        reason: String,
    },
    Rejected {
        route: String,
        ip: String,
        status: u16,
        reason: String,
    },
    Evicted {
        ids: Vec<u64>,
        reason: String,
    },
    Reloaded {
        ok: bool,
        origin: String,
        error: Option<String>,
    },
    /// This watcher fell behind and `missed` events were dropped for it.
    Lagged {
        missed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line from docs/admin-protocol.md reads as `event` and is
    /// written back byte for byte.
    fn documented(line: &str, event: Event) {
        assert_eq!(serde_json::from_str::<Event>(line).expect("parses"), event);
        assert_eq!(serde_json::to_string(&event).expect("serialise"), line);
    }

    #[test]
    fn events_as_documented() {
        documented(
            r#"{"event":"connected","id":4,"route":"/ws/echo","ip":"192.0.2.7","user":null}"#,
            Event::Connected {
                id: 4,
                route: "/ws/echo".into(),
                ip: "192.0.2.7".into(),
                user: None,
            },
        );
        documented(
            r#"{"event":"closed","id":3,"route":"/ws","code":1001,"reason":"server shutting down"}"#,
            Event::Closed {
                id: 3,
                route: "/ws".into(),
                code: 1001,
                reason: "server shutting down".into(),
            },
        );
        documented(
            r#"{"event":"rejected","route":"/ws","ip":"203.0.113.9","status":401,"reason":"unauthorized"}"#,
            Event::Rejected {
                route: "/ws".into(),
                ip: "203.0.113.9".into(),
                status: 401,
                reason: "unauthorized".into(),
            },
        );
        documented(
            r#"{"event":"evicted","ids":[2,1],"reason":"abuse"}"#,
            Event::Evicted {
                ids: vec![2, 1],
                reason: "abuse".into(),
            },
        );
        documented(
            r#"{"event":"reloaded","ok":true,"origin":"SIGHUP","error":null}"#,
            Event::Reloaded {
                ok: true,
                origin: "SIGHUP".into(),
                error: None,
            },
        );
        documented(
            r#"{"event":"lagged","missed":92}"#,
            Event::Lagged { missed: 92 },
        );
    }

    #[test]
    fn unknown_events_are_errors() {
        assert!(serde_json::from_str::<Event>(r#"{"event":"restarted"}"#).is_err());
    }
}
