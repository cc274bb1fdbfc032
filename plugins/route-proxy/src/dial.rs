//! Dialling the upstream before the 101: TCP (and TLS), then the upstream's
//! own WebSocket handshake, with wsgate as the client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wsgate_plugin_api::{Identity, Refusal, UpgradeRequest};

use crate::metrics::{Dial, METRICS};
use crate::options::Options;

/// The upstream's socket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An upstream that answered 101.
pub struct Dialled {
    pub stream: Stream,
    /// What the upstream sent right behind its 101.
    pub leftover: Bytes,
    /// The upstream's choice of subprotocol, for the client's 101.
    pub protocol: Option<String>,
    /// The URL dialled, for the admin table.
    pub url: Arc<str>,
}

/// Why a dial failed, and what the client is answered.
#[derive(Debug)]
enum Failure {
    /// 502: unreachable, refused, TLS or a broken answer.
    Unreachable(String),
    /// 504: `connect_timeout` passed.
    Timeout,
    /// The upstream's own refusal (4xx), passed to the client.
    Refused(StatusCode, Option<(String, Bytes)>),
}

/// Dials the upstream for one client; a failure is the client's answer.
pub async fn dial(
    options: &Options,
    request: &UpgradeRequest<'_>,
    identity: &Identity,
    max_body: usize,
) -> Result<Dialled, Refusal> {
    let started = Instant::now();
    let path = options.target.path_and_query(request.path, request.query);
    let url: Arc<str> = options.target.url(&path).into();
    let outcome = tokio::time::timeout(
        options.connect_timeout,
        handshake(options, request, identity, &path, max_body),
    )
    .await
    .unwrap_or(Err(Failure::Timeout));
    let result = match &outcome {
        Ok(_) => Dial::Ok,
        Err(Failure::Unreachable(_)) => Dial::Unreachable,
        Err(Failure::Timeout) => Dial::Timeout,
        Err(Failure::Refused(..)) => Dial::Refused,
    };
    METRICS.dialled(result, started.elapsed());
    match outcome {
        Ok((stream, leftover, protocol)) => Ok(Dialled {
            stream,
            leftover,
            protocol,
            url,
        }),
        Err(Failure::Unreachable(why)) => {
            tracing::info!(upstream = %url, error = %why, "upstream unreachable");
            Err(Refusal::new(
                StatusCode::BAD_GATEWAY.as_u16(),
                "upstream_unreachable",
                "the upstream cannot be reached",
            ))
        }
        Err(Failure::Timeout) => {
            tracing::info!(upstream = %url, timeout = ?options.connect_timeout, "upstream did not answer in time");
            Err(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT.as_u16(),
                "upstream_timeout",
                "the upstream did not answer in time",
            ))
        }
        Err(Failure::Refused(status, body)) => {
            tracing::debug!(upstream = %url, status = status.as_u16(), "upstream refused the upgrade");
            let mut refusal = Refusal::new(
                status.as_u16(),
                "upstream_refused",
                format!("the upstream refused the upgrade ({status})"),
            );
            refusal.body = body;
            Err(refusal)
        }
    }
}

async fn handshake(
    options: &Options,
    request: &UpgradeRequest<'_>,
    identity: &Identity,
    path: &str,
    max_body: usize,
) -> Result<(Stream, Bytes, Option<String>), Failure> {
    let target = &options.target;
    let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let key = websocket_key();
    let upstream_request = build_request(options, request, identity, path, &key)
        .map_err(|e| Failure::Unreachable(format!("cannot build the upstream request: {e}")))?;
    let (response, stream) = match &options.tls {
        None => {
            let (response, upgraded) = exchange(TokioIo::new(tcp), upstream_request).await?;
            let stream = match upgraded {
                Some(u) => {
                    let parts = u
                        .downcast::<TokioIo<TcpStream>>()
                        .map_err(|_| Failure::Unreachable("unexpected upgraded stream".into()))?;
                    Some((Stream::Plain(parts.io.into_inner()), parts.read_buf))
                }
                None => None,
            };
            (response, stream)
        }
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| unreachable(&e))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Unreachable(format!("TLS: {e}")))?;
            let (response, upgraded) = exchange(TokioIo::new(tls), upstream_request).await?;
            let stream = match upgraded {
                Some(u) => {
                    let parts = u
                        .downcast::<TokioIo<TlsStream<TcpStream>>>()
                        .map_err(|_| Failure::Unreachable("unexpected upgraded stream".into()))?;
                    Some((Stream::Tls(Box::new(parts.io.into_inner())), parts.read_buf))
                }
                None => None,
            };
            (response, stream)
        }
    };
    let Some((stream, leftover)) = stream else {
        return Err(refused(response, max_body).await);
    };
    let headers = response.headers();
    let accept = headers.get(header::SEC_WEBSOCKET_ACCEPT);
    if accept.map(|v| v.as_bytes())
        != Some(wsgate_ws::handshake::accept_key(key.as_bytes()).as_bytes())
    {
        return Err(Failure::Unreachable(
            "the upstream's 101 has a wrong Sec-WebSocket-Accept".into(),
        ));
    }
    if headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err(Failure::Unreachable(
            "the upstream chose an extension that was not offered".into(),
        ));
    }
    let protocol = match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        None => None,
        Some(v) => {
            let chosen = v.to_str().map_err(|e| unreachable(&e))?.trim().to_string();
            if !offered(request.headers, &chosen) {
                return Err(Failure::Unreachable(format!(
                    "the upstream chose subprotocol {chosen:?}, which the client did not offer"
                )));
            }
            Some(chosen)
        }
    };
    // hyper's read buffer is let go of: only what the upstream sent right
    // behind its 101 is kept.
    Ok((stream, Bytes::copy_from_slice(&leftover), protocol))
}

/// Sends the upgrade request on a fresh connection and waits for the
/// answer; with a 101, the upgraded connection too.
async fn exchange<I>(
    io: TokioIo<I>,
    request: Request<Empty<Bytes>>,
) -> Result<
    (
        hyper::Response<hyper::body::Incoming>,
        Option<hyper::upgrade::Upgraded>,
    ),
    Failure,
>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    // The connection is driven by a task of its own until it hands the
    // socket over (101) or the answer is read; it ends then.
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let sent = sender.send_request(request);
    drop(sender);
    let mut response = sent
        .await
        .map_err(|e| Failure::Unreachable(format!("no answer to the upgrade: {e}")))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok((response, None));
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    Ok((response, Some(upgraded)))
}

/// The upstream's answer other than 101: its 4xx goes to the client with
/// its body (at most `max_body` bytes of it); anything else is 502.
async fn refused(response: hyper::Response<hyper::body::Incoming>, max_body: usize) -> Failure {
    let status = response.status();
    if !status.is_client_error() {
        return Failure::Unreachable(format!("the upstream answered {status} to the upgrade"));
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limited = http_body_util::Limited::new(response.into_body(), max_body);
    let body = match limited.collect().await {
        Ok(b) => Some(b.to_bytes()),
        // Too long or cut off: the status alone is passed on.
        Err(_) => None,
    };
    let body = body.filter(|b| !b.is_empty()).map(|b| {
        (
            content_type.unwrap_or_else(|| "application/octet-stream".into()),
            b,
        )
    });
    Failure::Refused(status, body)
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
fn websocket_key() -> String {
    let mut raw = [0u8; 16];
    fastrand::fill(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Whether the client offered `protocol` in its `Sec-WebSocket-Protocol`.
fn offered(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == protocol)
}

/// The upstream leg's upgrade request: the WebSocket headers of its own,
/// the client's subprotocol offer, the forwarded headers, the user and the
/// client's address. No extension is offered.
fn build_request(
    options: &Options,
    request: &UpgradeRequest<'_>,
    identity: &Identity,
    path: &str,
    key: &str,
) -> Result<Request<Empty<Bytes>>, http::Error> {
    let mut builder = Request::get(path)
        .header(header::HOST, options.target.authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key);
    for value in request.headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    for name in &options.forward_headers {
        if *name == options.user_header {
            continue;
        }
        for value in request.headers.get_all(name) {
            builder = builder.header(name, value);
        }
    }
    if let Some(user) = &identity.user {
        match HeaderValue::from_str(user) {
            Ok(value) => builder = builder.header(&options.user_header, value),
            Err(_) => tracing::warn!(
                header = %options.user_header,
                "the user id is not a valid header value; the upstream is not told the user"
            ),
        }
    }
    let ip: IpAddr = request.client_ip;
    builder = builder.header("x-forwarded-for", ip.to_string()).header(
        "x-forwarded-proto",
        if request.secure { "https" } else { "http" },
    );
    builder.body(Empty::new())
}
