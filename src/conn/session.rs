//! The [`Session`] a router sees: its own connection, the hub, the limits.

use std::sync::Arc;

use wsgate_plugin_api::{Identity, Outbound, RawValue, SendError, Session, SubscribeError};

use crate::handle::{Conn, Offer};
use crate::hub::{Hub, Source};
use crate::metrics::Metrics;

pub struct ConnSession<'a> {
    pub hub: &'a Hub,
    pub metrics: &'a Metrics,
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
            Offer::Full(why) => {
                self.metrics.slow_consumer(why);
                Err(SendError::QueueFull)
            }
            Offer::Closing => Err(SendError::Closing),
        }
    }

    fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError> {
        self.hub.subscribe(self.conn, topic, self.max_subscriptions)
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
        self.hub.publish(topic, data, Source::Client)
    }
}
