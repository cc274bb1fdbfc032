//! The bus's metrics, registered with the daemon's (`wsgate_cluster_*`).
//! They exist (at 0) on a single node too.

use std::sync::atomic::AtomicI64;
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Disconnected,
    QueueFull,
    PublishFailed,
}

impl Dropped {
    const ALL: [Dropped; 3] = [
        Dropped::Disconnected,
        Dropped::QueueFull,
        Dropped::PublishFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Dropped::Disconnected => "disconnected",
            Dropped::QueueFull => "queue_full",
            Dropped::PublishFailed => "publish_failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct ClusterMetrics {
    pub connected: Gauge<i64, AtomicI64>,
    pub connects: Counter,
    pub forwarded: Counter,
    dropped: Family<ReasonLabel, Counter>,
    pub received: Counter,
    pub subscriptions: Gauge<i64, AtomicI64>,
    user_queries: Family<ResultLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub static METRICS: LazyLock<ClusterMetrics> = LazyLock::new(|| {
    let m = ClusterMetrics {
        connected: Gauge::default(),
        connects: Counter::default(),
        forwarded: Counter::default(),
        dropped: Family::default(),
        received: Counter::default(),
        subscriptions: Gauge::default(),
        user_queries: Family::default(),
    };
    for result in ["complete", "partial"] {
        m.user_queries.get_or_create_owned(&ResultLabel { result });
    }
    for reason in Dropped::ALL {
        m.dropped.get_or_create_owned(&ReasonLabel {
            reason: reason.label(),
        });
    }
    m
});

impl ClusterMetrics {
    pub fn user_query(&self, complete: bool) {
        let result = if complete { "complete" } else { "partial" };
        self.user_queries
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }
}

/// Registers the bus's metrics (once, at start).
pub fn register_metrics(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "cluster_connected",
        "1 while the node is connected to NATS, else 0 (also 0 on a single node)",
        m.connected.clone(),
    );
    registry.register(
        "cluster_connects",
        "Connections made to NATS (the first and every reconnect)",
        m.connects.clone(),
    );
    registry.register(
        "cluster_forwarded",
        "Delivery frames published to NATS for the other nodes",
        m.forwarded.clone(),
    );
    registry.register(
        "cluster_forward_dropped",
        "Delivery frames not forwarded to the other nodes, by reason",
        m.dropped.clone(),
    );
    registry.register(
        "cluster_received",
        "Delivery frames received from other nodes through NATS",
        m.received.clone(),
    );
    registry.register(
        "cluster_user_queries",
        "Asks of the other nodes for a user's connections (cluster-wide per-user caps), by \
         whether every live node answered in time",
        m.user_queries.clone(),
    );
    registry.register(
        "cluster_subscriptions",
        "Topics this node is subscribed to on NATS (those with a local subscriber)",
        m.subscriptions.clone(),
    );
}
