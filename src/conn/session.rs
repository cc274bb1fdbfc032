//! The [`Session`] a router sees: its own connection, the hub, the limits.

use std::sync::Arc;

use wsgate_plugin_api::{Identity, Outbound, RawValue, SendError, Session, SubscribeError};

use crate::daemon::Daemon;
use crate::hub::Source;
use crate::registry::{Conn, Offer};

pub struct ConnSession<'a> {
    pub daemon: &'a Daemon,
    pub conn: &'a Arc<Conn>,
    pub id: String,
    pub identity: Identity,
    pub query: Option<String>,
    /// The route's `max_subscriptions` in force.
    pub max_subscriptions: usize,
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
            Offer::Full => {
                self.daemon.metrics.slow_consumer_closes.inc();
                Err(SendError::QueueFull)
            }
            Offer::Closing => Err(SendError::Closing),
        }
    }

    fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError> {
        self.daemon
            .hub
            .subscribe(self.conn, topic, self.max_subscriptions)
    }

    fn unsubscribe(&mut self, topic: &str) -> bool {
        self.daemon.hub.unsubscribe(self.conn, topic)
    }

    fn subscriptions(&self) -> Vec<String> {
        self.conn
            .subscriptions()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn publish(&mut self, topic: &str, data: &RawValue) -> usize {
        self.daemon.hub.publish(topic, data, Source::Client)
    }
}
