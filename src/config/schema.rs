//! The config file's schema. Every key, its type, unit and default.
//!
//! Unknown keys are errors (`deny_unknown_fields`). Durations are written
//! as humantime strings (`"30s"`, `"1m 30s"`, `"250ms"`); `"0s"` turns a
//! timer off where the key says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::memory::MemorySize;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// Global limits; every route inherits them and may override any key.
    #[serde(default)]
    pub limits: Limits,
    /// Named authenticator instances, `[auth.<name>]`, referenced by routes.
    #[serde(default)]
    pub auth: BTreeMap<String, toml::Table>,
    /// The WebSocket routes. When the file has no `[[routes]]`, the built-in
    /// ones apply: `echo` at `/ws/echo` and `pubsub` at `/ws`, auth `none`.
    #[serde(default = "default_routes")]
    pub routes: Vec<RouteConfig>,
    /// `[cluster]`: nodes sharing topics through NATS; absent or without
    /// `nats` servers, a single node.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            api: ApiConfig::default(),
            limits: Limits::default(),
            auth: BTreeMap::new(),
            routes: default_routes(),
            cluster: ClusterConfig::default(),
        }
    }
}

fn default_routes() -> Vec<RouteConfig> {
    vec![
        RouteConfig {
            path: "/ws/echo".into(),
            router: "echo".into(),
            auth: "none".into(),
            allowed_origins: Vec::new(),
            limits: LimitsOverride::default(),
            options: toml::Table::new(),
        },
        RouteConfig {
            path: "/ws".into(),
            router: "pubsub".into(),
            auth: "none".into(),
            allowed_origins: Vec::new(),
            limits: LimitsOverride::default(),
            options: toml::Table::new(),
        },
    ]
}

/// `[server]`: the listener and connection-level timeouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on, serving everything over plain HTTP,
    /// when `listeners` is empty. Changing it needs a restart.
    pub listen: SocketAddr,
    /// `[[server.listeners]]`: several addresses, each with what it serves,
    /// TLS and the PROXY protocol. When given, `listen` is not used.
    pub listeners: Vec<ListenerConfig>,
    /// Longest time from TCP accept to a finished upgrade (or an answered
    /// HTTP request); slower clients are dropped (slowloris).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// After wsgate sends a close frame, how long it waits for the client's
    /// close frame before it drops the TCP connection.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// On shutdown, how long to wait for connections to finish their close
    /// handshake before exiting anyway.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A drain closes connections spread evenly over this window (0 = all
    /// at once), so that clients do not stampede the next instance.
    #[serde(with = "humantime_serde")]
    pub drain_spread: Duration,
    /// Pub/sub clients are told to reconnect after a delay spread evenly
    /// over this window (`{"type":"shutdown","reconnect_after_ms":N}`).
    #[serde(with = "humantime_serde")]
    pub reconnect_window: Duration,
    /// Reload when the config file (or anything in its directory) changes.
    pub watch_config: bool,
    /// How long the config directory must be quiet after a change before
    /// the reload runs (editors write in bursts).
    #[serde(with = "humantime_serde")]
    pub reload_debounce: Duration,
    /// The admin socket (`wsgate ctl`, `wsgate console`). Default: the
    /// `wsgate/admin.sock` under `$XDG_RUNTIME_DIR`, else `wsgate-admin.sock`
    /// in the current directory. An empty string turns the socket off.
    /// Changing it needs a restart.
    pub admin_socket: Option<PathBuf>,
    /// The socket file's mode, in octal; `"0660"` opens it to the group.
    pub admin_socket_mode: String,
    /// Besides root and the daemon's own user, peers whose primary group is
    /// this gid may use the admin socket.
    pub admin_allowed_gid: Option<u32>,
    /// Answer lines buffered per admin client; a client that lets this
    /// fill up (it does not read) is disconnected.
    pub admin_output_queue: usize,
    /// The longest admin request line, in bytes.
    pub admin_max_request_bytes: usize,
    /// Events kept for `watch` clients; a watcher that falls further behind
    /// loses the oldest and is told how many.
    pub admin_watch_buffer: usize,
    /// The `Retry-After` sent with 429 and 503 refusals (whole seconds).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Peers whose `X-Forwarded-For` header is believed for the client IP
    /// (CIDRs or single addresses). Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNetwork>,
    /// Upgrade requests per second from one client IP (token bucket); 0 =
    /// off. Over it: 429 with Retry-After.
    pub connects_per_second_per_ip: u32,
    /// The per-IP bucket's size: upgrades one address may make at once.
    pub connect_burst_per_ip: u32,
    /// Upgrade requests per second over the whole daemon (token bucket); 0
    /// = off. Over it: 503 with Retry-After.
    pub connects_per_second: u32,
    /// The daemon-wide bucket's size.
    pub connect_burst: u32,
    /// Most client IPs whose per-IP bucket is remembered at once; past it
    /// the table is swept of full buckets, then emptied if that is not
    /// enough.
    pub connect_tracked_ips: usize,
    /// Above this much resident memory new upgrades get 503 and `/readyz`
    /// 503: bytes, with a unit (`"512MiB"`), or a percentage of the
    /// cgroup's memory limit (`"80%"`); 0 = off.
    pub max_memory: MemorySize,
    /// Under memory pressure, upgrades are accepted again once resident
    /// memory is below this: bytes, or a percentage of `max_memory`.
    pub max_memory_low_water: MemorySize,
    /// How often resident memory is read while `max_memory` is set.
    #[serde(with = "humantime_serde")]
    pub memory_sample_interval: Duration,
    /// Refusals for connect rate and memory pressure are logged once, then
    /// counted in one line per this interval while they last.
    #[serde(with = "humantime_serde")]
    pub refusal_log_interval: Duration,
    /// Most TCP connections accepted and not yet upgraded (or, for plain
    /// HTTP, not yet closed); at it the listener stops accepting.
    pub max_pending_handshakes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listeners: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            drain_spread: Duration::from_secs(2),
            reconnect_window: Duration::from_secs(10),
            watch_config: true,
            reload_debounce: Duration::from_millis(100),
            admin_socket: None,
            admin_socket_mode: "0600".into(),
            admin_allowed_gid: None,
            admin_output_queue: 256,
            admin_max_request_bytes: 64 * 1024,
            admin_watch_buffer: 1024,
            trusted_proxies: Vec::new(),
            connects_per_second_per_ip: 0,
            connect_burst_per_ip: 0,
            connects_per_second: 0,
            connect_burst: 0,
            connect_tracked_ips: 100_000,
            max_memory: MemorySize::Off,
            max_memory_low_water: MemorySize::Percent(90.0),
            memory_sample_interval: Duration::from_millis(250),
            refusal_log_interval: Duration::from_secs(10),
            max_pending_handshakes: 1024,
        }
    }
}

/// `[[server.listeners]]`: one listening address and what it answers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Names the listener in logs and the admin `stats`, and matches it to
    /// a socket systemd passes (`FileDescriptorName=`). Default: the
    /// address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Address and port. Changing it needs a restart, unless the socket
    /// comes from systemd.
    pub address: SocketAddr,
    /// What this listener answers; any other path gets 404 here.
    #[serde(default = "Service::all")]
    pub serve: Vec<Service>,
    /// TLS termination; absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Every connection must start with a PROXY protocol header (v1 or v2)
    /// from an address in `trusted_proxies`; its source address is then the
    /// client's.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// What a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The WebSocket routes.
    Ws,
    /// `/healthz` and `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// `/api/publish`.
    Api,
}

impl Service {
    pub const ALL: [Service; 4] = [Service::Ws, Service::Health, Service::Metrics, Service::Api];

    /// The default `serve`: everything.
    pub fn all() -> Vec<Service> {
        Self::ALL.to_vec()
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Ws => "ws",
            Service::Health => "health",
            Service::Metrics => "metrics",
            Service::Api => "api",
        }
    }
}

/// `tls = { ... }` of a listener: one certificate (`cert_file`,
/// `key_file`), or several chosen by server name (`certs`, the first the
/// default).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the certificate, then its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM: the private key (PKCS#8, RSA or EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Several certificates, chosen by the client's server name (SNI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<CertFiles>,
    /// The oldest TLS version accepted: `"1.2"` or `"1.3"`.
    #[serde(default = "default_tls_min_version")]
    pub min_version: String,
}

impl TlsConfig {
    /// Its certificate and key files: `cert_file` and `key_file`, or each
    /// of `certs`.
    pub fn pairs(&self) -> Vec<(&std::path::Path, &std::path::Path)> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => vec![(c.as_path(), k.as_path())],
            _ => self
                .certs
                .iter()
                .map(|p| (p.cert_file.as_path(), p.key_file.as_path()))
                .collect(),
        }
    }
}

fn default_tls_min_version() -> String {
    "1.2".into()
}

/// One certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// An IP network written as a CIDR (`10.0.0.0/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        wsgate_admin_proto::parse_network(&text)
            .map(IpNetwork)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{text}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"
                ))
            })
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `[cluster]`: several wsgate nodes share their topics through NATS core.
/// Read at start only, but for `ready_requires_nats`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs; empty: a single node.
    pub nats: Vec<String>,
    /// This node's unique name; empty: the host name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The first token(s) of every NATS subject wsgate uses.
    pub subject_prefix: String,
    /// A NATS `.creds` file (user JWT and nkey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// For `tls://` servers: the PEM certificates to trust (default: the
    /// system's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Delivery frames waiting for the NATS client; past it they are
    /// dropped for the other nodes (counted and logged).
    pub forward_queue: usize,
    /// How long one connection attempt to a NATS server may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// `/readyz` answers 503 while NATS is not connected.
    pub ready_requires_nats: bool,
    /// How often the node announces itself to the others.
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// A node silent this long is shown as gone.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// How long an admin request to another node waits for its answer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an upgrade waits for the other nodes to tell a user's
    /// connections (a per-user cap of scope `cluster`).
    #[serde(with = "humantime_serde")]
    pub user_query_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: Vec::new(),
            node: String::new(),
            subject_prefix: "wsgate".to_string(),
            credentials_file: None,
            ca_file: None,
            forward_queue: 65_536,
            connect_timeout: Duration::from_secs(2),
            ready_requires_nats: false,
            announce_interval: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(6),
            request_timeout: Duration::from_secs(2),
            user_query_timeout: Duration::from_millis(250),
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }
}

/// `[api]`: the backend publish API. Disabled (403) when no key is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// API keys written inline. Prefer `keys_file` or `keys_env`.
    pub keys: Vec<Secret>,
    /// A file with one key per line (blank lines and `#` comments skipped).
    pub keys_file: Option<PathBuf>,
    /// An environment variable holding one key, or several separated by
    /// commas.
    pub keys_env: Option<String>,
}

/// A secret string: shown as `<redacted>` by `Debug` and when serialised.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// How secrets are shown.
pub const REDACTED: &str = "<redacted>";

/// What happens when a user is at `max_connections_per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUserLimit {
    /// The user's oldest connection is closed with 4001 to make room.
    EvictOldest,
    /// The new connection is refused with 429.
    Reject,
}

/// Where `max_connections_per_user` counts a user's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapScope {
    /// On this node.
    Node,
    /// On every node of the cluster (`[cluster]`); on this node while NATS
    /// is not connected.
    Cluster,
}

/// What happens to an inbound message over the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRateLimit {
    /// The message is dropped and the router may tell the client.
    Drop,
    /// The connection is closed with 1008.
    Close,
}

macro_rules! limits {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $default:expr, $(#[$serde:meta])? ; )*) => {
        /// `[limits]` (global) and the effective limits of one route.
        #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Limits {
            $( $(#[$doc])* $(#[$serde])? pub $name: $ty, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// `[routes.limits]`: any key of `[limits]`, overriding it for one route.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct LimitsOverride {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                $(#[$serde])?
                pub $name: Option<$ty>,
            )*
        }

        impl Limits {
            /// These limits with a route's overrides applied.
            pub fn with(&self, over: &LimitsOverride) -> Limits {
                Limits { $( $name: over.$name.clone().unwrap_or_else(|| self.$name.clone()), )* }
            }
        }
    };
}

limits! {
    /// Most connections at once: over all routes in `[limits]`, on the route
    /// in `[routes.limits]`. Over it: 503 with Retry-After.
    max_connections: usize = 10_000, ;
    /// Most connections from one client IP. Over it: 429 with Retry-After.
    max_connections_per_ip: usize = 100, ;
    /// Most connections of one authenticated user.
    max_connections_per_user: usize = 5, ;
    /// `evict_oldest` (close the user's oldest with 4001) or `reject` (429).
    on_user_limit: OnUserLimit = OnUserLimit::EvictOldest, ;
    /// `node` (count the user's connections here) or `cluster` (on every
    /// node of the cluster).
    max_connections_per_user_scope: CapScope = CapScope::Node, ;
    /// Largest inbound message in bytes, after reassembly of fragments. A
    /// message of exactly this size passes; one byte more closes with 1009.
    max_message_bytes: usize = 64 * 1024, ;
    /// Inbound messages per second per connection (token bucket); 0 = off.
    messages_per_second: u32 = 50, ;
    /// Bucket size: messages a client may send at once after a quiet spell.
    message_burst: u32 = 100, ;
    /// `drop` (drop the message, tell the client) or `close` (1008).
    on_rate_limit: OnRateLimit = OnRateLimit::Drop, ;
    /// Most topics one connection may subscribe to.
    max_subscriptions: usize = 100, ;
    /// No inbound data message for this long closes with 4003; 0 = off.
    idle_timeout: Duration = Duration::ZERO, #[serde(with = "humantime_serde")] ;
    /// How often the server pings each connection; 0 = no pings.
    ping_interval: Duration = Duration::from_secs(30), #[serde(with = "humantime_serde")] ;
    /// No pong within this long after a ping closes with 4004 (dead peer).
    pong_timeout: Duration = Duration::from_secs(10), #[serde(with = "humantime_serde")] ;
    /// Connections older than this are closed with 4005; 0 = off.
    max_lifetime: Duration = Duration::ZERO, #[serde(with = "humantime_serde")] ;
    /// Outbound messages buffered per connection; when full, the connection
    /// is a slow consumer and is closed with 4002.
    send_queue: usize = 1024, ;
    /// On reload, close connections over a tightened cap with 4006 (oldest
    /// first). Off: tightened caps apply to new connections only.
    enforce_on_reload: bool = false, ;
    /// Payload bytes one connection may hold for sending: its send queue
    /// and what it took from the queue that the socket has not accepted
    /// yet. A message that would take it past this closes the connection
    /// with 4002, as a full `send_queue` does. At least `max_message_bytes`.
    send_queue_bytes: usize = 1024 * 1024, ;
    /// Output pending and not one byte of it accepted by the socket for
    /// this long closes with 4002 (no write progress); 0 = off.
    send_timeout: Duration = Duration::from_secs(30), #[serde(with = "humantime_serde")] ;
    /// Inbound frames per second per connection that are not data messages
    /// (pings, pongs, and fragments of at most 125 bytes), as a token
    /// bucket; 0 = off. Over it `on_rate_limit` applies.
    frames_per_second: u32 = 200, ;
    /// Bucket size for `frames_per_second`.
    frame_burst: u32 = 400, ;
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The request path, e.g. `/ws/chat`. Matched exactly.
    pub path: String,
    /// The router plugin: `echo` or `pubsub`.
    pub router: String,
    /// An `[auth.<name>]` instance, or `none`.
    #[serde(default = "default_auth")]
    pub auth: String,
    /// Empty: any Origin. Otherwise the `Origin` header must equal one of
    /// these (e.g. `https://app.example.com`); requests without an Origin
    /// header (non-browser clients) are refused too.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub limits: LimitsOverride,
    /// Handed to the router plugin, which validates it.
    #[serde(default)]
    pub options: toml::Table,
}

fn default_auth() -> String {
    "none".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_replaces_only_what_it_names() {
        let global = Limits::default();
        let over = LimitsOverride {
            max_connections: Some(7),
            idle_timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let eff = global.with(&over);
        assert_eq!(eff.max_connections, 7);
        assert_eq!(eff.idle_timeout, Duration::from_secs(3));
        assert_eq!(eff.send_queue, global.send_queue);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        let json = serde_json::to_string(&s).expect("serialise");
        assert!(!json.contains("hunter2"));
    }
}
