//! Request lines: the commands with their arguments, and the filter that
//! selects connections.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the answer; any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// `cluster`: run it on every node of the cluster (`stats`, `list`,
    /// `evict` by filter); the answer is a [`crate::ClusterResult`].
    #[serde(default, skip_serializing_if = "Scope::is_node")]
    pub scope: Scope,
    #[serde(flatten)]
    pub command: Command,
}

/// Where a request runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The daemon the socket belongs to.
    #[default]
    Node,
    /// Every live node of its cluster, gathered by that daemon.
    Cluster,
}

impl Scope {
    pub fn is_node(&self) -> bool {
        *self == Scope::Node
    }
}

/// The commands. Every variant refuses arguments it does not know, so a
/// typo (`dryrun`) is an error rather than a real eviction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Counters, limits and their use, the last reload.
    Stats {},
    /// Live connections, filtered, sorted, windowed (`offset`, `limit`).
    List {
        #[serde(default)]
        filter: Filter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sort: Option<SortKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<Order>,
        /// Rows skipped after sorting, before `limit`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<usize>,
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
    /// Streams snapshots every `interval_ms` and events as they happen. A
    /// snapshot shows the window of connections that the same arguments as
    /// `list` select (every connection, by id, when none is given). Sent
    /// again on a watching connection, it replaces that window.
    Watch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Filter::is_empty")]
        filter: Filter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sort: Option<SortKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<Order>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

impl Command {
    /// Every `cmd`, in the order the protocol lists them.
    pub const NAMES: &'static [&'static str] = &[
        "stats", "list", "show", "evict", "reload", "drain", "publish", "config", "watch",
    ];

    /// This command's `cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Stats {} => "stats",
            Command::List { .. } => "list",
            Command::Show { .. } => "show",
            Command::Evict { .. } => "evict",
            Command::Reload { .. } => "reload",
            Command::Drain { .. } => "drain",
            Command::Publish { .. } => "publish",
            Command::Config {} => "config",
            Command::Watch { .. } => "watch",
        }
    }
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

    /// Parses `ip` as a network (`None` when unset).
    pub fn network(&self) -> Result<Option<IpNet>, NotANetwork> {
        self.ip.as_deref().map(parse_network).transpose()
    }
}

/// Text that is neither an IP address nor a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR")]
pub struct NotANetwork(pub String);

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address, which
/// is the network of that one address (`10.1.2.3` is `10.1.2.3/32`).
pub fn parse_network(text: &str) -> Result<IpNet, NotANetwork> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| NotANetwork(text.to_string()))
}

/// The column `list` and `watch` sort rows by, one per field of a row (and
/// the rates of a `watch` snapshot). Ties are ordered by id, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Age,
    Idle,
    MsgsIn,
    MsgsOut,
    Queue,
    Rtt,
    Id,
    /// By byte order of the route path.
    Route,
    /// By byte order of the user id; anonymous (`null`) below any user.
    User,
    /// As an address (`10.0.0.9` before `10.0.0.10`, IPv4 before IPv6).
    Ip,
    /// Messages in per second (in `list`: over each connection's age).
    InRate,
    /// Messages out per second (in `list`: over each connection's age).
    OutRate,
    Subscriptions,
}

impl SortKey {
    /// Every key, in the order of the console's columns.
    pub const ALL: &'static [SortKey] = &[
        SortKey::Id,
        SortKey::Route,
        SortKey::User,
        SortKey::Ip,
        SortKey::Age,
        SortKey::Idle,
        SortKey::MsgsIn,
        SortKey::MsgsOut,
        SortKey::InRate,
        SortKey::OutRate,
        SortKey::Queue,
        SortKey::Subscriptions,
        SortKey::Rtt,
    ];
}

/// Which way a sort goes. `Desc` (largest first: oldest, most idle,
/// busiest, ...) is the default for every key; `Asc` flips it. `null`s
/// (no user, no round trip yet) are the smallest values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn every_command_name_parses() {
        for name in Command::NAMES {
            let line = match *name {
                "show" => json!({"cmd": name, "conn": 1}),
                "publish" => json!({"cmd": name, "topic": "t", "data": null}),
                _ => json!({"cmd": name}),
            };
            assert!(
                serde_json::from_value::<Request>(line.clone()).is_ok(),
                "{line}"
            );
        }
    }

    #[test]
    fn sort_keys_are_snake_case() {
        assert_eq!(
            serde_json::to_value([SortKey::MsgsIn, SortKey::Rtt]).expect("serialise"),
            json!(["msgs_in", "rtt"])
        );
    }

    #[test]
    fn every_sort_key_and_order_has_its_documented_name() {
        assert_eq!(
            serde_json::to_value(SortKey::ALL).expect("serialise"),
            json!([
                "id",
                "route",
                "user",
                "ip",
                "age",
                "idle",
                "msgs_in",
                "msgs_out",
                "in_rate",
                "out_rate",
                "queue",
                "subscriptions",
                "rtt"
            ])
        );
        for key in SortKey::ALL {
            let text = serde_json::to_string(key).expect("serialise");
            assert_eq!(serde_json::from_str::<SortKey>(&text).ok(), Some(*key));
        }
        assert_eq!(
            serde_json::to_value([Order::Asc, Order::Desc]).expect("serialise"),
            json!(["asc", "desc"])
        );
        assert_eq!(Order::default(), Order::Desc);
    }

    #[test]
    fn a_cluster_scope_goes_on_the_wire_only_when_asked() {
        let request = Request {
            id: None,
            scope: Scope::Cluster,
            command: Command::Stats {},
        };
        let text = serde_json::to_string(&request).expect("serialise");
        assert_eq!(text, r#"{"scope":"cluster","cmd":"stats"}"#);
        let back: Request = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.scope, Scope::Cluster);
        let plain: Request = serde_json::from_str(r#"{"cmd":"stats"}"#).expect("parses");
        assert_eq!(plain.scope, Scope::Node);
        assert!(serde_json::from_str::<Request>(r#"{"scope":"world","cmd":"stats"}"#).is_err());
    }

    /// A request goes on the wire as `text`, and `text` reads back as the
    /// same request.
    fn on_the_wire(command: Command, text: &str) {
        let request = Request {
            id: Some(json!(1)),
            scope: Scope::Node,
            command,
        };
        assert_eq!(serde_json::to_string(&request).expect("serialise"), text);
        let back: Request = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::to_string(&back).expect("serialise"), text);
    }

    #[test]
    fn list_takes_an_order_and_an_offset() {
        on_the_wire(
            Command::List {
                filter: Filter::default(),
                sort: Some(SortKey::Route),
                order: Some(Order::Asc),
                offset: Some(30),
                limit: Some(30),
            },
            r#"{"id":1,"cmd":"list","filter":{},"sort":"route","order":"asc","offset":30,"limit":30}"#,
        );
        // Without them, the request of before.
        on_the_wire(
            Command::List {
                filter: Filter::default(),
                sort: Some(SortKey::Idle),
                order: None,
                offset: None,
                limit: Some(3),
            },
            r#"{"id":1,"cmd":"list","filter":{},"sort":"idle","limit":3}"#,
        );
        let r: Result<Request, _> = serde_json::from_str(r#"{"cmd":"list","order":"up"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn watch_takes_the_arguments_of_list() {
        on_the_wire(
            Command::Watch {
                interval_ms: Some(500),
                filter: Filter {
                    route: Some("/ws".into()),
                    ..Filter::default()
                },
                sort: Some(SortKey::InRate),
                order: Some(Order::Desc),
                offset: Some(40),
                limit: Some(40),
            },
            r#"{"id":1,"cmd":"watch","interval_ms":500,"filter":{"route":"/ws"},"sort":"in_rate","order":"desc","offset":40,"limit":40}"#,
        );
        // Without them, the request of before: every connection, by id.
        on_the_wire(
            Command::Watch {
                interval_ms: Some(250),
                filter: Filter::default(),
                sort: None,
                order: None,
                offset: None,
                limit: None,
            },
            r#"{"id":1,"cmd":"watch","interval_ms":250}"#,
        );
        let r: Result<Request, _> = serde_json::from_str(r#"{"cmd":"watch","limt":2}"#);
        assert!(r.is_err());
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
        assert_eq!(Filter::default().network(), Ok(None));
        let bad = Filter {
            ip: Some("ten".into()),
            ..Filter::default()
        };
        assert_eq!(
            bad.network().map_err(|e| e.to_string()),
            Err("`ten` is not an IP address or CIDR".to_string())
        );
        assert_eq!(
            parse_network("2001:db8::/32").map(|n| n.to_string()),
            Ok("2001:db8::/32".to_string())
        );
        assert_eq!(
            parse_network("::1").map(|n| n.to_string()),
            Ok("::1/128".to_string())
        );
    }
}
