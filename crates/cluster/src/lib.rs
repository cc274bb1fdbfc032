//! The cluster bus: several wsgate nodes share their topics through NATS
//! core (at most once, no JetStream).
//!
//! A node publishes every delivery frame it serves locally (the bytes its
//! own subscribers get) on the subject `<prefix>.t.<topic>`, and subscribes
//! to a topic's subject only while it has a local subscriber, so traffic
//! follows interest. Topic names are valid subject tokens by construction
//! (`.`-separated, no `*`, `>` or whitespace: see `check_topic`), so a
//! topic is its own subject tail. The connection is made with `no_echo`: a
//! node never receives its own publishes back, and local subscribers, served
//! first and directly, get each message once.
//!
//! Nothing here waits on NATS on a publish path: [`Bus::forward`] puts the
//! frame in a bounded queue (or says why it did not), and interest changes
//! are coalesced per topic for the bus's task. While NATS is unreachable,
//! forwarding fails fast (counted), the client reconnects with back-off,
//! and every subscription is made again on reconnect.
//!
//! Besides topics, nodes announce themselves on `<prefix>.nodes` (the
//! [`peers`] table) and answer admin requests of the other nodes on
//! `<prefix>.admin.<node>` (request/reply, [`Bus::request`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

mod link;
mod metrics;
pub mod peers;

pub use metrics::register_metrics;
use metrics::{Dropped, METRICS};
pub use peers::{Announcement, NodeState, Peer, PeerState};

/// The `[cluster]` settings the bus runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// NATS server URLs (`nats://host:port`, or `tls://`); tried in turn.
    pub servers: Vec<String>,
    /// This node's unique name.
    pub node: String,
    /// The first token(s) of every subject wsgate uses.
    pub subject_prefix: String,
    /// A NATS `.creds` file (a user JWT and its nkey seed).
    pub credentials_file: Option<PathBuf>,
    /// For `tls://` servers: the PEM certificates to trust instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// Frames waiting to be handed to the NATS client; beyond, a forward is
    /// dropped and counted.
    pub forward_queue: usize,
    /// How long one connection attempt to a server may take.
    pub connect_timeout: Duration,
    /// Dropped forwards, and failed attempts to reach NATS, are logged at
    /// most once per this interval (forwards are always counted).
    pub log_interval: Duration,
    /// How often the node announces itself.
    pub announce_interval: Duration,
    /// A node silent this long is shown as gone.
    pub peer_timeout: Duration,
    /// How long a request to another node waits for its answer.
    pub request_timeout: Duration,
    /// How long an upgrade waits for the other nodes to tell a user's
    /// connections (cluster-wide per-user caps).
    pub user_query_timeout: Duration,
}

/// A boxed future, as [`Inbound::admin`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the bus asks of the daemon: where frames from other nodes go (the
/// local hub), what this node announces, and answers to other nodes'
/// admin requests.
pub trait Inbound: Send + Sync + 'static {
    /// A delivery frame another node published on `topic`, to be given to
    /// this node's subscribers (and not forwarded again).
    fn deliver(&self, topic: &str, frame: Bytes);

    /// This node's state now, for its announcement.
    fn state(&self) -> NodeState;

    /// Answers an admin request line of another node (the admin protocol's
    /// JSON) with the answer line.
    fn admin(&self, request: Bytes) -> BoxFuture<Bytes>;

    /// This node's connections of `user` (for another node's cluster-wide
    /// per-user cap).
    fn user_conns(&self, user: &str) -> Vec<UserConn>;

    /// Another node asks this one to close connection `conn` of `user`: it
    /// is the user's oldest in the cluster and a newer one took its place.
    fn evict(&self, conn: u64, user: &str);
}

/// A connection of a user, as a node tells another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserConn {
    pub conn: u64,
    pub route: String,
    /// When it opened, in milliseconds since the Unix epoch (the nodes'
    /// clocks decide which connection is the oldest).
    pub opened_ms: u64,
}

/// A connection of a user on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConn {
    pub node: String,
    pub conn: UserConn,
}

/// What the other nodes said of a user's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConns {
    pub conns: Vec<RemoteConn>,
    /// Every live node answered in time (otherwise those that did not are
    /// not counted).
    pub complete: bool,
}

/// What became of a frame offered to the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Queued for NATS.
    Queued,
    /// Not sent: NATS is not connected (fail fast; counted).
    Disconnected,
    /// Not sent: the forwarding queue is full (counted and logged).
    QueueFull,
}

impl Forwarded {
    pub fn is_queued(self) -> bool {
        self == Forwarded::Queued
    }
}

/// Why a request to another node got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the node is not listening (gone)")]
    NoResponders,
    #[error("{0}")]
    Failed(String),
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the NATS credentials file {path}: {error}")]
    Credentials { path: String, error: String },
    #[error("cannot use the NATS servers: {0}")]
    Connect(String),
}

/// Interest changes not yet applied: the latest wanted state per topic.
#[derive(Default)]
struct Pending {
    changes: HashMap<Arc<str>, bool>,
}

/// What the handle and the bus's task share.
struct Shared {
    prefix: String,
    node: String,
    connected: AtomicBool,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Dropped forwards, logged at most once per `log_interval`.
    drop_log: LogGate,
    /// Failed attempts to reach NATS, the same.
    connect_log: LogGate,
    peers: peers::Peers,
    /// Wakes the announcer for an announcement now (a drain started).
    announce: Notify,
    user_query_timeout: Duration,
}

/// Lets one line through per interval: the first of a burst is logged, the
/// rest only counted.
struct LogGate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl LogGate {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
        }
    }

    /// Whether a line may be logged now (and, if so, it counts as logged).
    fn open(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Shared {
    /// Counts a dropped forward and logs it unless one was logged within
    /// `log_interval`.
    fn dropped(&self, why: Dropped) {
        METRICS.dropped(why);
        if !self.drop_log.open() {
            return;
        }
        let why = match why {
            Dropped::Disconnected => "NATS is not connected",
            Dropped::QueueFull => "the forwarding queue towards NATS is full",
            Dropped::PublishFailed => "the NATS client refused the publish",
        };
        tracing::warn!(
            "cluster: publishes are not reaching the other nodes: {why} (counted in \
             wsgate_cluster_forward_dropped_total; logged at most once per {:?})",
            self.drop_log.interval
        );
    }
}

/// The handle of a running bus. Dropping it stops the bus's tasks.
pub struct Bus {
    shared: Arc<Shared>,
    outbox: mpsc::Sender<(String, Bytes)>,
    stop: CancellationToken,
    client: async_nats::Client,
    inbound: Arc<dyn Inbound>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("node", &self.shared.node)
            .field("prefix", &self.shared.prefix)
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Starts the bus on the current runtime. It returns at once: a NATS
    /// server that cannot be reached now is retried in the background (the
    /// node serves locally meanwhile). Only options that can never work
    /// (an unreadable credentials file, a malformed URL) are errors.
    pub async fn start(config: Config, inbound: Arc<dyn Inbound>) -> Result<Bus, StartError> {
        let shared = Arc::new(Shared {
            prefix: config.subject_prefix.clone(),
            node: config.node.clone(),
            connected: AtomicBool::new(false),
            pending: Mutex::default(),
            wake: Notify::new(),
            drop_log: LogGate::new(config.log_interval),
            connect_log: LogGate::new(config.log_interval),
            peers: peers::Peers::new(config.peer_timeout),
            announce: Notify::new(),
            user_query_timeout: config.user_query_timeout,
        });
        let (outbox, outbox_rx) = mpsc::channel(config.forward_queue.max(1));
        let stop = CancellationToken::new();
        let request_timeout = config.request_timeout;
        let client = link::start(
            config,
            Arc::clone(&shared),
            Arc::clone(&inbound),
            outbox_rx,
            stop.clone(),
        )
        .await?;
        Ok(Bus {
            shared,
            outbox,
            stop,
            client,
            inbound,
            request_timeout,
        })
    }

    /// Offers a delivery frame of `topic` to the other nodes. Never waits.
    pub fn forward(&self, topic: &str, frame: &Bytes) -> Forwarded {
        offer(&self.shared, &self.outbox, topic, frame)
    }

    /// Says that this node has (`on`) or no longer has a subscriber of
    /// `topic`. Never waits: the bus's task applies it.
    pub fn interest(&self, topic: &Arc<str>, on: bool) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes
            .insert(Arc::clone(topic), on);
        self.shared.wake.notify_one();
    }

    /// Whether NATS is connected now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// The other nodes heard of, by name.
    pub fn peers(&self) -> Vec<Peer> {
        self.shared.peers.all(Instant::now())
    }

    /// Announces this node now (its state changed: a drain started).
    pub fn announce_now(&self) {
        self.shared.announce.notify_one();
    }

    /// Says to the other nodes that this node stops (its last
    /// announcement), within `request_timeout`.
    pub async fn leave(&self) {
        if !self.connected() {
            return;
        }
        let state = self.inbound.state();
        let last = link::announcement(&self.shared, state, true);
        let subject = link::nodes_subject(&self.shared.prefix);
        let sent = async {
            self.client.publish(subject, last).await.ok();
            self.client.flush().await.ok();
        };
        let _ = tokio::time::timeout(self.request_timeout, sent).await;
    }

    /// Sends an admin request line to `node` and waits (at most
    /// `request_timeout`) for its answer line.
    pub async fn request(&self, node: &str, request: Bytes) -> Result<Bytes, RequestError> {
        if !self.connected() {
            return Err(RequestError::Disconnected);
        }
        let subject = link::admin_subject(&self.shared.prefix, node);
        match tokio::time::timeout(self.request_timeout, self.client.request(subject, request))
            .await
        {
            Err(_) => Err(RequestError::Timeout(self.request_timeout)),
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => RequestError::NoResponders,
                async_nats::RequestErrorKind::TimedOut => {
                    RequestError::Timeout(self.request_timeout)
                }
                _ => RequestError::Failed(e.to_string()),
            }),
        }
    }
}

impl Bus {
    /// The connections of `user` on the other live nodes, as they answer
    /// within `user_query_timeout`. Not connected: none, and not complete
    /// (the cap falls back to this node's count).
    pub async fn user_conns(&self, user: &str) -> UserConns {
        let expected = self
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Live)
            .count();
        if expected == 0 {
            return UserConns {
                conns: Vec::new(),
                complete: self.connected(),
            };
        }
        if !self.connected() {
            return UserConns::default();
        }
        let query = link::user_query(user);
        let found = link::gather(
            &self.client,
            link::users_subject(&self.shared.prefix),
            query,
            expected,
            self.shared.user_query_timeout,
        )
        .await;
        let complete = found.len() >= expected;
        METRICS.user_query(complete);
        let conns = found
            .into_iter()
            .flat_map(|(node, conns)| {
                conns.into_iter().map(move |conn| RemoteConn {
                    node: node.clone(),
                    conn,
                })
            })
            .collect();
        UserConns { conns, complete }
    }

    /// Tells `node` to close its connection `conn` of `user` (it is the
    /// user's oldest and a newer one replaces it). Never waits.
    pub fn evict_remote(&self, node: &str, conn: u64, user: &str) {
        let subject = link::evict_subject(&self.shared.prefix, node);
        let order = link::evict_order(conn, user);
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.publish(subject, order).await;
        });
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Puts a frame in the forwarding queue unless NATS is away or the queue
/// is full (both counted, and logged at most once per `log_interval`).
fn offer(
    shared: &Shared,
    outbox: &mpsc::Sender<(String, Bytes)>,
    topic: &str,
    frame: &Bytes,
) -> Forwarded {
    if !shared.connected.load(Ordering::Acquire) {
        shared.dropped(Dropped::Disconnected);
        return Forwarded::Disconnected;
    }
    match outbox.try_send((subject(&shared.prefix, topic), frame.clone())) {
        Ok(()) => Forwarded::Queued,
        Err(mpsc::error::TrySendError::Full(_)) => {
            shared.dropped(Dropped::QueueFull);
            Forwarded::QueueFull
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            shared.dropped(Dropped::Disconnected);
            Forwarded::Disconnected
        }
    }
}

/// The subject of a topic's deliveries.
pub fn subject(prefix: &str, topic: &str) -> String {
    format!("{prefix}.t.{topic}")
}

/// Checks a NATS server URL from the config (`nats://`, `tls://`, `ws://`
/// or `wss://`, or `host:port`). The error shows the URL without its
/// password.
pub fn check_server(url: &str) -> Result<(), String> {
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| format!("`{}`: {e}", shown(url)))
}

/// The credentials the NATS URLs carry (`nats://user:password@host`, or
/// `nats://token@host`), which must be the same in every URL that has some:
/// the client sends one set to whichever server it reaches.
pub fn url_credentials(servers: &[String]) -> Result<Option<Credentials>, String> {
    let mut found: Option<Credentials> = None;
    for url in servers {
        let Ok(addr) = url.parse::<async_nats::ServerAddr>() else {
            continue;
        };
        let Some(user) = addr.username() else {
            continue;
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let these = match addr.password() {
            Some(password) => Credentials::UserPassword(decode(user), decode(password)),
            None => Credentials::Token(decode(user)),
        };
        match &found {
            Some(f) if *f != these => {
                return Err(
                    "the NATS URLs carry different credentials: give every URL the \
                            same, or only the first"
                        .to_string(),
                )
            }
            _ => found = Some(these),
        }
    }
    Ok(found)
}

/// What a NATS URL may carry to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::UserPassword(user, _) => write!(f, "UserPassword({user}, <redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// A NATS URL as logs and `wsgate check` show it: a password or token in
/// it replaced by `<redacted>`.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("<redacted>@{host}"),
            None => url.to_string(),
        };
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = match auth.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>"),
                None => "<redacted>".to_string(),
            };
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

/// Whether `c` may be in a token wsgate puts in a subject (a prefix's
/// tokens, a node name): a letter, a digit, `-` or `_`.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks a subject prefix from the config: `.`-separated tokens of
/// letters, digits, `-` and `_`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".to_string());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!("`{prefix}` has an empty token"));
        }
        if !token.chars().all(is_token_char) {
            return Err(format!(
                "`{prefix}`: tokens are letters, digits, `-` and `_`, separated by `.`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(connected: bool) -> Shared {
        Shared {
            prefix: "wsgate".to_string(),
            node: "a".to_string(),
            connected: AtomicBool::new(connected),
            pending: Mutex::default(),
            wake: Notify::new(),
            drop_log: LogGate::new(Duration::from_secs(60)),
            connect_log: LogGate::new(Duration::from_secs(60)),
            peers: peers::Peers::new(Duration::from_secs(6)),
            announce: Notify::new(),
            user_query_timeout: Duration::from_millis(250),
        }
    }

    #[test]
    fn the_forwarding_queue_is_bounded_and_nats_away_fails_fast() {
        let frame = Bytes::from_static(b"{}");
        let (outbox, mut queued) = mpsc::channel(2);
        let up = shared(true);
        assert_eq!(offer(&up, &outbox, "news", &frame), Forwarded::Queued);
        assert_eq!(offer(&up, &outbox, "news", &frame), Forwarded::Queued);
        // Full: dropped, counted, logged once per interval.
        assert_eq!(offer(&up, &outbox, "news", &frame), Forwarded::QueueFull);
        let logged = *up.drop_log.last.lock().expect("lock");
        assert!(logged.is_some());
        assert_eq!(offer(&up, &outbox, "news", &frame), Forwarded::QueueFull);
        assert_eq!(
            *up.drop_log.last.lock().expect("lock"),
            logged,
            "not logged again"
        );
        assert_eq!(
            queued.try_recv().expect("queued").0,
            "wsgate.t.news".to_string()
        );
        // Room again.
        assert_eq!(offer(&up, &outbox, "news", &frame), Forwarded::Queued);

        let down = shared(false);
        assert_eq!(
            offer(&down, &outbox, "news", &frame),
            Forwarded::Disconnected
        );
    }

    #[test]
    fn credentials_come_from_the_urls_and_are_never_shown() {
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(url_credentials(&urls(&["nats://a:1"])), Ok(None));
        assert_eq!(
            url_credentials(&urls(&["nats://u:p%40ss@a:1", "nats://b:2"])),
            Ok(Some(Credentials::UserPassword("u".into(), "p@ss".into())))
        );
        assert_eq!(
            url_credentials(&urls(&["nats://tok@a:1"])),
            Ok(Some(Credentials::Token("tok".into())))
        );
        assert!(url_credentials(&urls(&["nats://u:p@a:1", "nats://u:q@b:1"])).is_err());
        assert_eq!(shown("nats://u:secret@a:1"), "nats://u:<redacted>@a:1");
        assert_eq!(shown("nats://token@a:1"), "nats://<redacted>@a:1");
        assert_eq!(shown("nats://a:1"), "nats://a:1");
        let c = Credentials::UserPassword("u".into(), "secret".into());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn subjects_and_prefixes() {
        assert_eq!(subject("wsgate", "news.eu"), "wsgate.t.news.eu");
        assert!(check_prefix("wsgate").is_ok());
        assert!(check_prefix("acme.ws-1").is_ok());
        for bad in ["", "a..b", "a.*", "a b", "a.>"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
