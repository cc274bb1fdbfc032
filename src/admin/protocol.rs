//! The admin protocol: newline-delimited JSON over a unix socket.
//!
//! These types are the protocol, defined once and used by the daemon,
//! `wsgate ctl` and the console alike (docs/admin-protocol.md).
//!
//! A request is one line, `{"id": 1, "cmd": "<name>", ...arguments}`; the
//! answer is one line, `{"id": 1, "ok": true, "result": ...}` or
//! `{"id": 1, "ok": false, "error": {"code": "...", "message": "..."}}`.
//! `watch` answers once, then streams event lines until the client leaves.
//! Unknown commands, unknown arguments and malformed lines get an error
//! answer; the connection stays.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the answer; any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(flatten)]
    pub command: Command,
}

/// The commands. Every variant refuses arguments it does not know, so a
/// typo (`dryrun`) is an error rather than a real eviction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Counters, limits and their use, the last reload.
    Stats {},
    /// Live connections, filtered, sorted, limited.
    List {
        #[serde(default)]
        filter: Filter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sort: Option<SortKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// One connection with its topics. (`id` is the request's own id, so
    /// connections are named by `conn`.)
    Show { conn: u64 },
    /// Closes connections with 4000: one by `conn` (its id), or all that
    /// match the filter (an empty filter needs `all: true`).
    Evict {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conn: Option<u64>,
        #[serde(default)]
        filter: Filter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        all: bool,
    },
    /// Reloads the config file (or reports what it would do).
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
    /// Starts the graceful drain and returns at once.
    Drain {
        /// Overrides `drain_timeout`, e.g. `"10s"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
    },
    /// Publishes to a topic, like the HTTP API.
    Publish { topic: String, data: Value },
    /// The effective config, secrets redacted.
    Config {},
    /// Streams snapshots every `interval_ms` and events as they happen.
    Watch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
    },
}

/// Selects connections; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// An address or a CIDR (`10.0.0.0/8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Subscribed to this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// No inbound message for at least this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_idle_s: Option<f64>,
    /// Connected for at least this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age_s: Option<f64>,
    /// At least this many messages waiting in the send queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_queue: Option<usize>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Parses `ip` as a network; `Err` names the problem.
    pub fn network(&self) -> Result<Option<ipnet::IpNet>, String> {
        let Some(ip) = &self.ip else { return Ok(None) };
        ip.parse::<ipnet::IpNet>()
            .or_else(|_| ip.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(Some)
            .map_err(|_| format!("`{ip}` is not an IP address or CIDR"))
    }
}

/// How `list` orders rows: the largest first (oldest, most idle, busiest,
/// fullest queue, slowest round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Age,
    Idle,
    MsgsIn,
    MsgsOut,
    Queue,
    Rtt,
}

/// One answer line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Error codes.
pub mod code {
    /// The line is not JSON or not a request object.
    pub const BAD_REQUEST: &str = "bad_request";
    /// `cmd` names no command.
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    /// The arguments are wrong (unknown key, wrong type, bad value).
    pub const BAD_ARGUMENTS: &str = "bad_arguments";
    /// No connection with that id.
    pub const NOT_FOUND: &str = "not_found";
    /// `evict` with an empty filter and without `all: true`.
    pub const REFUSED: &str = "refused";
    /// The config file is invalid; nothing changed.
    pub const CONFIG_ERROR: &str = "config_error";
    /// The peer's uid/gid is not allowed.
    pub const PERMISSION_DENIED: &str = "permission_denied";
    /// The daemon cannot do it now (e.g. shutting down).
    pub const UNAVAILABLE: &str = "unavailable";
}

impl Response {
    pub fn ok(id: Option<Value>, result: Value) -> Self {
        Self {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Option<Value>, code: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

/// One row of `list`.
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
    pub rejections: std::collections::BTreeMap<String, u64>,
    pub closes: std::collections::BTreeMap<String, u64>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub publishes: std::collections::BTreeMap<String, u64>,
    pub slow_consumer_closes: u64,
    pub rate_limited: std::collections::BTreeMap<String, u64>,
    pub topics: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadInfo {
    /// RFC 3339.
    pub at: String,
    pub origin: String,
    pub ok: bool,
    pub error: Option<String>,
    pub restart_required: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub total: usize,
    pub by_route: std::collections::BTreeMap<String, usize>,
    /// `open` or `closing`.
    pub by_state: std::collections::BTreeMap<String, usize>,
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

/// A `watch` stream line.
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

    #[test]
    fn typos_in_arguments_are_errors() {
        let r: Result<Request, _> =
            serde_json::from_str(r#"{"id":1,"cmd":"evict","filter":{"user":"a"},"dryrun":true}"#);
        assert!(r.is_err());
        let r: Result<Request, _> =
            serde_json::from_str(r#"{"id":1,"cmd":"evict","filter":{"usr":"a"}}"#);
        assert!(r.is_err());
    }

    #[test]
    fn requests_round_trip() {
        let r: Request = serde_json::from_str(
            r#"{"id":7,"cmd":"list","filter":{"ip":"10.0.0.0/8","min_idle_s":5},"sort":"idle","limit":3}"#,
        )
        .expect("valid");
        assert!(matches!(
            r.command,
            Command::List {
                sort: Some(SortKey::Idle),
                limit: Some(3),
                ..
            }
        ));
        let back = serde_json::to_string(&r).expect("serialise");
        assert!(back.contains("\"cmd\":\"list\""), "{back}");
    }

    #[test]
    fn networks_parse() {
        let f = Filter {
            ip: Some("10.1.2.3".into()),
            ..Filter::default()
        };
        assert_eq!(
            f.network().expect("ok").map(|n| n.to_string()),
            Some("10.1.2.3/32".to_string())
        );
        let bad = Filter {
            ip: Some("ten".into()),
            ..Filter::default()
        };
        assert!(bad.network().is_err());
    }
}
