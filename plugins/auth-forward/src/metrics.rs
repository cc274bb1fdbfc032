//! The `forward` authenticator's own metrics: calls to the app by result,
//! how long they take, and cache lookups. Registered once, with the
//! daemon's (`wsgate_forward_auth_*`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The buckets of `wsgate_forward_auth_call_seconds`: an app on loopback
/// answers in a millisecond or less, one with a session store in tens, a
/// timeout in seconds.
const CALL_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How a call to the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx with the identity the options read from it.
    Ok,
    /// A 401: the client is refused.
    Unauthorized,
    /// A 403: the client is refused.
    Forbidden,
    /// Another status (a 5xx, a 404 of a wrong URL, ...): an outage.
    ErrorStatus,
    /// No whole answer within `timeout`.
    Timeout,
    /// No connection, or it broke before the answer was read.
    Unreachable,
    /// A 2xx without the user or claims where the options look for them,
    /// or an answer over `max_answer_bytes`.
    Malformed,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::ErrorStatus,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::ErrorStatus => "error_status",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::Malformed => "malformed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct ForwardMetrics {
    calls: Family<ResultLabel, Counter>,
    seconds: Histogram,
    cache: Family<ResultLabel, Counter>,
}

pub static METRICS: LazyLock<ForwardMetrics> = LazyLock::new(|| {
    let m = ForwardMetrics {
        calls: Family::default(),
        seconds: Histogram::new(CALL_BUCKETS),
        cache: Family::default(),
    };
    // Every series exists from the start, at 0.
    for outcome in Outcome::ALL {
        m.calls.get_or_create_owned(&ResultLabel {
            result: outcome.label(),
        });
    }
    for result in ["hit", "miss"] {
        m.cache.get_or_create_owned(&ResultLabel { result });
    }
    m
});

impl ForwardMetrics {
    pub fn called(&self, outcome: Outcome, took: Duration) {
        self.calls
            .get_or_create(&ResultLabel {
                result: outcome.label(),
            })
            .inc();
        self.seconds.observe(took.as_secs_f64());
    }

    pub fn looked_up(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "forward_auth_calls",
            "Calls of forward authenticators to their app, by result",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "forward_auth_call",
            "Time a forward authenticator's call to its app takes",
            Unit::Seconds,
            self.seconds.clone(),
        );
        registry.register(
            "forward_auth_cache",
            "Lookups in forward authenticators' answer caches, by result (hit or miss)",
            self.cache.clone(),
        );
    }
}
