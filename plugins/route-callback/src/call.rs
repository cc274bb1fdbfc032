//! One event posted to the backend with hyper's pooled HTTP/1 client, and
//! what came of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::metrics::{Event, Outcome, METRICS};
use crate::options::Options;
use crate::wire::{Answer, Malformed};

/// What wsgate tells the backend it is.
const USER_AGENT: &str = concat!("wsgate/", env!("CARGO_PKG_VERSION"));

/// A route's backend: its options and its keep-alive pool.
pub struct Backend {
    pub options: Options,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why an event got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the backend answered {0}")]
    Status5xx(StatusCode),
    #[error("the backend cannot be reached: {0}")]
    Unreachable(String),
    #[error("the backend refused it ({0})")]
    Refused(StatusCode),
    #[error("the backend's answer is malformed: {0}")]
    Malformed(String),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Timeout(_) => Outcome::Timeout,
            Failure::Status5xx(_) => Outcome::Status5xx,
            Failure::Unreachable(_) => Outcome::Unreachable,
            Failure::Refused(_) => Outcome::Refused,
            Failure::Malformed(_) => Outcome::Malformed,
        }
    }
}

impl From<Malformed> for Failure {
    fn from(m: Malformed) -> Self {
        Failure::Malformed(m.0)
    }
}

impl Backend {
    /// Builds the client; nothing is dialled or spawned until the first
    /// request.
    pub fn new(options: Options) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(options.pool_max_idle)
            .pool_idle_timeout(options.pool_idle_timeout)
            .build(connector);
        Self { options, client }
    }

    /// Posts one event's body and waits for the whole answer, within
    /// `timeout`; counted under the event and its result. With `parse`, a
    /// 2xx answer is checked and returned; without, it is read and dropped.
    pub async fn post(&self, event: Event, body: Bytes, parse: bool) -> Result<Answer, Failure> {
        let started = Instant::now();
        let timeout = self.options.timeout;
        let result = tokio::time::timeout(timeout, self.exchange(body, parse))
            .await
            .unwrap_or(Err(Failure::Timeout(timeout)));
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(f) => f.outcome(),
        };
        METRICS.requested(event, outcome, started.elapsed());
        result
    }

    async fn exchange(&self, body: Bytes, parse: bool) -> Result<Answer, Failure> {
        let mut request = Request::post(self.options.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .body(Full::new(body))
            .map_err(|e| Failure::Unreachable(format!("cannot build the request: {e}")))?;
        if let Some(auth) = &self.options.authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let limit = self.options.max_answer_bytes;
        // Read whole (within the limit) so that the connection can serve
        // the next request.
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map(|b| b.to_bytes());
        if status.is_server_error() {
            return Err(Failure::Status5xx(status));
        }
        if status.is_client_error() {
            return Err(Failure::Refused(status));
        }
        if !status.is_success() {
            return Err(Failure::Malformed(format!("unexpected status {status}")));
        }
        let body = match body {
            Ok(b) => b,
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::Malformed(format!(
                    "the answer is over max_answer_bytes ({limit})"
                )))
            }
            Err(e) => return Err(Failure::Unreachable(format!("answer cut off: {e}"))),
        };
        if !parse {
            return Ok(Answer::default());
        }
        Ok(Answer::parse(&body)?)
    }
}

/// An error with its causes (hyper's own text says little: "client error
/// (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
