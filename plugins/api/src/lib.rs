//! The plugin API of wsgate.
//!
//! Two small traits carry all plugin behaviour:
//!
//! - [`Authenticator`]: turns a WebSocket upgrade request into an [`Identity`]
//!   or a [`Rejection`] (401 / 403), before any WebSocket state exists.
//! - [`Router`]: reacts to a connection opening, each inbound message and the
//!   close, through a [`Session`] that the daemon provides: send to this
//!   connection, subscribe and unsubscribe it to topics, publish to topics.
//!
//! Plugins are compiled in. Each built-in lives in its own crate under
//! `plugins/` and exposes a factory ([`AuthPlugin`] or [`RouterPlugin`]); the
//! daemon maps names to factories in one place (`src/plugins.rs`). A factory
//! validates its own options (the TOML table of `[auth.<name>]` or
//! `[routes.options]`) when the config is loaded, so a bad option is refused
//! with the config error, never at connect time.
//!
//! This crate depends on nothing of the daemon; the daemon and every plugin
//! depend on it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use bytes::Bytes;
pub use http::HeaderMap;
pub use serde_json::value::RawValue;
pub use toml::Table;

/// A boxed future, as returned by the async hooks of a `dyn` plugin.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An error in a plugin's options, reported with the config error.
///
/// `path` is the key path inside the plugin's table (e.g. `tokens_file`),
/// which the daemon prefixes with the table's own path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    pub path: Option<String>,
    pub message: String,
}

impl OptionsError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: None,
            message: message.into(),
        }
    }

    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: Some(path.into()),
            message: message.into(),
        }
    }

    /// Deserialises a plugin's option table into its typed options.
    ///
    /// Use `#[serde(deny_unknown_fields)]` on `T`: an unknown key is then an
    /// error with its name in the message.
    pub fn parse<T: serde::de::DeserializeOwned>(options: &Table) -> Result<T, OptionsError> {
        serde_path_to_error::deserialize(toml::Value::Table(options.clone())).map_err(|e| {
            let path = e.path().to_string();
            OptionsError {
                path: (path != ".").then_some(path),
                message: e.into_inner().message().trim().to_string(),
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------

/// The longest topic name, in bytes (a protocol rule, not a tunable limit).
pub const MAX_TOPIC_LEN: usize = 256;

/// Checks a concrete topic name (as published or subscribed): non-empty,
/// at most [`MAX_TOPIC_LEN`] bytes, `.`-separated non-empty segments, and no
/// `*`, `>`, whitespace or control characters (those belong to patterns).
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic must not be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("a topic must be at most {MAX_TOPIC_LEN} bytes"));
    }
    if topic.split('.').any(str::is_empty) {
        return Err("a topic must not have an empty segment".into());
    }
    if topic
        .chars()
        .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Err("a topic must not contain `*`, `>`, whitespace or control characters".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

/// What an authenticator sees of the upgrade request.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    /// The request path, e.g. `/ws`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The client address (after `trusted_proxies` are applied).
    pub client_ip: IpAddr,
}

impl<'a> UpgradeRequest<'a> {
    /// The credential the client presented: `Authorization: Bearer <t>`, or
    /// else the query parameter `access_token` (browsers cannot set headers
    /// on a WebSocket).
    pub fn bearer_token(&self) -> Option<String> {
        if let Some(value) = self.headers.get(http::header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
                .filter(|t| !t.is_empty());
        }
        self.query_param("access_token").filter(|t| !t.is_empty())
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query?, name)
    }
}

/// The first value of `name` in a raw query string, percent-decoded
/// (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Who a connection belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The user id, if the authenticator knows one. Per-user caps and
    /// `{user}` topic patterns use it.
    pub user: Option<Arc<str>>,
    /// Extra claims (e.g. a JWT's payload), for routers that want them.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user: impl Into<Arc<str>>) -> Self {
        Self {
            user: Some(user.into()),
            claims: serde_json::Map::new(),
        }
    }
}

/// Why an upgrade was refused. The message is shown to the client, so it
/// must never contain the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 401: missing, malformed, unknown or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials that are not allowed here.
    #[error("{0}")]
    Forbidden(String),
}

/// Turns an upgrade request into an identity.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>>;
}

/// Builds authenticators of one kind from their `[auth.<name>]` tables.
pub trait AuthPlugin: Send + Sync + 'static {
    /// The name used in `plugin = "..."`.
    fn name(&self) -> &'static str;

    /// Validates `options` (the table without its `plugin` key) and builds
    /// an authenticator. Secrets named by `*_env` or `*_file` keys are read
    /// here, so that a missing secret is a config error.
    fn build(&self, options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError>;

    /// The option keys whose values are safe to show (in `wsgate check`, the
    /// admin `config`); every other value is shown as `<redacted>`.
    fn public_keys(&self) -> &'static [&'static str] {
        &[]
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

/// An inbound data message, reassembled from its fragments.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A text message (already checked to be valid UTF-8).
    Text(&'a str),
    Binary(&'a [u8]),
}

/// An outbound data message. `Bytes` is shared, so one serialised frame can
/// go to many connections without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Must be valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
}

impl Outbound {
    pub fn text(s: impl Into<String>) -> Self {
        Outbound::Text(Bytes::from(s.into()))
    }

    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(b) | Outbound::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A close the router asks for: a WebSocket close code and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Why a send to the own connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue was full: the daemon closes the connection with 4002.
    #[error("send queue full")]
    QueueFull,
    /// The connection is closing; the message was not queued.
    #[error("connection closing")]
    Closing,
}

/// Why a subscribe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("subscription limit of {limit} reached")]
    TooMany { limit: usize },
}

/// What a router can do with its connection, provided by the daemon.
///
/// Every method returns at once: nothing here waits on a socket.
pub trait Session: Send {
    /// The connection id, unique within this daemon's run.
    fn id(&self) -> &str;
    fn identity(&self) -> &Identity;
    /// The raw query string of the upgrade request.
    fn query(&self) -> Option<&str>;
    /// Queues a message for this connection.
    fn send(&mut self, message: Outbound) -> Result<(), SendError>;
    /// Subscribes this connection to a topic; `Ok(false)` if it already was.
    fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError>;
    /// Unsubscribes; `false` if it was not subscribed.
    fn unsubscribe(&mut self, topic: &str) -> bool;
    /// The topics this connection is subscribed to.
    fn subscriptions(&self) -> Vec<String>;
    /// Publishes `data` (any JSON) to a topic; returns how many connections'
    /// send queues took it.
    fn publish(&mut self, topic: &str, data: &RawValue) -> usize;
}

/// A router bound to one route, built from its `[routes.options]`.
///
/// `State` is per connection: created by `on_open`, handed to every later
/// hook, dropped after `on_close`.
pub trait Router: Send + Sync + 'static {
    type State: Send + 'static;

    /// The connection is open. Returning `Err` closes it with that code.
    fn on_open(&self, session: &mut dyn Session) -> Result<Self::State, Close>;

    /// One inbound data message. Returning `Err` closes the connection.
    fn on_message(
        &self,
        state: &mut Self::State,
        session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close>;

    /// An inbound message was dropped by the rate limit (`on_rate_limit =
    /// "drop"`). The default does nothing; a router with a reply protocol
    /// tells the client.
    fn on_rate_limited(&self, _state: &mut Self::State, _session: &mut dyn Session) {}

    /// The daemon is draining: the connection will be closed with 1001
    /// after `reconnect_after_ms`'s share of the drain window. A router with
    /// a reply protocol tells the client when to come back.
    fn on_shutdown(
        &self,
        _state: &mut Self::State,
        _session: &mut dyn Session,
        _reconnect_after_ms: u64,
    ) {
    }

    /// The connection has closed (for any reason). Subscriptions are
    /// removed by the daemon; this hook is for the router's own state.
    fn on_close(&self, _state: Self::State, _session: &mut dyn Session) {}
}

/// A type-erased per-connection handler, so that the daemon can hold any
/// router behind one pointer.
pub trait Handler: Send {
    fn on_message(&mut self, session: &mut dyn Session, message: Message<'_>) -> Result<(), Close>;
    fn on_rate_limited(&mut self, session: &mut dyn Session);
    fn on_shutdown(&mut self, session: &mut dyn Session, reconnect_after_ms: u64);
    fn on_close(self: Box<Self>, session: &mut dyn Session);
    /// For [`DynRouter::rebind`].
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

struct Bound<R: Router> {
    router: Arc<R>,
    state: R::State,
}

impl<R: Router> Handler for Bound<R> {
    fn on_message(&mut self, session: &mut dyn Session, message: Message<'_>) -> Result<(), Close> {
        self.router.on_message(&mut self.state, session, message)
    }

    fn on_rate_limited(&mut self, session: &mut dyn Session) {
        self.router.on_rate_limited(&mut self.state, session)
    }

    fn on_shutdown(&mut self, session: &mut dyn Session, reconnect_after_ms: u64) {
        self.router
            .on_shutdown(&mut self.state, session, reconnect_after_ms)
    }

    fn on_close(self: Box<Self>, session: &mut dyn Session) {
        let Bound { router, state } = *self;
        router.on_close(state, session)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A router with its per-connection state type erased.
pub trait DynRouter: Send + Sync + 'static {
    fn open(&self, session: &mut dyn Session) -> Result<Box<dyn Handler>, Close>;

    /// After a reload: moves a live connection's handler onto this router
    /// (new options, same per-connection state). `false` when the handler
    /// belongs to another kind of router, which cannot take it over.
    fn rebind(&self, handler: &mut dyn Handler) -> bool;
}

/// Erases a router's `State` type; factories return this.
pub fn erase<R: Router>(router: R) -> Arc<dyn DynRouter> {
    Arc::new(Erased(Arc::new(router)))
}

struct Erased<R: Router>(Arc<R>);

impl<R: Router> DynRouter for Erased<R> {
    fn open(&self, session: &mut dyn Session) -> Result<Box<dyn Handler>, Close> {
        let state = self.0.on_open(session)?;
        Ok(Box::new(Bound {
            router: Arc::clone(&self.0),
            state,
        }))
    }

    fn rebind(&self, handler: &mut dyn Handler) -> bool {
        match handler.as_any_mut().downcast_mut::<Bound<R>>() {
            Some(bound) => {
                bound.router = Arc::clone(&self.0);
                true
            }
            None => false,
        }
    }
}

/// Builds routers of one kind from their `[routes.options]` tables.
pub trait RouterPlugin: Send + Sync + 'static {
    /// The name used in `router = "..."`.
    fn name(&self) -> &'static str;

    /// Validates `options` and builds the router for one route.
    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> UpgradeRequest<'a> {
        UpgradeRequest {
            path: "/ws",
            query,
            headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn bearer_from_header_wins_over_query() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        let req = request(&headers, Some("access_token=xyz"));
        assert_eq!(req.bearer_token().as_deref(), Some("abc"));
    }

    #[test]
    fn bearer_from_query_is_decoded() {
        let headers = HeaderMap::new();
        let req = request(&headers, Some("topics=a&access_token=a%2Bb%3D"));
        assert_eq!(req.bearer_token().as_deref(), Some("a+b="));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_credential() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(request(&headers, None).bearer_token(), None);
        let headers = HeaderMap::new();
        assert_eq!(
            request(&headers, Some("access_token=")).bearer_token(),
            None
        );
    }

    #[test]
    fn option_errors_carry_the_key_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Opts {
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        let table: Table = "inner = { n = \"x\" }".parse().expect("toml");
        let err = OptionsError::parse::<Opts>(&table).expect_err("wrong type");
        assert_eq!(err.path.as_deref(), Some("inner.n"));
    }

    #[test]
    fn topics_are_checked() {
        assert!(check_topic("a.b-c_d").is_ok());
        for bad in [
            "",
            "a..b",
            "a.*",
            "a b",
            "x>",
            &"a".repeat(MAX_TOPIC_LEN + 1),
        ] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=x+y%21", "a").as_deref(), Some("x y!"));
        assert_eq!(query_param("b=1", "a"), None);
    }
}
