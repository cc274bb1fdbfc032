//! Routing: the `Router` trait, the `Session` it acts through, and the messages between them.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Accept, BoxFuture, Bytes, DynRouter, Identity, Inbound, OptionsError, Outlet, RawValue,
    Refusal, Table, UpgradeRequest,
};

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

/// A close under way, as [`Router::on_closing`] is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// The code the client is sent (or sent, when it closed first).
    pub code: u16,
    pub reason: String,
    /// The client sent the first close frame; otherwise wsgate closes (a
    /// limit, an operator, a drain, the router itself).
    pub by_client: bool,
}

/// The limits of the connection's route that a router acting on its own
/// needs (e.g. for an upstream leg of its own), as in force when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_message_bytes: usize,
    /// Zero: no heartbeat.
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// `[server] close_timeout`: how long a close handshake may take.
    pub close_timeout: Duration,
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
    /// An owned handle to this connection, for a task of the router's own.
    fn outlet(&self) -> Outlet;
    /// The route's limits in force.
    fn limits(&self) -> ConnLimits;
    /// Runs a task of the router's own for this connection (e.g. an
    /// upstream leg) on the daemon's runtime; a drain waits for it as for
    /// the connection itself.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// What [`Router::accept`] prepared ([`Accept::prepared`]), once.
    fn take_prepared(&mut self) -> Option<Box<dyn Any + Send>> {
        None
    }
}

/// A router bound to one route, built from its `[routes.options]`.
///
/// `State` is per connection: created by `on_open`, handed to every later
/// hook, dropped after `on_close`.
pub trait Router: Send + Sync + 'static {
    type State: Send + 'static;

    /// Before the 101, after authentication and the caps: the router may
    /// refuse the upgrade ([`Refusal`]: an HTTP answer), choose the
    /// subprotocol the 101 carries and prepare the connection (e.g. dial an
    /// upstream). `None` (the default): accepted as it is, at no cost. It
    /// runs within `[server] handshake_timeout`.
    fn accept<'a>(
        &'a self,
        _request: &'a UpgradeRequest<'a>,
        _identity: &'a Identity,
    ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>> {
        None
    }

    /// The connection is open. Returning `Err` closes it with that code.
    fn on_open(&self, session: &mut dyn Session) -> Result<Self::State, Close>;

    /// One inbound data message. Returning `Err` closes the connection.
    fn on_message(
        &self,
        state: &mut Self::State,
        session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close>;

    /// One inbound data message with its bytes, which a router may keep or
    /// forward without a copy. The default hands it to
    /// [`on_message`](Self::on_message).
    fn on_inbound(
        &self,
        state: &mut Self::State,
        session: &mut dyn Session,
        message: Inbound,
    ) -> Result<(), Close> {
        match message.message() {
            Some(m) => self.on_message(state, session, m),
            None => Ok(()),
        }
    }

    /// A close has started: the close frame is queued for the client (or
    /// the client's arrived). `on_close` follows once the connection is
    /// over. The default does nothing.
    fn on_closing(&self, _state: &mut Self::State, _session: &mut dyn Session, _closing: &Closing) {
    }

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

/// Builds routers of one kind from their `[routes.options]` tables.
pub trait RouterPlugin: Send + Sync + 'static {
    /// The name used in `router = "..."`.
    fn name(&self) -> &'static str;

    /// Validates `options` and builds the router for one route: return
    /// [`erase`](crate::erase)`(router)`.
    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError>;

    /// Registers the plugin's own metrics (once, at start; they are shown
    /// under the `wsgate_` prefix). The default has none.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}
