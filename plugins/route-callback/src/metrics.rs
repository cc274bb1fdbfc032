//! The callback router's own metrics: requests to the backend by event and
//! result, and how long they take. Registered once, with the daemon's
//! (`wsgate_callback_*`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The buckets of `wsgate_callback_request_seconds`: a backend on loopback
/// answers in a millisecond or less, a busy one in tens or hundreds, a
/// timeout in seconds.
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a request to the backend was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Open,
    Message,
    Close,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Open, Event::Message, Event::Close];

    /// The name in the `events` option, the event bodies and the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Event::Open => "open",
            Event::Message => "message",
            Event::Close => "close",
        }
    }
}

/// How a request to the backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx with a usable answer.
    Ok,
    /// No whole answer within `timeout`.
    Timeout,
    /// A 5xx.
    Status5xx,
    /// No connection, or it broke before the answer was read.
    Unreachable,
    /// A 4xx.
    Refused,
    /// Another status, an answer that is not a valid one, or one over
    /// `max_answer_bytes`.
    Malformed,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Timeout,
        Outcome::Status5xx,
        Outcome::Unreachable,
        Outcome::Refused,
        Outcome::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Status5xx => "status_5xx",
            Outcome::Unreachable => "unreachable",
            Outcome::Refused => "refused",
            Outcome::Malformed => "malformed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    event: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

pub struct CallbackMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<EventLabel, Histogram>,
}

pub static METRICS: LazyLock<CallbackMetrics> = LazyLock::new(|| {
    let m = CallbackMetrics {
        requests: Family::default(),
        seconds: Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)),
    };
    // Every series exists from the start, at 0.
    for event in Event::ALL {
        for result in Outcome::ALL {
            m.requests.get_or_create_owned(&RequestLabels {
                event: event.label(),
                result: result.label(),
            });
        }
        m.seconds.get_or_create_owned(&EventLabel {
            event: event.label(),
        });
    }
    m
});

impl CallbackMetrics {
    pub fn requested(&self, event: Event, result: Outcome, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                event: event.label(),
                result: result.label(),
            })
            .inc();
        self.seconds
            .get_or_create(&EventLabel {
                event: event.label(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "callback_requests",
            "Requests of callback routes to their backend, by event and result",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "callback_request",
            "Time from the start of a callback request to its whole answer or failure, by event",
            Unit::Seconds,
            self.seconds.clone(),
        );
    }
}
