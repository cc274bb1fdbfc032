//! The fanout publisher: `POST /api/publish` over one keep-alive HTTP/1.1
//! connection (hyper's client), one request at a time, each answered
//! `{"delivered":N}`. The connection is opened again only when the server
//! has closed it between two requests (wsgate closes idle keep-alive
//! connections after its handshake_timeout), so no publish is ever sent
//! twice. An `https://` API runs over TLS (see [`crate::tls`]).

use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::stream::Stream;
use super::target::Target;
use super::tls::Tls;

/// A publisher connection.
pub struct Publisher {
    target: Target,
    addr: SocketAddr,
    key: Option<String>,
    tls: Option<Tls>,
    sender: SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
}

#[derive(Deserialize)]
struct Answer {
    delivered: u64,
}

/// Opens an HTTP/1.1 connection; its driver runs as a task.
async fn open(
    addr: SocketAddr,
    tls: Option<&Tls>,
) -> anyhow::Result<(SendRequest<Full<Bytes>>, tokio::task::JoinHandle<()>)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the publish API at {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(tls) => Stream::Tls(Box::new(tls.connect(stream).await.with_context(|| {
            format!("TLS handshake with the publish API at {addr} failed")
        })?)),
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the publish API")?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, connection))
}

impl Publisher {
    pub async fn connect(
        target: &Target,
        addr: SocketAddr,
        key: Option<&str>,
        tls: Option<Tls>,
    ) -> anyhow::Result<Publisher> {
        let (sender, connection) = open(addr, tls.as_ref()).await?;
        Ok(Publisher {
            target: target.clone(),
            addr,
            key: key.map(str::to_string),
            tls,
            sender,
            connection,
        })
    }

    /// Publishes one body; returns the `delivered` count of the answer.
    pub async fn publish(&mut self, body: String) -> anyhow::Result<u64> {
        if self.sender.is_closed() {
            let (sender, connection) = open(self.addr, self.tls.as_ref()).await?;
            self.connection.abort();
            (self.sender, self.connection) = (sender, connection);
        }
        self.sender
            .ready()
            .await
            .context("the publish API connection closed")?;
        let mut request = hyper::Request::post(self.target.path_and_query.as_str())
            .header(hyper::header::HOST, self.target.host_header.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .context("cannot build the publish request")?;
        let answer = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("POST {} failed", self.target.url))?;
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .context("cannot read the publish answer")?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let hint = match status.as_u16() {
                401 | 403 => " (check --key and the target's [api] keys)",
                _ => "",
            };
            bail!(
                "POST {} answered {status}{hint}: {}",
                self.target.url,
                text.trim()
            );
        }
        let answer: Answer = serde_json::from_slice(&body).with_context(|| {
            format!(
                "the publish answer has no `delivered` count: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        Ok(answer.delivered)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
