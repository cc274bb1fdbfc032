//! HTTP endpoints: health, readiness, metrics, the publish API, and the
//! WebSocket routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use wsgate_plugin_api::RawValue;

use super::reply::{self, Body};
use super::upgrade;
use super::Served;
use crate::config::schema::Service;
use crate::daemon::Daemon;
use crate::hub::Source;
use crate::metrics::{Format, ReasonLabel};

/// What a path belongs to.
fn service_of(path: &str) -> Service {
    match path {
        "/healthz" | "/readyz" => Service::Health,
        "/metrics" => Service::Metrics,
        "/api/publish" => Service::Api,
        _ => Service::Ws,
    }
}

/// `accepted` is when the TCP connection was accepted; `served`, what its
/// listener answers (anything else is 404 there).
pub async fn handle(
    daemon: Arc<Daemon>,
    peer: SocketAddr,
    accepted: Instant,
    served: &Served,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    let service = service_of(path);
    if !served.services.contains(service) {
        daemon
            .metrics()
            .listener_refused(&served.listener, "not_served");
        tracing::debug!(%peer, listener = %served.listener, path = ?path, "not served on this listener");
        return reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "nothing is served at this path on this listener",
        );
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => reply::json(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            if daemon.is_draining() {
                reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "draining"}),
                )
            } else if daemon.edge().under_memory_pressure() {
                reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "memory_pressure"}),
                )
            } else if daemon.settings().config.cluster.ready_requires_nats
                && daemon.hub().bus().is_some_and(|bus| !bus.connected())
            {
                reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "nats_unavailable"}),
                )
            } else {
                reply::json(StatusCode::OK, &json!({"status": "ready"}))
            }
        }
        (&Method::GET, "/metrics") => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let mut resp = reply::text(
                StatusCode::OK,
                format.content_type(),
                daemon.render_metrics(format),
            );
            resp.headers_mut()
                .insert(header::VARY, header::HeaderValue::from_static("accept"));
            resp
        }
        (_, "/healthz" | "/readyz" | "/metrics") => reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        (_, "/api/publish") => publish(&daemon, peer, req).await,
        _ => upgrade::handle(daemon, peer, accepted, served.tls, req).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    data: Box<RawValue>,
}

fn refuse(
    daemon: &Daemon,
    peer: SocketAddr,
    status: StatusCode,
    code: &'static str,
    message: &str,
) -> Response<Body> {
    daemon
        .metrics()
        .api_refusals
        .get_or_create(&ReasonLabel { reason: code })
        .inc();
    tracing::info!(%peer, status = status.as_u16(), reason = code, "publish refused: {message}");
    reply::error(status, code, message)
}

/// `POST /api/publish`: a backend publishes `{"topic","data"}`.
async fn publish(daemon: &Daemon, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return refuse(
            daemon,
            peer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        );
    }
    let settings = daemon.settings();
    if settings.api_keys.is_empty() {
        return refuse(
            daemon,
            peer,
            StatusCode::FORBIDDEN,
            "api_disabled",
            "the publish API is disabled: no API key is configured",
        );
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().as_bytes().to_vec());
    let Some(presented) = presented else {
        return refuse(
            daemon,
            peer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key: send `Authorization: Bearer <key>`",
        );
    };
    // Compare against every key, without stopping at a match.
    let matched = settings
        .api_keys
        .iter()
        .fold(subtle::Choice::from(0), |acc, k| {
            acc | k.0.as_bytes().ct_eq(&presented)
        });
    if !bool::from(matched) {
        return refuse(
            daemon,
            peer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid API key",
        );
    }

    let max = settings.limits().max_message_bytes;
    let timeout = settings.config.server.handshake_timeout;
    drop(settings);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = format!("body larger than max_message_bytes ({max})");
    if declared.is_some_and(|n| n > max as u64) {
        return refuse(
            daemon,
            peer,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &too_big,
        );
    }
    let body =
        match tokio::time::timeout(timeout, Limited::new(req.into_body(), max).collect()).await {
            Err(_) => {
                return refuse(
                    daemon,
                    peer,
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "request body not received in time",
                )
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return refuse(
                    daemon,
                    peer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    &too_big,
                )
            }
            Ok(Err(_)) => {
                return refuse(
                    daemon,
                    peer,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "body could not be read",
                )
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
    let body: PublishBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let message = format!("expected {{\"topic\": \"...\", \"data\": <any JSON>}}: {e}");
            return refuse(
                daemon,
                peer,
                StatusCode::BAD_REQUEST,
                "bad_request",
                &message,
            );
        }
    };
    if let Err(problem) = wsgate_plugin_api::check_topic(&body.topic) {
        return refuse(
            daemon,
            peer,
            StatusCode::BAD_REQUEST,
            "bad_request",
            &problem,
        );
    }
    let published = daemon.hub().publish(&body.topic, &body.data, Source::Api);
    let delivered = published.delivered;
    tracing::debug!(%peer, topic = %body.topic, delivered, "published");
    match published.forwarded {
        None => reply::json(StatusCode::OK, &json!({ "delivered": delivered })),
        Some(forwarded) => reply::json(
            StatusCode::OK,
            &json!({ "delivered": delivered, "forwarded": forwarded.is_queued() }),
        ),
    }
}
