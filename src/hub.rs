//! Topics and fan-out.
//!
//! A publish serialises the delivery frame once and offers the shared bytes
//! to every subscriber's send queue. Offering never waits: a full queue
//! marks that one connection as a slow consumer (closed with 4002) and the
//! loop goes on, so one stalled client cannot delay anyone else. A topic is
//! removed with its last subscriber, so the map never only grows.
//!
//! In a cluster ([`Hub::attach`]), the same frame is then offered to the
//! other nodes through the bus (which never waits), the bus is told when a
//! topic gains its first local subscriber or loses its last (interest), and
//! frames from other nodes are delivered here without being forwarded
//! again ([`Hub::deliver_remote`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use wsgate_cluster::{Bus, Forwarded};

use serde::Serialize;
use wsgate_plugin_api::{Bytes, Outbound, RawValue, SubscribeError};

use crate::handle::{Conn, ConnId, Offer};
use crate::metrics::Metrics;

type Subscribers = HashMap<ConnId, Arc<Conn>>;

pub struct Hub {
    topics: RwLock<HashMap<Arc<str>, Subscribers>>,
    metrics: Arc<Metrics>,
    /// The cluster bus, once attached at start.
    bus: OnceLock<Arc<Bus>>,
}

/// What came of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Local send queues that took the frame.
    pub delivered: usize,
    /// In a cluster: whether the frame went to the other nodes.
    pub forwarded: Option<Forwarded>,
}

/// The delivery frame every subscriber receives.
#[derive(Serialize)]
struct Delivery<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    data: &'a RawValue,
}

/// Where a publish came from, for the `publishes` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Client,
    Admin,
    /// Another node, through the cluster bus.
    Remote,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Client => "client",
            Source::Admin => "admin",
            Source::Remote => "remote",
        }
    }
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            topics: RwLock::default(),
            metrics,
            bus: OnceLock::new(),
        }
    }

    /// Joins the cluster: from now on publishes are forwarded and interest
    /// is told to `bus` (the topics that have subscribers already, too).
    pub fn attach(&self, bus: Arc<Bus>) {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        for topic in topics.keys() {
            bus.interest(topic, true);
        }
        let _ = self.bus.set(bus);
    }

    /// The cluster bus, when the node is part of a cluster.
    pub fn bus(&self) -> Option<&Arc<Bus>> {
        self.bus.get()
    }

    /// Subscribes `conn` to `topic`; `Ok(false)` if it already was.
    pub fn subscribe(
        &self,
        conn: &Arc<Conn>,
        topic: &str,
        max: usize,
    ) -> Result<bool, SubscribeError> {
        conn.with_subscriptions(|subs| {
            if conn.unsubscribed() || subs.iter().any(|t| &**t == topic) {
                return Ok(false);
            }
            if subs.len() >= max {
                return Err(SubscribeError::TooMany { limit: max });
            }
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let key = match topics.get_key_value(topic) {
                Some((k, _)) => Arc::clone(k),
                None => {
                    let key: Arc<str> = Arc::from(topic);
                    if let Some(bus) = self.bus.get() {
                        bus.interest(&key, true);
                    }
                    key
                }
            };
            topics
                .entry(Arc::clone(&key))
                .or_default()
                .insert(conn.id, Arc::clone(conn));
            subs.push(key);
            Ok(true)
        })
    }

    /// Unsubscribes; `false` if `conn` was not subscribed.
    pub fn unsubscribe(&self, conn: &Conn, topic: &str) -> bool {
        conn.with_subscriptions(|subs| {
            let Some(pos) = subs.iter().position(|t| &**t == topic) else {
                return false;
            };
            subs.swap_remove(pos);
            self.remove(conn.id, topic);
            true
        })
    }

    /// Removes every subscription of a closing connection.
    pub fn unsubscribe_all(&self, conn: &Conn) {
        conn.with_subscriptions(|subs| {
            conn.set_unsubscribed();
            for topic in subs.drain(..) {
                self.remove(conn.id, &topic);
            }
            subs.shrink_to(0);
        })
    }

    fn remove(&self, id: ConnId, topic: &str) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(subs) = topics.get_mut(topic) {
            subs.remove(&id);
            if subs.is_empty() {
                if let (Some((key, _)), Some(bus)) = (topics.remove_entry(topic), self.bus.get()) {
                    bus.interest(&key, false);
                }
            }
        }
    }

    /// Delivers `data` to every subscriber of `topic`, then (in a cluster)
    /// offers the same frame to the other nodes.
    pub fn publish(&self, topic: &str, data: &RawValue, source: Source) -> Published {
        let started = Instant::now();
        self.metrics.published(source.label());
        let frame = match serde_json::to_vec(&Delivery {
            kind: "message",
            topic,
            data,
        }) {
            Ok(v) => Bytes::from(v),
            // Serialising a str and a RawValue cannot fail.
            Err(_) => {
                return Published {
                    delivered: 0,
                    forwarded: None,
                }
            }
        };
        let delivered = self.fan_out(topic, &frame, started);
        let forwarded = self.bus.get().map(|bus| bus.forward(topic, &frame));
        Published {
            delivered,
            forwarded,
        }
    }

    /// Delivers a frame another node published to this node's subscribers
    /// of `topic` (never forwarded again). It goes out as a text frame, so
    /// one that is not UTF-8 (not from a wsgate node) is dropped.
    pub fn deliver_remote(&self, topic: &str, frame: Bytes) -> usize {
        if simdutf8::basic::from_utf8(&frame).is_err() {
            tracing::warn!(
                topic,
                "cluster: dropped a message from NATS that is not UTF-8 text"
            );
            return 0;
        }
        let started = Instant::now();
        self.metrics.published(Source::Remote.label());
        self.fan_out(topic, &frame, started)
    }

    /// Offers `frame` to every local subscriber of `topic`; returns how
    /// many send queues took it. The time since `started` goes into
    /// `wsgate_publish_fanout_seconds`.
    fn fan_out(&self, topic: &str, frame: &Bytes, started: Instant) -> usize {
        let mut delivered = 0;
        {
            let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
            for conn in topics.get(topic).into_iter().flat_map(|subs| subs.values()) {
                match conn.offer(Outbound::Text(frame.clone())) {
                    Offer::Queued => delivered += 1,
                    Offer::Full(why) => self.metrics.slow_consumer(why),
                    Offer::Closing => {}
                }
            }
        }
        self.metrics
            .publish_fanout
            .observe(started.elapsed().as_secs_f64());
        delivered
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
