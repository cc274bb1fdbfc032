//! The result of each command: connection rows, stats, and what `evict`,
//! `reload`, `drain`, `publish`, `config` and `watch` answer.
//!
//! On the wire a result is a JSON object with its keys sorted (the daemon
//! sends it as a `serde_json::Value`); the field order here is for reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One row of `list` (and of `evict` dry runs and `watch` snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnRow {
    pub id: u64,
    pub route: String,
    pub user: Option<String>,
    pub ip: String,
    /// RFC 3339.
    pub connected_at: String,
    pub age_s: f64,
    pub idle_s: f64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Messages waiting in the send queue.
    pub queue: usize,
    pub subscriptions: usize,
    /// The last ping round trip; `null` before the first pong.
    pub rtt_ms: Option<f64>,
    /// Messages in per second between the last two snapshot ticks of a
    /// `watch` (over the connection's age when it is newer than the last
    /// tick). Only in `watch` snapshots: absent from `list` and `show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_rate: Option<f64>,
    /// Messages out per second, like `in_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_rate: Option<f64>,
    /// Where the route's router relays this connection (the `proxy`
    /// router's upstream) and how that leg stands; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Box<UpstreamLeg>>,
}

/// A connection's upstream leg, as [`ConnRow::upstream`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamLeg {
    /// E.g. `ws://127.0.0.1:8000/ws/chat`.
    pub target: String,
    /// `open`, `closing`, `closed`.
    pub state: String,
}

/// `show`: a row and the topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnDetail {
    #[serde(flatten)]
    pub row: ConnRow,
    pub topics: Vec<String>,
}

/// `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub version: String,
    pub uptime_s: f64,
    pub config_path: Option<String>,
    pub last_reload: Option<ReloadInfo>,
    pub draining: bool,
    pub connections: Connections,
    pub limits: Vec<LimitUse>,
    pub rejections: BTreeMap<String, u64>,
    pub closes: BTreeMap<String, u64>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub publishes: BTreeMap<String, u64>,
    pub slow_consumer_closes: u64,
    pub rate_limited: BTreeMap<String, u64>,
    pub topics: usize,
    /// The listeners, in config order, with their certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerInfo>,
    /// In a cluster: this node and its link to NATS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
}

/// The answer to a request with `scope: "cluster"`: each node's, this
/// node's first. A node that does not answer, and one known to be gone, is
/// listed with an error, not left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterResult {
    pub nodes: Vec<NodeAnswer>,
}

/// One node's answer in a [`ClusterResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub node: String,
    pub ok: bool,
    /// The command's result on that node, as the node itself answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorBody>,
}

/// This node in its cluster, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub node: String,
    /// Whether NATS is connected now (publishes reach the other nodes).
    pub nats_connected: bool,
}

/// A listener, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerInfo {
    pub name: String,
    /// The configured address (`IP:port`).
    pub address: String,
    /// What it answers: `ws`, `health`, `metrics`, `api`.
    pub serve: Vec<String>,
    pub tls: bool,
    pub proxy_protocol: bool,
    /// The certificates it serves (TLS only), the default first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateInfo>,
}

/// A certificate a TLS listener serves, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The DNS names it is valid for.
    pub names: Vec<String>,
    /// The serial number, in hex.
    pub serial: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// Seconds until then (negative once expired).
    pub expires_in_s: i64,
}

/// The last reload attempt, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadInfo {
    /// RFC 3339.
    pub at: String,
    pub origin: String,
    pub ok: bool,
    pub error: Option<String>,
    pub restart_required: Vec<String>,
}

/// Connection counts, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub total: usize,
    pub by_route: BTreeMap<String, usize>,
    /// `open` or `closing`.
    pub by_state: BTreeMap<String, usize>,
    pub ips: usize,
    pub users: usize,
}

/// A cap and how much of it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitUse {
    /// `total`, or a route path.
    pub scope: String,
    pub max_connections: usize,
    pub connections: usize,
    /// connections / max_connections.
    pub utilisation: f64,
    pub max_connections_per_ip: usize,
    /// Connections of the busiest client address in this scope.
    pub top_ip_connections: usize,
    /// top_ip_connections / max_connections_per_ip.
    pub ip_utilisation: f64,
    pub max_connections_per_user: usize,
    /// Connections of the busiest user in this scope.
    pub top_user_connections: usize,
    /// top_user_connections / max_connections_per_user.
    pub user_utilisation: f64,
    pub max_message_bytes: usize,
    pub messages_per_second: u32,
    pub send_queue: usize,
    pub max_subscriptions: usize,
}

/// `evict`: the connections that were asked to close (one already closing
/// is left alone and not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictResult {
    pub evicted: usize,
    pub ids: Vec<u64>,
}

impl EvictResult {
    pub fn new(ids: Vec<u64>) -> Self {
        Self {
            evicted: ids.len(),
            ids,
        }
    }
}

/// `evict` with `dry_run`: the rows of the connections it would close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvictPreview {
    /// Always `true`: it tells a preview from an [`EvictResult`].
    pub dry_run: bool,
    pub count: usize,
    pub connections: Vec<ConnRow>,
}

impl EvictPreview {
    pub fn new(connections: Vec<ConnRow>) -> Self {
        Self {
            dry_run: true,
            count: connections.len(),
            connections,
        }
    }
}

/// `reload`: what changed (or, dry, would change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    pub dry_run: bool,
    pub changes: Changes,
    /// Connections over a cap of the new config; those that `closes` are
    /// closed with 4006 unless dry.
    pub over_cap: Vec<Overage>,
    /// Connections on removed routes (closed with 1001 unless dry).
    pub on_removed_routes: usize,
}

/// The difference between the running config and the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Changed keys that apply live, as `path: old -> new` (secrets: `path`).
    pub applied: Vec<String>,
    /// Changed keys that need a restart; the running value stays.
    pub restart_required: Vec<String>,
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    /// Routes whose router, auth, origins, limits or options changed.
    pub routes_changed: Vec<String>,
}

impl Changes {
    /// No key changed (route lists repeat what `applied` says).
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.restart_required.is_empty()
    }
}

/// A connection over a cap of the new config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overage {
    pub id: u64,
    pub route: String,
    /// `route`, `total`, `ip` or `user`.
    pub cap: String,
    /// Whether the reload closes it (`enforce_on_reload` in that scope);
    /// otherwise it stays open and the cap binds new connections only.
    pub closes: bool,
}

/// `drain`: the drain has started (or was already running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainResult {
    pub draining: bool,
}

/// `publish`: how many connections the message was queued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    pub delivered: usize,
}

/// `watch`: the first answer; event lines follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchAck {
    pub watching: bool,
}

/// `config`: the effective config as a JSON object, defaults filled in and
/// secrets shown as `"<redacted>"`.
pub type ConfigResult = serde_json::Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    /// A result as the daemon puts it on the wire: through a JSON value,
    /// keys sorted.
    fn wire<T: Serialize>(v: &T) -> String {
        let value = serde_json::to_value(v).expect("to a value");
        serde_json::to_string(&value).expect("to text")
    }

    /// `text` (from docs/admin-protocol.md) reads as `expected` and
    /// `expected` goes on the wire as `text`, byte for byte.
    fn documented<T: Serialize + DeserializeOwned + PartialEq + Debug>(text: &str, expected: T) {
        let parsed: T = serde_json::from_str(text).expect("parses");
        assert_eq!(parsed, expected);
        assert_eq!(wire(&expected), text);
    }

    fn row(id: u64, age_s: f64, idle_s: f64, rtt_ms: Option<f64>) -> ConnRow {
        ConnRow {
            id,
            route: "/ws/echo".into(),
            user: None,
            ip: "192.0.2.7".into(),
            connected_at: "2026-11-22T07:13:14.631Z".into(),
            age_s,
            idle_s,
            msgs_in: 16,
            msgs_out: 16,
            bytes_in: 119,
            bytes_out: 119,
            queue: 0,
            subscriptions: 0,
            rtt_ms,
            in_rate: None,
            out_rate: None,
            upstream: None,
        }
    }

    #[test]
    fn rows_and_details() {
        documented(
            r#"{"age_s":336.683446134,"bytes_in":119,"bytes_out":119,"connected_at":"2026-11-22T07:13:14.631Z","id":4,"idle_s":16.517,"ip":"192.0.2.7","msgs_in":16,"msgs_out":16,"queue":0,"route":"/ws/echo","rtt_ms":0.507,"subscriptions":0,"user":null}"#,
            row(4, 336.683446134, 16.517, Some(0.507)),
        );
        let alice = ConnRow {
            id: 1,
            route: "/ws".into(),
            user: Some("alice".into()),
            ip: "10.1.2.3".into(),
            connected_at: "2026-11-22T07:13:14.629Z".into(),
            age_s: 8.278669052,
            idle_s: 8.278,
            msgs_in: 1,
            msgs_out: 2,
            bytes_in: 56,
            bytes_out: 95,
            queue: 0,
            subscriptions: 2,
            rtt_ms: None,
            in_rate: None,
            out_rate: None,
            upstream: None,
        };
        documented(
            r#"{"age_s":8.278669052,"bytes_in":56,"bytes_out":95,"connected_at":"2026-11-22T07:13:14.629Z","id":1,"idle_s":8.278,"ip":"10.1.2.3","msgs_in":1,"msgs_out":2,"queue":0,"route":"/ws","rtt_ms":null,"subscriptions":2,"topics":["news","inbox.alice"],"user":"alice"}"#,
            ConnDetail {
                row: alice,
                topics: vec!["news".into(), "inbox.alice".into()],
            },
        );
    }

    #[test]
    fn rates_are_shown_only_when_present() {
        let watched = ConnRow {
            in_rate: Some(2.5),
            out_rate: Some(0.0),
            upstream: None,
            ..row(4, 336.683446134, 16.517, Some(0.507))
        };
        documented(
            r#"{"age_s":336.683446134,"bytes_in":119,"bytes_out":119,"connected_at":"2026-11-22T07:13:14.631Z","id":4,"idle_s":16.517,"in_rate":2.5,"ip":"192.0.2.7","msgs_in":16,"msgs_out":16,"out_rate":0.0,"queue":0,"route":"/ws/echo","rtt_ms":0.507,"subscriptions":0,"user":null}"#,
            watched,
        );
        // A row from an older daemon, or from `list`, has none.
        let listed: ConnRow = serde_json::from_str(
            r#"{"age_s":1.0,"bytes_in":0,"bytes_out":0,"connected_at":"2026-11-22T07:13:14.631Z","id":4,"idle_s":1.0,"ip":"192.0.2.7","msgs_in":0,"msgs_out":0,"queue":0,"route":"/ws/echo","rtt_ms":null,"subscriptions":0,"user":null}"#,
        )
        .expect("parses");
        assert_eq!((listed.in_rate, listed.out_rate), (None, None));
    }

    #[test]
    fn evict_results() {
        documented(r#"{"evicted":1,"ids":[4]}"#, EvictResult::new(vec![4]));
        documented(
            r#"{"connections":[{"age_s":336.683446134,"bytes_in":119,"bytes_out":119,"connected_at":"2026-11-22T07:13:14.631Z","id":4,"idle_s":16.517,"ip":"192.0.2.7","msgs_in":16,"msgs_out":16,"queue":0,"route":"/ws/echo","rtt_ms":0.507,"subscriptions":0,"user":null}],"count":1,"dry_run":true}"#,
            EvictPreview::new(vec![row(4, 336.683446134, 16.517, Some(0.507))]),
        );
    }

    #[test]
    fn reload_results() {
        documented(
            r#"{"changes":{"applied":[],"restart_required":[],"routes_added":[],"routes_changed":[],"routes_removed":[]},"dry_run":true,"on_removed_routes":0,"over_cap":[]}"#,
            ReloadResult {
                dry_run: true,
                changes: Changes::default(),
                over_cap: vec![],
                on_removed_routes: 0,
            },
        );
        documented(
            r#"{"changes":{"applied":["limits.enforce_on_reload: false -> true","limits.max_connections_per_ip: 100 -> 2"],"restart_required":["server.listen: \"127.0.0.1:18081\" -> \"127.0.0.1:18083\""],"routes_added":["/new"],"routes_changed":["/ws"],"routes_removed":["/old"]},"dry_run":false,"on_removed_routes":2,"over_cap":[{"cap":"ip","closes":true,"id":51,"route":"/ws/echo"}]}"#,
            ReloadResult {
                dry_run: false,
                changes: Changes {
                    applied: vec![
                        "limits.enforce_on_reload: false -> true".into(),
                        "limits.max_connections_per_ip: 100 -> 2".into(),
                    ],
                    restart_required: vec![
                        r#"server.listen: "127.0.0.1:18081" -> "127.0.0.1:18083""#.into(),
                    ],
                    routes_added: vec!["/new".into()],
                    routes_removed: vec!["/old".into()],
                    routes_changed: vec!["/ws".into()],
                },
                over_cap: vec![Overage {
                    id: 51,
                    route: "/ws/echo".into(),
                    cap: "ip".into(),
                    closes: true,
                }],
                on_removed_routes: 2,
            },
        );
    }

    #[test]
    fn drain_publish_and_watch_answers() {
        documented(r#"{"draining":true}"#, DrainResult { draining: true });
        documented(r#"{"delivered":3}"#, PublishResult { delivered: 3 });
        documented(r#"{"watching":true}"#, WatchAck { watching: true });
    }

    #[test]
    fn config_is_a_json_object() {
        let text = r#"{"routes":[{"path":"/ws","router":"echo"}],"server":{"admin_socket_mode":"0600","listen":"127.0.0.1:18081"}}"#;
        let config: ConfigResult = serde_json::from_str(text).expect("an object");
        assert_eq!(wire(&config), text);
        assert!(serde_json::from_str::<ConfigResult>("[1]").is_err());
    }

    #[test]
    fn stats_as_documented() {
        let limit = |scope: &str, n: usize, ip: usize, user: usize| LimitUse {
            scope: scope.into(),
            max_connections: 10000,
            connections: n,
            utilisation: n as f64 / 10000.0,
            max_connections_per_ip: 100,
            top_ip_connections: ip,
            ip_utilisation: ip as f64 / 100.0,
            max_connections_per_user: 5,
            top_user_connections: user,
            user_utilisation: user as f64 / 5.0,
            max_message_bytes: 65536,
            messages_per_second: 50,
            send_queue: 1024,
            max_subscriptions: 100,
        };
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let counts = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let stats = Stats {
            version: "0.1.0".into(),
            uptime_s: 40.031686025,
            config_path: Some("etc/wsgate.toml".into()),
            last_reload: Some(ReloadInfo {
                at: "2026-11-22T07:14:11.855Z".into(),
                origin: "admin".into(),
                ok: false,
                error: Some(
                    "etc/wsgate.toml:20:19: limits.max_connections: must be at least 1".into(),
                ),
                restart_required: vec![],
            }),
            draining: false,
            connections: Connections {
                total: 4,
                by_route: counts(&[("/ws", 3), ("/ws/echo", 1)]),
                by_state: counts(&[("closing", 0), ("open", 4)]),
                ips: 3,
                users: 2,
            },
            limits: vec![limit("total", 4, 2, 1), limit("/ws/echo", 1, 1, 0)],
            rejections: map(&[]),
            closes: map(&[("4000", 2)]),
            messages_in: 4,
            messages_out: 10,
            bytes_in: 145,
            bytes_out: 490,
            publishes: map(&[("admin", 1)]),
            slow_consumer_closes: 0,
            rate_limited: map(&[]),
            topics: 2,
            listeners: vec![],
            cluster: None,
        };
        documented(
            concat!(
                r#"{"bytes_in":145,"bytes_out":490,"closes":{"4000":2},"config_path":"etc/wsgate.toml","#,
                r#""connections":{"by_route":{"/ws":3,"/ws/echo":1},"by_state":{"closing":0,"open":4},"ips":3,"total":4,"users":2},"#,
                r#""draining":false,"last_reload":{"at":"2026-11-22T07:14:11.855Z","error":"etc/wsgate.toml:20:19: limits.max_connections: must be at least 1","ok":false,"origin":"admin","restart_required":[]},"#,
                r#""limits":[{"connections":4,"ip_utilisation":0.02,"max_connections":10000,"max_connections_per_ip":100,"max_connections_per_user":5,"max_message_bytes":65536,"max_subscriptions":100,"messages_per_second":50,"scope":"total","send_queue":1024,"top_ip_connections":2,"top_user_connections":1,"user_utilisation":0.2,"utilisation":0.0004},"#,
                r#"{"connections":1,"ip_utilisation":0.01,"max_connections":10000,"max_connections_per_ip":100,"max_connections_per_user":5,"max_message_bytes":65536,"max_subscriptions":100,"messages_per_second":50,"scope":"/ws/echo","send_queue":1024,"top_ip_connections":1,"top_user_connections":0,"user_utilisation":0.0,"utilisation":0.0001}],"#,
                r#""messages_in":4,"messages_out":10,"publishes":{"admin":1},"rate_limited":{},"rejections":{},"slow_consumer_closes":0,"topics":2,"uptime_s":40.031686025,"version":"0.1.0"}"#,
            ),
            stats,
        );
    }
}
