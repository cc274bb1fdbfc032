//! Prometheus metrics, served at `GET /metrics`: a leaf that knows nothing
//! of the daemon's other parts.
//!
//! Labelled families are only touched once per connection (accept, reject,
//! close) or per publish. What changes with every message (traffic) or every
//! connect and close (connections open) is not counted here on the way: the
//! owner of those numbers hands them over when metrics are shown
//! ([`Metrics::sync_traffic`], [`Metrics::sync_open`]).
//!
//! - [`exposition`]: the two text formats (OpenMetrics, Prometheus 0.0.4)
//!   and which one a scraper asked for.
//! - [`process`]: the standard `process_*` metrics, read at scrape time.
//!
//! Histograms are observed once per event that is rare next to messages
//! (a pong, a publish, a handshake): a few atomic additions each.

pub mod exposition;
pub mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use exposition::Format;

/// Upper bounds (seconds) of `wsgate_ping_rtt_seconds`: from a loopback
/// round trip (under 1 ms) to the default `pong_timeout` (10 s).
pub const PING_RTT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of `wsgate_publish_fanout_seconds`: a publish
/// to no subscriber takes microseconds, one to 10,000 a few milliseconds.
pub const PUBLISH_FANOUT_BUCKETS: [f64; 14] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25,
];

/// Upper bounds (seconds) of `wsgate_handshake_seconds`: a loopback
/// upgrade takes well under a millisecond; authentication may add
/// milliseconds; the default `handshake_timeout` (5 s) ends it.
pub const HANDSHAKE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabel {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerNameLabel {
    pub listener: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why a connection was closed as a slow consumer (4002): the label of
/// `slow_consumer_closes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Its send queue held `send_queue` messages.
    QueueFull,
    /// A message would have taken it past `send_queue_bytes`.
    QueueBytes,
    /// The socket accepted no byte of pending output for `send_timeout`.
    NoWriteProgress,
}

impl SlowConsumer {
    pub const ALL: [SlowConsumer; 3] = [
        SlowConsumer::QueueFull,
        SlowConsumer::QueueBytes,
        SlowConsumer::NoWriteProgress,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SlowConsumer::QueueFull => "queue_full",
            SlowConsumer::QueueBytes => "queue_bytes",
            SlowConsumer::NoWriteProgress => "no_write_progress",
        }
    }
}

/// Messages and bytes in and out, summed over connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.msgs_in += o.msgs_in;
        self.msgs_out += o.msgs_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// Counts by label, kept beside the Prometheus families (which cannot be
/// read back) for the admin `stats`.
#[derive(Debug, Clone, Default)]
pub struct Tallies {
    pub rejections: BTreeMap<&'static str, u64>,
    pub closes: BTreeMap<u16, u64>,
    pub publishes: BTreeMap<&'static str, u64>,
    pub rate_limited: BTreeMap<&'static str, u64>,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    tallies: Mutex<Tallies>,
    /// Every route a connection was accepted on, so that `connections_open`
    /// shows 0 for a route whose last connection closed.
    open_routes: Mutex<BTreeSet<String>>,
    pub connections_open: Family<RouteLabel, Gauge>,
    pub connections_accepted: Family<RouteLabel, Counter>,
    pub rejections: Family<ReasonLabel, Counter>,
    pub api_refusals: Family<ReasonLabel, Counter>,
    pub closes: Family<CodeLabel, Counter>,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub message_bytes_in: Counter,
    pub message_bytes_out: Counter,
    pub publishes: Family<SourceLabel, Counter>,
    pub slow_consumer_closes: Family<ReasonLabel, Counter>,
    pub rate_limited: Family<ActionLabel, Counter>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub rate_limited_frames: Family<ActionLabel, Counter>,
    /// The `dropped` and `closed` series of `rate_limited_frames`, held so
    /// that a flood of frames counts with one atomic add each.
    frames_dropped: Counter,
    frames_closed: Counter,
    pub memory_pressure: Gauge,
    pub pending_handshakes: Gauge,
    /// Connections and requests a listener refused before HTTP or outside
    /// what it serves.
    pub listener_refusals: Family<ListenerReasonLabel, Counter>,
    /// TLS handshakes that failed, by listener and reason.
    pub tls_handshake_failures: Family<ListenerReasonLabel, Counter>,
    /// TLS handshakes whose server name no certificate covered (they got
    /// the listener's first certificate).
    tls_sni_fallbacks: Family<ListenerLabel, Counter>,
    /// When each served certificate expires (Unix seconds).
    tls_certificate_expiry: Family<ListenerNameLabel, Gauge>,
    /// From a ping sent to the pong that answers it.
    pub ping_rtt: Histogram,
    /// The hub's publish call: serialising the frame once and offering it
    /// to every subscriber's queue.
    pub publish_fanout: Histogram,
    /// From TCP accept to the upgraded socket.
    pub handshake: Histogram,
}

/// Counts one in a family labelled by listener and reason.
fn inc_by_listener(
    family: &Family<ListenerReasonLabel, Counter>,
    listener: &str,
    reason: &'static str,
) {
    family
        .get_or_create(&ListenerReasonLabel {
            listener: listener.to_string(),
            reason,
        })
        .inc();
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts a refusal by a listener.
    pub fn listener_refused(&self, listener: &str, reason: &'static str) {
        inc_by_listener(&self.listener_refusals, listener, reason);
    }

    /// Sets the certificates in force: (listener, name, expiry in Unix
    /// seconds); certificates no longer served disappear.
    pub fn sync_certificates<'a>(&self, certs: impl Iterator<Item = (&'a str, &'a str, u64)>) {
        self.tls_certificate_expiry.clear();
        for (listener, name, expiry) in certs {
            self.tls_certificate_expiry
                .get_or_create(&ListenerNameLabel {
                    listener: listener.to_string(),
                    name: name.to_string(),
                })
                .set(i64::try_from(expiry).unwrap_or(i64::MAX));
        }
    }

    /// Counts a handshake whose server name no certificate covered.
    pub fn tls_sni_fallback(&self, listener: &str) {
        self.tls_sni_fallbacks
            .get_or_create(&ListenerLabel {
                listener: listener.to_string(),
            })
            .inc();
    }

    /// Counts a failed TLS handshake.
    pub fn tls_handshake_failed(&self, listener: &str, reason: &'static str) {
        inc_by_listener(&self.tls_handshake_failures, listener, reason);
    }

    pub fn new() -> Self {
        // The daemon's own metrics under `wsgate_`, then the process
        // metrics, which have standard names of their own.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("wsgate");
        let m = Metrics {
            connections_open: Family::default(),
            connections_accepted: Family::default(),
            rejections: Family::default(),
            api_refusals: Family::default(),
            closes: Family::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            message_bytes_in: Counter::default(),
            message_bytes_out: Counter::default(),
            publishes: Family::default(),
            slow_consumer_closes: Family::default(),
            rate_limited: Family::default(),
            config_reloads: Family::default(),
            rate_limited_frames: Family::default(),
            frames_dropped: Counter::default(),
            frames_closed: Counter::default(),
            memory_pressure: Gauge::default(),
            pending_handshakes: Gauge::default(),
            listener_refusals: Family::default(),
            tls_handshake_failures: Family::default(),
            tls_certificate_expiry: Family::default(),
            tls_sni_fallbacks: Family::default(),
            ping_rtt: Histogram::new(PING_RTT_BUCKETS),
            publish_fanout: Histogram::new(PUBLISH_FANOUT_BUCKETS),
            handshake: Histogram::new(HANDSHAKE_BUCKETS),
            registry: Registry::default(),
            tallies: Mutex::default(),
            open_routes: Mutex::default(),
        };
        registry.register(
            "connections_open",
            "WebSocket connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted (upgraded)",
            m.connections_accepted.clone(),
        );
        registry.register(
            "rejections",
            "Upgrade requests refused, by reason",
            m.rejections.clone(),
        );
        registry.register(
            "api_refusals",
            "Publish API requests refused, by reason",
            m.api_refusals.clone(),
        );
        registry.register(
            "closes",
            "Connections closed, by close code",
            m.closes.clone(),
        );
        registry.register(
            "messages_in",
            "Inbound data messages",
            m.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Outbound data messages",
            m.messages_out.clone(),
        );
        registry.register_with_unit(
            "messages_in",
            "Inbound message payload bytes",
            Unit::Bytes,
            m.message_bytes_in.clone(),
        );
        registry.register_with_unit(
            "messages_out",
            "Outbound message payload bytes",
            Unit::Bytes,
            m.message_bytes_out.clone(),
        );
        registry.register(
            "publishes",
            "Messages published to topics, by source",
            m.publishes.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed as slow consumers (4002), by reason",
            m.slow_consumer_closes.clone(),
        );
        registry.register(
            "rate_limited_messages",
            "Inbound messages over the rate limit, by action",
            m.rate_limited.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "rate_limited_frames",
            "Inbound pings, pongs and small fragments over the frame budget, by action",
            m.rate_limited_frames.clone(),
        );
        registry.register(
            "memory_pressure",
            "1 while resident memory is over max_memory (upgrades refused), else 0",
            m.memory_pressure.clone(),
        );
        registry.register(
            "pending_handshakes",
            "TCP connections accepted and not yet upgraded or closed",
            m.pending_handshakes.clone(),
        );
        registry.register(
            "listener_refusals",
            "Connections and requests a listener refused, by listener and reason",
            m.listener_refusals.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by listener and reason",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "tls_sni_fallbacks",
            "TLS handshakes whose server name no certificate covered (served the listener's first)",
            m.tls_sni_fallbacks.clone(),
        );
        registry.register_with_unit(
            "tls_certificate_expiry",
            "When each certificate a TLS listener serves expires, in seconds since the Unix epoch",
            Unit::Seconds,
            m.tls_certificate_expiry.clone(),
        );
        registry.register_with_unit(
            "ping_rtt",
            "Round trip from a ping the server sent to its pong",
            Unit::Seconds,
            m.ping_rtt.clone(),
        );
        registry.register_with_unit(
            "publish_fanout",
            "Time a publish takes to reach every subscriber's send queue",
            Unit::Seconds,
            m.publish_fanout.clone(),
        );
        registry.register_with_unit(
            "handshake",
            "Time from TCP accept to the upgraded WebSocket",
            Unit::Seconds,
            m.handshake.clone(),
        );
        wsgate_cluster::register_metrics(registry);
        // The plugins' own metrics, under the same prefix.
        for auth in crate::plugins::auths() {
            auth.register_metrics(registry);
        }
        for router in crate::plugins::routers() {
            router.register_metrics(registry);
        }
        // Every series exists from the start, at 0.
        for reason in SlowConsumer::ALL {
            m.slow_consumer_closes.get_or_create_owned(&ReasonLabel {
                reason: reason.label(),
            });
        }
        let frames_dropped = m
            .rate_limited_frames
            .get_or_create_owned(&ActionLabel { action: "dropped" });
        let frames_closed = m
            .rate_limited_frames
            .get_or_create_owned(&ActionLabel { action: "closed" });
        root.sub_registry_with_labels(std::iter::empty())
            .register_collector(Box::new(process::ProcessCollector::default()));
        Metrics {
            registry: root,
            frames_dropped,
            frames_closed,
            ..m
        }
    }

    /// Brings the traffic counters up to the registry's totals (which only
    /// grow) before they are shown.
    pub fn sync_traffic(&self, t: Traffic) {
        let _one_at_a_time = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, total) in [
            (&self.messages_in, t.msgs_in),
            (&self.messages_out, t.msgs_out),
            (&self.message_bytes_in, t.bytes_in),
            (&self.message_bytes_out, t.bytes_out),
        ] {
            let shown = counter.get();
            if total > shown {
                counter.inc_by(total - shown);
            }
        }
    }

    /// Sets `connections_open` from the connections each route has now:
    /// every route a connection was accepted on is shown, with 0 once its
    /// last connection closed.
    pub fn sync_open<'a>(&self, by_route: impl IntoIterator<Item = (&'a str, usize)>) {
        let mut now: BTreeMap<&str, usize> = by_route.into_iter().collect();
        let known = self.open_routes.lock().unwrap_or_else(|e| e.into_inner());
        for route in known.iter() {
            now.entry(route.as_str()).or_insert(0);
        }
        for (route, n) in now {
            let label = RouteLabel {
                route: route.to_string(),
            };
            self.connections_open
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A connection was admitted on `route` (counted just before the 101).
    pub fn accepted(&self, route: &str) {
        let label = RouteLabel {
            route: route.to_string(),
        };
        self.connections_accepted.get_or_create(&label).inc();
        let mut known = self.open_routes.lock().unwrap_or_else(|e| e.into_inner());
        if !known.contains(route) {
            known.insert(label.route);
        }
    }

    fn tally(&self, f: impl FnOnce(&mut Tallies)) {
        f(&mut self.tallies.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of the labelled counts.
    pub fn tallies(&self) -> Tallies {
        self.tallies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An inbound message over the rate limit (`dropped` or `closed`).
    pub fn rate_limited(&self, action: &'static str) {
        self.rate_limited
            .get_or_create(&ActionLabel { action })
            .inc();
        self.tally(|t| *t.rate_limited.entry(action).or_default() += 1);
    }

    /// A connection closed as a slow consumer.
    pub fn slow_consumer(&self, why: SlowConsumer) {
        self.slow_consumer_closes
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }

    /// Slow-consumer closes over all reasons.
    pub fn slow_consumer_total(&self) -> u64 {
        SlowConsumer::ALL
            .into_iter()
            .map(|why| {
                self.slow_consumer_closes
                    .get_or_create(&ReasonLabel {
                        reason: why.label(),
                    })
                    .get()
            })
            .sum()
    }

    /// Inbound frames over the frame budget: `dropped` ignored, `closed`
    /// (at most one per connection) ended it with 1008.
    pub fn frames_rate_limited(&self, dropped: u64, closed: bool) {
        if dropped > 0 {
            self.frames_dropped.inc_by(dropped);
        }
        if closed {
            self.frames_closed.inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The exposition in `format`.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Prometheus => exposition::to_prometheus_text(&self.render()),
        }
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
        self.tally(|t| *t.rejections.entry(reason).or_default() += 1);
    }

    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&CodeLabel { code }).inc();
        self.tally(|t| *t.closes.entry(code).or_default() += 1);
    }

    pub fn published(&self, source: &'static str) {
        self.publishes.get_or_create(&SourceLabel { source }).inc();
        self.tally(|t| *t.publishes.entry(source).or_default() += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn open_connections_show_what_the_owner_counts_and_0_once_gone() {
        let m = Metrics::new();
        m.accepted("/ws");
        m.accepted("/ws/echo");
        m.sync_open([("/ws", 2), ("/ws/echo", 1)]);
        let text = m.render();
        assert_eq!(
            line(&text, "wsgate_connections_open{route=\"/ws\"}"),
            Some("wsgate_connections_open{route=\"/ws\"} 2")
        );
        // /ws/echo's last connection closed; /ws has one left.
        m.sync_open([("/ws", 1)]);
        let text = m.render();
        assert_eq!(
            line(&text, "wsgate_connections_open{route=\"/ws/echo\"}"),
            Some("wsgate_connections_open{route=\"/ws/echo\"} 0")
        );
        assert_eq!(
            line(&text, "wsgate_connections_accepted_total{route=\"/ws\"}"),
            Some("wsgate_connections_accepted_total{route=\"/ws\"} 1")
        );
        assert_eq!(
            line(&text, "wsgate_connections_open{route=\"/other\"}"),
            None
        );
    }

    #[test]
    fn traffic_only_grows_to_the_owner_s_totals() {
        let m = Metrics::new();
        let t = Traffic {
            msgs_in: 5,
            msgs_out: 7,
            bytes_in: 100,
            bytes_out: 200,
        };
        m.sync_traffic(t);
        m.sync_traffic(t);
        assert_eq!((m.messages_in.get(), m.message_bytes_out.get()), (5, 200));
    }
}
