//! One event posted to the backend with hyper's pooled HTTP/1 client, and
//! what came of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use wsgate_http_client::{Client, Pool, USER_AGENT};

use crate::metrics::{Event, Outcome, METRICS};
use crate::options::Options;
use crate::wire::{Answer, Malformed};

/// A route's backend: its options and its keep-alive pool.
pub struct Backend {
    pub options: Options,
    client: Client,
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
        let client = Client::new(
            options.tls.clone(),
            Pool {
                max_idle: options.pool_max_idle,
                idle_timeout: options.pool_idle_timeout,
            },
        );
        Self { options, client }
    }

    /// Posts one event's body and waits for the whole answer, within
    /// `timeout`; counted under the event and its result. With `parse`, a
    /// 2xx answer is checked and returned; without, it is read and dropped.
    pub async fn post(&self, event: Event, body: Bytes, parse: bool) -> Result<Answer, Failure> {
        let started = Instant::now();
        let result = self.exchange(body, parse).await;
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
        let limit = self.options.max_answer_bytes;
        let response = self
            .client
            .send(request, self.options.timeout, limit)
            .await
            .map_err(|e| match e {
                wsgate_http_client::Error::Timeout(t) => Failure::Timeout(t),
                wsgate_http_client::Error::Unreachable(why) => Failure::Unreachable(why),
                wsgate_http_client::Error::TooLarge(_) => {
                    Failure::Malformed(format!("the answer is over max_answer_bytes ({limit})"))
                }
            })?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Failure::Status5xx(status));
        }
        if status.is_client_error() {
            return Err(Failure::Refused(status));
        }
        if !status.is_success() {
            return Err(Failure::Malformed(format!("unexpected status {status}")));
        }
        let body = response.into_body();
        if !parse {
            return Ok(Answer::default());
        }
        Ok(Answer::parse(&body)?)
    }
}
