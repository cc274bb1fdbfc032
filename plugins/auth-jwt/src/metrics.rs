//! The `jwt` authenticator's own metrics: JWKS fetches by result, and the
//! keys held. Registered once, with the daemon's (`wsgate_jwt_*`).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a JWKS fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A usable key set was fetched (and now is the one in use).
    Ok,
    /// No answer, a bad status, a document that is not a JWK set, or one
    /// without a usable key: the last good set is kept.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Ok, Outcome::Error];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct JwtMetrics {
    refreshes: Family<ResultLabel, Counter>,
    keys: Gauge,
}

pub static METRICS: LazyLock<JwtMetrics> = LazyLock::new(|| {
    let m = JwtMetrics {
        refreshes: Family::default(),
        keys: Gauge::default(),
    };
    // Every series exists from the start, at 0.
    for outcome in Outcome::ALL {
        m.refreshes.get_or_create_owned(&ResultLabel {
            result: outcome.label(),
        });
    }
    m
});

impl JwtMetrics {
    /// Counts one JWKS fetch: the first one when a config is loaded, the
    /// periodic ones and those an unknown `kid` causes.
    pub fn fetched(&self, outcome: Outcome) {
        self.refreshes
            .get_or_create(&ResultLabel {
                result: outcome.label(),
            })
            .inc();
    }

    /// Sets the number of keys held (see [`crate::jwks`] for what counts).
    pub fn set_keys(&self, keys: usize) {
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "jwt_jwks_refreshes",
            "JWKS fetches of jwt authenticators (at config load, periodic, and on an unknown kid), by result",
            self.refreshes.clone(),
        );
        registry.register(
            "jwt_jwks_keys",
            "Signature keys in the last good JWKS of each jwks_url in use, summed",
            self.keys.clone(),
        );
    }
}
