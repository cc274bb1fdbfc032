//! `raw-echo`: the benchmark reference server, "the physical limit of our
//! stack on this machine".
//!
//! It is written directly on tokio + hyper 1 + fastwebsockets and serves the
//! same URL/API shape as wsgate, so one load generator drives both and
//! wsgate's overhead is reported as a ratio against this server in the same
//! run:
//!
//! - `GET /ws/echo`: WebSocket echo of every text/binary message.
//! - `GET /ws?topics=a,b`: WebSocket subscribed to the listed topics (no JSON
//!   protocol, no welcome; incoming frames are read and discarded).
//! - `POST /api/publish` `{"topic":"a","data":<any JSON>}`: sends
//!   `{"type":"message","topic":"a","data":<data>}` to every subscriber and
//!   answers `{"delivered":N}`.
//! - `GET /healthz`: 200. Anything else: 404.
//!
//! It deliberately has NO limits (connections, rates, body or queue sizes;
//! only fastwebsockets' 64 MiB message cap), no auth, no config, no metrics
//! and no plugins: anything it did beyond moving bytes would be overhead
//! counted in the baseline instead of in wsgate. Never expose it to a
//! network you do not control. Query values are not percent-decoded.
//!
//! With `--tls-cert FILE --tls-key FILE` (PEM) it serves all of this over
//! TLS instead (`wss://`, `https://`): rustls with the ring provider, ALPN
//! `http/1.1`, the same hyper + fastwebsockets stack over the TLS stream, so
//! that TLS idle memory and throughput compare with the daemon's. Over TLS
//! the writes are pushed out of the session: a subscriber's writer flushes
//! when its queue is empty, and a read first flushes what a write left
//! behind (see [`FlushOnRead`]); the plain path is unchanged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_rustls::TlsAcceptor;

const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// What a subscriber's writer task sends: a published message (the JSON
/// text, shared by all subscribers) or a pong/close owed by the reader.
enum Out {
    Message(Bytes),
    Control(Frame<'static>),
}

/// A topic's subscribers: (connection id, queue of its writer task).
type Subscribers = Vec<(u64, UnboundedSender<Out>)>;

/// Topic name -> subscribers.
#[derive(Default)]
struct Hub {
    topics: RwLock<HashMap<String, Subscribers>>,
    next_id: AtomicU64,
}

/// A connection's subscriptions; removed from the hub when dropped.
struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    topics: Vec<String>,
}

impl Subscription {
    fn new(hub: Arc<Hub>, topics: Vec<String>, tx: &UnboundedSender<Out>) -> Self {
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = hub.topics.write().unwrap_or_else(PoisonError::into_inner);
        for topic in &topics {
            map.entry(topic.clone()).or_default().push((id, tx.clone()));
        }
        drop(map);
        Self { hub, id, topics }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self
            .hub
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for topic in &self.topics {
            if let Some(subs) = map.get_mut(topic) {
                subs.retain(|(id, _)| *id != self.id);
                if subs.is_empty() {
                    map.remove(topic);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Publish<'a> {
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Serialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    data: &'a RawValue,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// `tls`: the connection is a TLS session, whose writes must be flushed.
async fn handle(mut req: Request<Incoming>, hub: Arc<Hub>, tls: bool) -> Result<Resp, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "ok\n"),
        (&Method::GET, "/ws/echo") => match upgrade::upgrade(&mut req) {
            Ok((resp, fut)) => {
                tokio::spawn(async move {
                    let _ = echo(fut, tls).await;
                });
                resp.map(|_| Full::default())
            }
            Err(_) => respond(StatusCode::BAD_REQUEST, ""),
        },
        (&Method::GET, "/ws") => match upgrade::upgrade(&mut req) {
            Ok((resp, fut)) => {
                let mut topics: Vec<String> = req
                    .uri()
                    .query()
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .filter_map(|pair| pair.strip_prefix("topics="))
                    .flat_map(|v| v.split(','))
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
                topics.sort_unstable();
                topics.dedup();
                // Registered before the 101 goes out, so a publish that
                // follows the handshake always reaches this connection.
                let (tx, rx) = mpsc::unbounded_channel();
                let sub = Subscription::new(hub, topics, &tx);
                tokio::spawn(async move {
                    let _ = subscriber(fut, sub, tx, rx, tls).await;
                });
                resp.map(|_| Full::default())
            }
            Err(_) => respond(StatusCode::BAD_REQUEST, ""),
        },
        (&Method::POST, "/api/publish") => publish(req, &hub).await,
        _ => respond(StatusCode::NOT_FOUND, ""),
    };
    Ok(resp)
}

async fn publish(req: Request<Incoming>, hub: &Hub) -> Resp {
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, "");
    };
    let Ok(p) = serde_json::from_slice::<Publish>(&body) else {
        return respond(StatusCode::BAD_REQUEST, "bad publish body\n");
    };
    let msg = Message {
        kind: "message",
        topic: &p.topic,
        data: p.data,
    };
    let Ok(frame) = serde_json::to_vec(&msg).map(Bytes::from) else {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, "");
    };
    let delivered = {
        let map = hub.topics.read().unwrap_or_else(PoisonError::into_inner);
        map.get(p.topic.as_ref()).map_or(0, |subs| {
            subs.iter()
                .filter(|(_, tx)| tx.send(Out::Message(frame.clone())).is_ok())
                .count()
        })
    };
    let mut resp = respond(StatusCode::OK, format!("{{\"delivered\":{delivered}}}"));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    resp
}

/// Echoes until the close. Over TLS the next read flushes each echo (see
/// [`FlushOnRead`]), and the end is a close_notify after the close reply.
async fn echo(fut: UpgradeFut, tls: bool) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close if tls => {
                let _ = ws.into_inner().shutdown().await;
                return Ok(());
            }
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// Reads (and discards) in this task; a writer task owns the write half and
/// drains the connection's queue, so no socket is awaited by a publisher and
/// `read_frame` (not cancel-safe) is never raced in a `select!`.
async fn subscriber(
    fut: UpgradeFut,
    sub: Subscription,
    tx: UnboundedSender<Out>,
    rx: UnboundedReceiver<Out>,
    tls: bool,
) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    let (read, write) = ws.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let writer = tokio::spawn(writer(write, rx, tls));

    let mut obligated = |frame: Frame<'static>| {
        let sent = tx
            .send(Out::Control(frame))
            .map_err(|_| WebSocketError::ConnectionClosed);
        std::future::ready(sent)
    };
    let result = loop {
        match read.read_frame(&mut obligated).await {
            Ok(frame) if frame.opcode == OpCode::Close => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    // Unsubscribe and drop our sender: once its queue is drained the writer
    // sees the channel closed and exits, closing the socket.
    drop(sub);
    drop(tx);
    let _ = writer.await;
    result
}

/// Over TLS (`tls`), flushes whenever the queue is empty: a burst of
/// messages goes out in as few records' flushes as it can.
async fn writer<W>(
    mut ws: fastwebsockets::WebSocketWrite<W>,
    mut rx: UnboundedReceiver<Out>,
    tls: bool,
) -> Result<(), WebSocketError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(out) = rx.recv().await {
        let frame = match &out {
            Out::Message(text) => Frame::text(Payload::Borrowed(text)),
            Out::Control(frame) => {
                Frame::new(true, frame.opcode, None, Payload::Borrowed(&frame.payload))
            }
        };
        let closing = frame.opcode == OpCode::Close;
        ws.write_frame(frame).await?;
        if closing {
            break;
        }
        if tls && rx.is_empty() {
            ws.flush().await?;
        }
    }
    ws.flush().await
}

/// A server TLS session whose reads first push out what earlier writes
/// left in it. tokio-rustls writes records to the socket as it takes
/// plaintext, but a full socket buffer leaves them in the session until a
/// flush, and fastwebsockets never flushes after a frame (the echo path's
/// `FragmentCollector` cannot). Every echo connection reads after it
/// writes, so the read is where they go out.
struct FlushOnRead(tokio_rustls::server::TlsStream<TcpStream>);

impl AsyncRead for FlushOnRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tls = &mut self.get_mut().0;
        if tls.get_ref().1.wants_write() {
            if let Poll::Ready(Err(e)) = Pin::new(&mut *tls).poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlushOnRead {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The TLS configuration from PEM files: the certificate chain (leaf
/// first) and its private key; ring provider, ALPN `http/1.1`.
fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE in the file",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves HTTP/1.1 (and its upgrades) on one connection.
async fn serve<I>(io: I, hub: Arc<Hub>, tls: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, hub.clone(), tls));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// The command line.
struct Opts {
    listen: SocketAddr,
    /// `--tls-cert` and `--tls-key`, both or neither.
    tls: Option<(PathBuf, PathBuf)>,
}

fn parse_args() -> Opts {
    let usage = "usage: raw-echo [--listen ADDR] [--tls-cert FILE --tls-key FILE]\n  \
                 --listen ADDR    default 127.0.0.1:9100\n  \
                 --tls-cert FILE  PEM certificate chain, leaf first: serve wss:// and https://\n  \
                 --tls-key FILE   PEM private key of the certificate";
    let mut listen = String::from("127.0.0.1:9100");
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| fail(usage))
        };
        match name.as_str() {
            "--listen" | "-l" => listen = value(),
            "--tls-cert" => cert = Some(PathBuf::from(value())),
            "--tls-key" => key = Some(PathBuf::from(value())),
            "--help" | "-h" => {
                println!("{usage}");
                std::process::exit(0);
            }
            _ => fail(usage),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => fail("--tls-cert and --tls-key go together"),
    };
    let listen = listen
        .parse()
        .unwrap_or_else(|e| fail(&format!("bad --listen {listen:?}: {e}")));
    Opts { listen, tls }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let opts = parse_args();
    let acceptor = opts.tls.as_ref().map(|(cert, key)| {
        TlsAcceptor::from(Arc::new(tls_config(cert, key).unwrap_or_else(|e| fail(&e))))
    });
    let listener = TcpListener::bind(opts.listen)
        .await
        .expect("bind --listen address");
    eprintln!(
        "listening on {}{}",
        listener.local_addr().expect("local address"),
        if acceptor.is_some() { " (TLS)" } else { "" }
    );
    let hub = Arc::new(Hub::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        match &acceptor {
            None => {
                tokio::spawn(serve(stream, hub, false));
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, never in
                // the accept loop.
                let accept = acceptor.accept(stream);
                tokio::spawn(async move {
                    if let Ok(tls) = accept.await {
                        serve(FlushOnRead(tls), hub, true).await;
                    }
                });
            }
        }
    }
}
