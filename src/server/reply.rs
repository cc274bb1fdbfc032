//! HTTP answers: every refusal is a JSON body `{"error","message"}` with
//! its status, a metric and a log line.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};

pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A refusal: `{"error": code, "message": message}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

/// A refusal that invites the client to come back later.
pub fn retry_later(
    status: StatusCode,
    code: &str,
    message: &str,
    after_secs: u64,
) -> Response<Body> {
    let mut resp = error(status, code, message);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(after_secs.max(1)),
    );
    resp
}

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
