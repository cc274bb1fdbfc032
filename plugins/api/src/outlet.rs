//! The [`Outlet`]: an owned handle to one connection that a router may keep
//! and use from a task of its own (an upstream's reader, an HTTP call's
//! answer), apart from the hooks the daemon calls.

use std::sync::Arc;

use crate::{Close, ConnLimits, Outbound, SendError, SubscribeError};

/// What the daemon does behind an [`Outlet`]; implemented by the daemon
/// only (a router uses [`Outlet`]).
pub trait Port: Send + Sync + 'static {
    fn send(&self, message: Outbound) -> Result<(), SendError>;
    fn subscribe(&self, topic: &str) -> Result<bool, SubscribeError>;
    fn limits(&self) -> Option<ConnLimits>;
    fn close(&self, close: Close);
    fn pause_reading(&self);
    fn resume_reading(&self);
    fn is_closing(&self) -> bool;
    fn set_upstream(&self, upstream: Option<Upstream>);
}

/// Where a router relays a connection to, and how that leg stands, as the
/// admin table shows it (e.g. `ws://app:8000/ws/chat`, `open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub target: Arc<str>,
    pub state: &'static str,
}

/// An owned, clonable handle to one connection (from
/// [`Session::outlet`](crate::Session::outlet)).
///
/// Every method returns at once. What it sends goes through the
/// connection's bounded send queue, as everything sent to the connection
/// does: a full queue closes the connection with 4002 and the send fails.
/// The handle outlives the connection harmlessly: sends fail with
/// [`SendError::Closing`] once the connection is closing.
#[derive(Clone)]
pub struct Outlet(Arc<dyn Port>);

impl Outlet {
    /// Made by the daemon.
    pub fn new(port: Arc<dyn Port>) -> Self {
        Self(port)
    }

    /// An outlet to no connection: every send fails with
    /// [`SendError::Closing`] (for tests of a router's own logic).
    pub fn detached() -> Self {
        Self(Arc::new(Detached))
    }

    /// Queues a message for the connection.
    pub fn send(&self, message: Outbound) -> Result<(), SendError> {
        self.0.send(message)
    }

    /// Subscribes the connection to a topic, as
    /// [`Session::subscribe`](crate::Session::subscribe) does (the route's
    /// `max_subscriptions` applies): what is published to it from now on
    /// reaches the connection. `Ok(false)`: it already was subscribed, or
    /// the connection has ended (nothing is subscribed then).
    pub fn subscribe(&self, topic: &str) -> Result<bool, SubscribeError> {
        self.0.subscribe(topic)
    }

    /// The route's limits in force now, as
    /// [`Session::limits`](crate::Session::limits) gives them (a reload
    /// changes them); `None` once the route is gone. It reads the live
    /// config: a task asks at its own pace (e.g. at each ping), not per
    /// message.
    pub fn limits(&self) -> Option<ConnLimits> {
        self.0.limits()
    }

    /// Closes the connection: what is queued goes out first, then a close
    /// frame with this code (a code that may not be sent on the wire
    /// becomes 1011). The first close asked for wins.
    pub fn close(&self, close: Close) {
        self.0.close(close)
    }

    /// Stops reading the client (backpressure to its TCP) until
    /// [`resume_reading`](Self::resume_reading). Frames already read are
    /// still handed to the router. While reading is paused the client's
    /// silence is not held against it: pongs and the idle timer wait.
    pub fn pause_reading(&self) {
        self.0.pause_reading()
    }

    pub fn resume_reading(&self) {
        self.0.resume_reading()
    }

    /// Whether the connection is closing (a send would fail).
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    /// What the admin table shows for this connection's upstream leg.
    pub fn set_upstream(&self, upstream: Option<Upstream>) {
        self.0.set_upstream(upstream)
    }
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlet")
            .field("closing", &self.is_closing())
            .finish()
    }
}

/// What [`Outlet::detached`] leads to.
struct Detached;

impl Port for Detached {
    fn send(&self, _message: Outbound) -> Result<(), SendError> {
        Err(SendError::Closing)
    }
    fn subscribe(&self, _topic: &str) -> Result<bool, SubscribeError> {
        Ok(false)
    }
    fn limits(&self) -> Option<ConnLimits> {
        None
    }
    fn close(&self, _close: Close) {}
    fn pause_reading(&self) {}
    fn resume_reading(&self) {}
    fn is_closing(&self) -> bool {
        true
    }
    fn set_upstream(&self, _upstream: Option<Upstream>) {}
}
