//! The lines of a `watch` stream after its first answer.

use serde::{Deserialize, Serialize};

use crate::results::{ConnRow, Stats};

/// A `watch` stream line. The daemon writes each one as it serialises
/// (`event` first, then the fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The stats and the watcher's window of connections, with their
    /// rates.
    Snapshot {
        stats: Box<Stats>,
        /// How many connections the filter selected, before offset and
        /// limit (0 from a daemon older than this field).
        #[serde(default)]
        matched: usize,
        /// How many of the sorted rows were skipped before `connections`.
        #[serde(default)]
        offset: usize,
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
    use crate::results::Connections;
    use std::collections::BTreeMap;

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
    fn a_snapshot_carries_its_window_and_rates() {
        let stats = Stats {
            version: "0.1.0".into(),
            uptime_s: 2.5,
            config_path: None,
            last_reload: None,
            draining: false,
            connections: Connections {
                total: 5,
                by_route: BTreeMap::from([("/ws".to_string(), 5)]),
                by_state: BTreeMap::from([("closing".to_string(), 0), ("open".to_string(), 5)]),
                ips: 1,
                users: 0,
            },
            limits: vec![],
            rejections: BTreeMap::new(),
            closes: BTreeMap::new(),
            messages_in: 4,
            messages_out: 4,
            bytes_in: 20,
            bytes_out: 20,
            publishes: BTreeMap::new(),
            slow_consumer_closes: 0,
            rate_limited: BTreeMap::new(),
            topics: 0,
            listeners: vec![],
            cluster: None,
        };
        let row = ConnRow {
            id: 4,
            route: "/ws".into(),
            user: None,
            ip: "127.0.0.1".into(),
            connected_at: "2026-11-22T07:13:14.631Z".into(),
            age_s: 2.0,
            idle_s: 0.5,
            msgs_in: 4,
            msgs_out: 4,
            bytes_in: 20,
            bytes_out: 20,
            queue: 0,
            subscriptions: 0,
            rtt_ms: None,
            in_rate: Some(4.0),
            out_rate: Some(0.0),
            upstream: None,
        };
        documented(
            concat!(
                r#"{"event":"snapshot","stats":{"version":"0.1.0","uptime_s":2.5,"config_path":null,"last_reload":null,"draining":false,"#,
                r#""connections":{"total":5,"by_route":{"/ws":5},"by_state":{"closing":0,"open":5},"ips":1,"users":0},"limits":[],"#,
                r#""rejections":{},"closes":{},"messages_in":4,"messages_out":4,"bytes_in":20,"bytes_out":20,"publishes":{},"#,
                r#""slow_consumer_closes":0,"rate_limited":{},"topics":0},"matched":5,"offset":3,"connections":[{"id":4,"route":"/ws","#,
                r#""user":null,"ip":"127.0.0.1","connected_at":"2026-11-22T07:13:14.631Z","age_s":2.0,"idle_s":0.5,"msgs_in":4,"#,
                r#""msgs_out":4,"bytes_in":20,"bytes_out":20,"queue":0,"subscriptions":0,"rtt_ms":null,"in_rate":4.0,"out_rate":0.0}]}"#,
            ),
            Event::Snapshot {
                stats: Box::new(stats.clone()),
                matched: 5,
                offset: 3,
                connections: vec![row],
            },
        );
        // A snapshot from a daemon without windows reads as offset 0.
        let old = serde_json::to_value(Event::Snapshot {
            stats: Box::new(stats),
            matched: 0,
            offset: 0,
            connections: vec![],
        })
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("matched");
                o.remove("offset");
            }
            v
        })
        .expect("a value");
        let back: Event = serde_json::from_value(old).expect("parses");
        assert!(matches!(
            back,
            Event::Snapshot {
                matched: 0,
                offset: 0,
                ..
            }
        ));
    }

    #[test]
    fn unknown_events_are_errors() {
        assert!(serde_json::from_str::<Event>(r#"{"event":"restarted"}"#).is_err());
    }
}
