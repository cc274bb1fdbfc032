//! The proxy's own metrics: upstream dials by result, and how long they
//! take. Registered once, with the daemon's (`wsgate_proxy_*`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The buckets of `wsgate_proxy_dial_seconds`: a loopback dial takes well
/// under a millisecond, a remote one tens, a timeout seconds.
const DIAL_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    /// The upstream answered 101.
    Ok,
    /// Refused, unreachable, a TLS failure or a broken answer (502).
    Unreachable,
    /// `connect_timeout` passed (504).
    Timeout,
    /// The upstream answered the upgrade with a 4xx of its own.
    Refused,
}

impl Dial {
    const ALL: [Dial; 4] = [Dial::Ok, Dial::Unreachable, Dial::Timeout, Dial::Refused];

    fn label(self) -> &'static str {
        match self {
            Dial::Ok => "ok",
            Dial::Unreachable => "unreachable",
            Dial::Timeout => "timeout",
            Dial::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct ProxyMetrics {
    dials: Family<ResultLabel, Counter>,
    dial_seconds: Histogram,
}

pub static METRICS: LazyLock<ProxyMetrics> = LazyLock::new(|| {
    let m = ProxyMetrics {
        dials: Family::default(),
        dial_seconds: Histogram::new(DIAL_BUCKETS),
    };
    // Every series exists from the start, at 0.
    for d in Dial::ALL {
        m.dials
            .get_or_create_owned(&ResultLabel { result: d.label() });
    }
    m
});

impl ProxyMetrics {
    pub fn dialled(&self, result: Dial, took: Duration) {
        self.dials
            .get_or_create(&ResultLabel {
                result: result.label(),
            })
            .inc();
        self.dial_seconds.observe(took.as_secs_f64());
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "proxy_upstream_dials",
            "Upstream dials of proxy routes, by result",
            self.dials.clone(),
        );
        registry.register_with_unit(
            "proxy_upstream_dial",
            "Time from the start of an upstream dial to its 101 or failure",
            Unit::Seconds,
            self.dial_seconds.clone(),
        );
    }
}
