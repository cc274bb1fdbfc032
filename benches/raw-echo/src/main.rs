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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

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
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

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

async fn handle(mut req: Request<Incoming>, hub: Arc<Hub>) -> Result<Resp, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "ok\n"),
        (&Method::GET, "/ws/echo") => match upgrade::upgrade(&mut req) {
            Ok((resp, fut)) => {
                tokio::spawn(async move {
                    let _ = echo(fut).await;
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
                    let _ = subscriber(fut, sub, tx, rx).await;
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

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
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
) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    let (read, write) = ws.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let writer = tokio::spawn(writer(write, rx));

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

async fn writer<W>(
    mut ws: fastwebsockets::WebSocketWrite<W>,
    mut rx: UnboundedReceiver<Out>,
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
    }
    ws.flush().await
}

fn parse_args() -> SocketAddr {
    let usage = "usage: raw-echo [--listen ADDR]   (default 127.0.0.1:9100)";
    let mut listen = String::from("127.0.0.1:9100");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "-l" => match args.next() {
                Some(v) => listen = v,
                None => fail(usage),
            },
            "--help" | "-h" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => match other.strip_prefix("--listen=") {
                Some(v) => listen = v.to_owned(),
                None => fail(usage),
            },
        }
    }
    listen
        .parse()
        .unwrap_or_else(|e| fail(&format!("bad --listen {listen:?}: {e}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let addr = parse_args();
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind --listen address");
    eprintln!(
        "listening on {}",
        listener.local_addr().expect("local address")
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
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, hub.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
