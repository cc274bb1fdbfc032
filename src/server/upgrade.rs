//! A WebSocket route's upgrade request, from lookup to a running connection.
//!
//! The order is cheapest first, and everything is decided before the
//! upgrade, so a refused client costs no WebSocket state:
//! route (404) → an upgrade request at all (400) → origin (403) → draining
//! (503) → memory pressure (503) → the client IP's connect bucket (429) →
//! the daemon's connect bucket (503) → authentication (401/403; 503 if it takes longer than
//! `handshake_timeout`) → WebSocket key and version (400) → caps (429/503)
//! → the router's `accept` hook (its own refusal; 504 if it takes longer
//! than `handshake_timeout`) → 101 and a connection task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};
use wsgate_plugin_api::{Accept, Identity, Refusal as RouterRefusal, Rejection, UpgradeRequest};

use super::client_ip::client_ip;
use super::reply::{self, Body};
use crate::conn::{self, Accepted, Wire};
use crate::daemon::Daemon;
use crate::edge;
use crate::registry::{Candidate, Refusal};
use crate::ws::handshake;
use wsgate_admin_proto::Event;

/// The longest part of a client's `Origin` header shown in the log, in
/// characters; longer values are cut and end with `…`.
const LOGGED_ORIGIN_CHARS: usize = 128;

/// Logs and counts a refusal, then builds its answer.
fn refuse(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    status: StatusCode,
    reason: &'static str,
    message: &str,
) -> Response<Body> {
    refuse_logging(daemon, ip, path, status, reason, message, message)
}

/// [`refuse`], with a log line that may say more than the answer.
fn refuse_logging(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    status: StatusCode,
    reason: &'static str,
    message: &str,
    logged: &str,
) -> Response<Body> {
    tracing::info!(%ip, path, status = status.as_u16(), reason, "upgrade refused: {logged}");
    answer(daemon, ip, path, status, reason, message, None)
}

/// A refusal at the door ([`crate::edge`]): logged as storms are, the first
/// in full and the rest counted.
fn refuse_at_door(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    refusal: edge::Refusal,
) -> Response<Body> {
    let status = match refusal {
        edge::Refusal::ConnectRateIp { .. } => StatusCode::TOO_MANY_REQUESTS,
        edge::Refusal::ConnectRateGlobal { .. } | edge::Refusal::MemoryPressure => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let (reason, message) = (refusal.reason(), refusal.message());
    if daemon.edge().log_refusal(refusal, ip) {
        tracing::info!(
            %ip,
            path,
            status = status.as_u16(),
            reason,
            "upgrade refused: {message} (more refusals for {reason} are counted, not logged one by one)"
        );
    }
    answer(
        daemon,
        ip,
        path,
        status,
        reason,
        message,
        refusal.retry_after(),
    )
}

/// Counts a refusal and builds its answer; 429 and 503 carry `Retry-After`
/// (`after` seconds, else the configured `retry_after`).
fn answer(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    status: StatusCode,
    reason: &'static str,
    message: &str,
    after: Option<u64>,
) -> Response<Body> {
    daemon.metrics().reject(reason);
    daemon.emit(|| Event::Rejected {
        route: path.to_string(),
        ip: ip.to_string(),
        status: status.as_u16(),
        reason: reason.to_string(),
    });
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            let after =
                after.unwrap_or_else(|| daemon.settings().config.server.retry_after.as_secs());
            reply::retry_later(status, reason, message, after)
        }
        _ => reply::error(status, reason, message),
    }
}

/// A refusal of the route's router (or an authenticator's with a body):
/// its status and reason, with wsgate's JSON refusal or the body passed
/// through.
fn refused_by_router(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    refusal: RouterRefusal,
) -> Response<Body> {
    let status = StatusCode::from_u16(refusal.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = refuse(daemon, ip, path, status, refusal.reason, &refusal.message);
    if let Some((content_type, body)) = refusal.body {
        let content_type = header::HeaderValue::from_str(&content_type)
            .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        *response.body_mut() = Body::new(body);
    }
    response
}

/// A refusal of the route's authenticator: 401 `unauthorized`, 403
/// `forbidden` (with wsgate's JSON refusal or the app's own answer), or
/// 503 `auth_unavailable` with `Retry-After`.
fn refused_by_auth(
    daemon: &Daemon,
    ip: std::net::IpAddr,
    path: &str,
    rejection: Rejection,
) -> Response<Body> {
    match rejection {
        Rejection::Unauthorized(m) => refuse(
            daemon,
            ip,
            path,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &m,
        ),
        Rejection::Forbidden(m) => refuse(daemon, ip, path, StatusCode::FORBIDDEN, "forbidden", &m),
        Rejection::Unavailable(m) => refuse(
            daemon,
            ip,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            &m,
        ),
        Rejection::Answered {
            forbidden,
            message,
            content_type,
            body,
        } => {
            let (status, reason) = if forbidden {
                (403, "forbidden")
            } else {
                (401, "unauthorized")
            };
            let mut refusal = RouterRefusal::new(status, reason, message);
            refusal.body = Some((content_type, body));
            refused_by_router(daemon, ip, path, refusal)
        }
    }
}

/// An `Origin` header as the log shows it: quoted with control and
/// non-ASCII characters escaped, at most [`LOGGED_ORIGIN_CHARS`]
/// characters of it; `none` when there is no header.
fn shown_origin(sent: Option<&[u8]>) -> String {
    let Some(bytes) = sent else {
        return "none".to_string();
    };
    let text = String::from_utf8_lossy(bytes);
    let mut cut: String = text.chars().take(LOGGED_ORIGIN_CHARS).collect();
    if text.chars().count() > LOGGED_ORIGIN_CHARS {
        cut.push('…');
    }
    format!("{:?}", cut)
}

/// Answers an upgrade request; `accepted` is when its TCP connection was
/// accepted (for `wsgate_handshake_seconds`).
pub async fn handle(
    daemon: Arc<Daemon>,
    peer: SocketAddr,
    accepted: Instant,
    secure: bool,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let settings = daemon.settings();
    let ip = client_ip(
        peer.ip(),
        req.headers(),
        &settings.config.server.trusted_proxies,
    );
    let path = req.uri().path().to_string();
    let Some(route) = settings.route(&path).cloned() else {
        return refuse(
            &daemon,
            ip,
            &path,
            StatusCode::NOT_FOUND,
            "not_found",
            "no route at this path",
        );
    };
    drop(settings);

    if !handshake::is_upgrade(&req) {
        return refuse(
            &daemon,
            ip,
            &path,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not a WebSocket upgrade request",
        );
    }

    if !route.allowed_origins.is_empty() {
        let sent = req.headers().get(header::ORIGIN);
        let origin = sent.and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| route.allowed_origins.iter().any(|a| a == o)) {
            let logged = format!(
                "origin not allowed (Origin: {})",
                shown_origin(sent.map(|v| v.as_bytes()))
            );
            return refuse_logging(
                &daemon,
                ip,
                &path,
                StatusCode::FORBIDDEN,
                "origin",
                "origin not allowed",
                &logged,
            );
        }
    }

    if daemon.is_draining() {
        return refuse(
            &daemon,
            ip,
            &path,
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "server is draining",
        );
    }

    if let Err(refusal) = daemon.edge().admit(ip) {
        return refuse_at_door(&daemon, ip, &path, refusal);
    }

    let query = req.uri().query().map(str::to_string);
    let identity = match &route.auth {
        None => Identity::anonymous(),
        Some(auth) => {
            let request = UpgradeRequest {
                path: &path,
                query: query.as_deref(),
                headers: req.headers(),
                client_ip: ip,
                secure,
                conn_id: None,
            };
            let limit = daemon.settings().config.server.handshake_timeout;
            match tokio::time::timeout(limit, auth.authenticate(&request)).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(rejection)) => return refused_by_auth(&daemon, ip, &path, rejection),
                Err(_) => {
                    return refuse(
                        &daemon,
                        ip,
                        &path,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "auth_timeout",
                        "authentication did not answer in time",
                    )
                }
            }
        }
    };

    // The handshake answer is built before admission so that a malformed
    // upgrade (bad key or version) is refused without taking a slot.
    let (mut response, upgrade) = match handshake::accept(&mut req) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("invalid WebSocket upgrade: {e}");
            return refuse(
                &daemon,
                ip,
                &path,
                StatusCode::BAD_REQUEST,
                "bad_request",
                &message,
            );
        }
    };

    let remote = match &identity.user {
        Some(user) => crate::cluster::user_conns(&daemon, &route.limits, user).await,
        None => Vec::new(),
    };
    let settings = daemon.settings();
    let route_key: Arc<str> = Arc::from(route.path.as_str());
    let admitted = daemon.registry().admit(Candidate {
        route: &route_key,
        ip,
        user: identity.user.as_ref(),
        global: settings.limits(),
        limits: &route.limits,
        remote: &remote,
    });
    let handshake_timeout = settings.config.server.handshake_timeout;
    drop(settings);
    let slot = match admitted {
        Ok(admitted) => {
            daemon.metrics().accepted(&route.path);
            if let (Some(old), Some(user)) = (&admitted.replaces, &identity.user) {
                crate::cluster::replace(&daemon, old, user);
            }
            admitted.slot
        }
        Err(refusal) => {
            let (status, message) = match refusal {
                Refusal::Total => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server connection limit reached",
                ),
                Refusal::Route => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "route connection limit reached",
                ),
                Refusal::Ip => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ),
                Refusal::User => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections for this user",
                ),
            };
            return refuse(&daemon, ip, &path, status, refusal.reason(), message);
        }
    };

    // The router's last word before the 101 (the slot is held meanwhile,
    // so that what it prepares counts against the caps).
    let mut prepared = None;
    let conn_id = slot.conn().id.to_string();
    if let Some(accept) = route.router.accept(
        &UpgradeRequest {
            path: &path,
            query: query.as_deref(),
            headers: req.headers(),
            client_ip: ip,
            secure,
            conn_id: Some(&conn_id),
        },
        &identity,
    ) {
        match tokio::time::timeout(handshake_timeout, accept).await {
            Ok(Ok(Accept {
                protocol,
                prepared: p,
            })) => {
                if let Some(protocol) = protocol {
                    match header::HeaderValue::from_str(&protocol) {
                        Ok(v) => {
                            response
                                .headers_mut()
                                .insert(header::SEC_WEBSOCKET_PROTOCOL, v);
                        }
                        Err(_) => tracing::warn!(
                            route = %route.path,
                            "the router chose a subprotocol that is not a header value; left out"
                        ),
                    }
                }
                prepared = p;
            }
            Ok(Err(refusal)) => return refused_by_router(&daemon, ip, &path, refusal),
            Err(_) => {
                return refuse(
                    &daemon,
                    ip,
                    &path,
                    StatusCode::GATEWAY_TIMEOUT,
                    "router_timeout",
                    "the route did not accept the connection in time",
                )
            }
        }
    }

    // The slot goes with the task; if the upgrade never completes, dropping
    // it frees the place.
    let task_daemon = Arc::clone(&daemon);
    daemon.spawn_connection(async move {
        let upgraded = match tokio::time::timeout(handshake_timeout, upgrade).await {
            Ok(Ok(upgraded)) => {
                task_daemon
                    .metrics()
                    .handshake
                    .observe(accepted.elapsed().as_secs_f64());
                upgraded
            }
            Ok(Err(e)) => {
                tracing::debug!(%ip, error = %e, "upgrade failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%ip, "upgrade timed out");
                return;
            }
        };
        let wire = match Wire::from_upgraded(upgraded) {
            Ok(wire) => wire,
            Err(e) => {
                tracing::error!(error = %e, "the upgraded connection cannot be served");
                return;
            }
        };
        // A task of its own, so that what waiting for the upgrade needed
        // (a timer, hyper's upgrade future) is not kept for the life of
        // the connection.
        let accepted = Box::new(Accepted {
            wire,
            slot,
            id: conn_id,
            route,
            identity,
            query,
            prepared,
        });
        let daemon = Arc::clone(&task_daemon);
        task_daemon.spawn_connection(conn::run(daemon, accepted));
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_quoted_escaped_and_cut_for_the_log() {
        assert_eq!(shown_origin(None), "none");
        assert_eq!(
            shown_origin(Some(b"https://evil.example")),
            "\"https://evil.example\""
        );
        assert_eq!(shown_origin(Some(b"a\"b\x1b[31m")), "\"a\\\"b\\u{1b}[31m\"");
        let long = "x".repeat(500);
        let shown = shown_origin(Some(long.as_bytes()));
        assert_eq!(shown.chars().count(), LOGGED_ORIGIN_CHARS + 3, "{shown}");
        assert!(shown.ends_with("…\""), "{shown}");
        assert_eq!(shown_origin(Some(&[0xff, b'a'])), "\"\u{fffd}a\"");
    }
}
