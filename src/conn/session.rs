//! The [`Session`] a router sees: its own connection, the hub, the limits.

use std::any::Any;
use std::sync::Arc;

use wsgate_plugin_api::{
    BoxFuture, ConnLimits, Identity, Outbound, Outlet, RawValue, SendError, Session, SubscribeError,
};

use super::outlet::ConnPort;
use crate::config::Limits;
use crate::daemon::Daemon;
use crate::handle::{Conn, Offer};
use crate::hub::{Hub, Source};
use crate::metrics::Metrics;

pub struct ConnSession<'a> {
    /// For what outlives a hook (a router's outlet).
    pub daemon: &'a Arc<Daemon>,
    pub hub: &'a Hub,
    pub metrics: &'a Arc<Metrics>,
    /// Where the daemon's connection tasks run (a drain waits for them).
    pub tasks: &'a tokio_util::task::TaskTracker,
    pub conn: &'a Arc<Conn>,
    pub id: String,
    pub identity: Identity,
    pub query: Option<String>,
    /// The route's limits in force, as a router sees them.
    pub limits: ConnLimits,
    /// What the router's `accept` hook prepared, until `on_open` takes it.
    pub prepared: Option<Box<dyn Any + Send>>,
}

impl ConnSession<'_> {
    /// After a reload: the route's limits in force.
    pub fn apply(&mut self, limits: &Limits, close_timeout: std::time::Duration) {
        self.conn.set_max_subscriptions(limits.max_subscriptions);
        self.limits = conn_limits(limits, close_timeout);
    }
}

/// What a router sees of a route's limits.
pub fn conn_limits(limits: &Limits, close_timeout: std::time::Duration) -> ConnLimits {
    ConnLimits {
        max_message_bytes: limits.max_message_bytes,
        ping_interval: limits.ping_interval,
        pong_timeout: limits.pong_timeout,
        close_timeout,
    }
}

impl Session for ConnSession<'_> {
    fn id(&self) -> &str {
        &self.id
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    fn send(&mut self, message: Outbound) -> Result<(), SendError> {
        match self.conn.offer_own(message) {
            Offer::Queued => Ok(()),
            Offer::Full(why) => {
                self.metrics.slow_consumer(why);
                Err(SendError::QueueFull)
            }
            Offer::Closing => Err(SendError::Closing),
        }
    }

    fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError> {
        self.hub
            .subscribe(self.conn, topic, self.conn.max_subscriptions())
    }

    fn unsubscribe(&mut self, topic: &str) -> bool {
        self.hub.unsubscribe(self.conn, topic)
    }

    fn subscriptions(&self) -> Vec<String> {
        self.conn
            .subscriptions()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn publish(&mut self, topic: &str, data: &RawValue) -> usize {
        self.hub.publish(topic, data, Source::Client).delivered
    }

    fn outlet(&self) -> Outlet {
        Outlet::new(Arc::new(ConnPort {
            conn: Arc::clone(self.conn),
            daemon: Arc::clone(self.daemon),
        }))
    }

    fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.tasks.spawn(task);
    }

    fn take_prepared(&mut self) -> Option<Box<dyn Any + Send>> {
        self.prepared.take()
    }
}
