//! A typed async client of the admin socket: one method per command, and a
//! [`Watch`] that yields the events of a `watch` stream one by one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::event::Event;
use crate::request::{Command, Filter, Request, Scope, SortKey};
use crate::response::{ErrorBody, Response};
use crate::results::{
    ClusterResult, ConfigResult, ConnDetail, ConnRow, DrainResult, EvictPreview, EvictResult,
    PublishResult, ReloadResult, Stats, WatchAck,
};
use crate::spec::{ListSpec, WatchSpec};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin socket {}", .path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin socket")]
    Io(#[from] std::io::Error),
    /// The daemon answered with an error; shown as `code: message`.
    #[error("{}: {}", .0.code, .0.message)]
    Daemon(ErrorBody),
    #[error("the daemon closed the connection")]
    Closed,
    /// A line that is not the answer or event it should be.
    #[error("unreadable answer: {0}")]
    Protocol(String),
}

/// A connection to the admin socket. Requests are sent one at a time; each
/// method waits for its answer.
pub struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    next_id: u64,
}

/// Which connections `evict` closes, and with what reason: the arguments of
/// [`Command::Evict`] but `dry_run`. The daemon checks them (`conn` and a
/// filter together are refused, and so is an empty selection without `all`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Eviction {
    pub conn: Option<u64>,
    pub filter: Filter,
    /// The close reason (default: "evicted by an operator").
    pub reason: Option<String>,
    /// Needed to evict with an empty selection, i.e. everyone.
    pub all: bool,
}

impl Eviction {
    /// One connection, by id.
    pub fn conn(id: u64) -> Self {
        Self {
            conn: Some(id),
            ..Self::default()
        }
    }

    /// Every connection the filter selects.
    pub fn matching(filter: Filter) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// Every connection.
    pub fn everyone() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    pub fn with_reason(self, reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..self
        }
    }

    /// The `evict` command (with `dry_run`: what it would close).
    pub fn command(self, dry_run: bool) -> Command {
        Command::Evict {
            conn: self.conn,
            filter: self.filter,
            reason: self.reason,
            dry_run,
            all: self.all,
        }
    }
}

impl Client {
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::from_stream(stream))
    }

    /// A client over a stream that is already connected.
    pub fn from_stream(stream: UnixStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            lines: BufReader::new(read).lines(),
            write,
            next_id: 1,
        }
    }

    /// Counters, limits in force and their use, the last reload.
    pub async fn stats(&mut self) -> Result<Stats, ClientError> {
        self.request(Command::Stats {}).await
    }

    /// Live connections: filtered, sorted (largest first; by id when
    /// `None`), at most `limit`. [`Client::list_with`] takes an order and
    /// an offset too.
    pub async fn list(
        &mut self,
        filter: Filter,
        sort: Option<SortKey>,
        limit: Option<usize>,
    ) -> Result<Vec<ConnRow>, ClientError> {
        self.list_with(ListSpec {
            filter,
            sort,
            limit,
            ..ListSpec::default()
        })
        .await
    }

    /// Live connections: filtered, sorted, and the window `offset`..
    /// `offset + limit` of the sorted rows.
    pub async fn list_with(&mut self, spec: ListSpec) -> Result<Vec<ConnRow>, ClientError> {
        self.request(spec.command()).await
    }

    /// One connection with its topics.
    pub async fn show(&mut self, conn: u64) -> Result<ConnDetail, ClientError> {
        self.request(Command::Show { conn }).await
    }

    /// Closes connections with 4000.
    pub async fn evict(&mut self, which: Eviction) -> Result<EvictResult, ClientError> {
        self.request(which.command(false)).await
    }

    /// The connections [`Client::evict`] would close; closes none.
    pub async fn evict_preview(&mut self, which: Eviction) -> Result<EvictPreview, ClientError> {
        self.request(which.command(true)).await
    }

    /// Reloads the config file (or, `dry_run`, reports what it would do).
    pub async fn reload(&mut self, dry_run: bool) -> Result<ReloadResult, ClientError> {
        self.request(Command::Reload { dry_run }).await
    }

    /// Starts the drain; the daemon exits when it is over. `timeout` is a
    /// duration such as `"10s"` (default: the daemon's `drain_timeout`).
    pub async fn drain(&mut self, timeout: Option<&str>) -> Result<DrainResult, ClientError> {
        let timeout = timeout.map(str::to_string);
        self.request(Command::Drain { timeout }).await
    }

    /// Publishes `data` to a topic, like the HTTP API.
    pub async fn publish(
        &mut self,
        topic: &str,
        data: Value,
    ) -> Result<PublishResult, ClientError> {
        let topic = topic.to_string();
        self.request(Command::Publish { topic, data }).await
    }

    /// The effective config, secrets redacted.
    pub async fn config(&mut self) -> Result<ConfigResult, ClientError> {
        self.request(Command::Config {}).await
    }

    /// Turns the connection into a `watch` stream: a snapshot of every
    /// connection every `interval` (default one second; whole
    /// milliseconds) and every event. Shorthand for [`Client::watch_with`].
    pub async fn watch(self, interval: Option<Duration>) -> Result<Watch, ClientError> {
        self.watch_with(WatchSpec {
            interval,
            ..WatchSpec::default()
        })
        .await
    }

    /// Turns the connection into a `watch` stream whose snapshots show the
    /// window of connections `spec` selects, with their rates.
    pub async fn watch_with(mut self, spec: WatchSpec) -> Result<Watch, ClientError> {
        let WatchAck { .. } = self.request(spec.command()).await?;
        Ok(Watch {
            lines: self.lines,
            write: self.write,
            next_id: self.next_id,
        })
    }

    /// Sends one command and reads its result as `T`.
    /// Runs `command` on every node of the daemon's cluster (`stats`,
    /// `list`, `evict` by filter): each node's answer, as JSON.
    pub async fn cluster(&mut self, command: Command) -> Result<ClusterResult, ClientError> {
        let result = self.call(command, Scope::Cluster).await?;
        serde_json::from_value(result).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn request<T: DeserializeOwned>(&mut self, command: Command) -> Result<T, ClientError> {
        let result = self.call(command, Scope::Node).await?;
        serde_json::from_value(result).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends one command and returns its result as JSON.
    async fn call(&mut self, command: Command, scope: Scope) -> Result<Value, ClientError> {
        let line = request_line(&mut self.next_id, command, scope)?;
        // A refusal may already be waiting when the write fails (the daemon
        // answers a refused peer at once): read it before giving up.
        let written = self.write.write_all(line.as_bytes()).await;
        let answer = match (written, next_line(&mut self.lines).await) {
            (_, Ok(answer)) => answer,
            (Err(e), Err(_)) => return Err(e.into()),
            (Ok(()), Err(e)) => return Err(e),
        };
        let response: Response =
            serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match (response.ok, response.result, response.error) {
            (true, Some(result), _) => Ok(result),
            (_, _, Some(error)) => Err(ClientError::Daemon(error)),
            _ => Err(ClientError::Protocol(answer)),
        }
    }
}

/// The request line for `command`, with the next id.
fn request_line(next_id: &mut u64, command: Command, scope: Scope) -> Result<String, ClientError> {
    let id = *next_id;
    *next_id += 1;
    let mut line = serde_json::to_string(&Request {
        id: Some(Value::from(id)),
        scope,
        command,
    })
    .map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    Ok(line)
}

/// A `watch` stream, after the daemon's first answer. It ends when the
/// daemon stops ([`ClientError::Closed`]).
pub struct Watch {
    lines: Lines<BufReader<OwnedReadHalf>>,
    /// Carries updates of the view; closing it would tell the daemon we
    /// are gone.
    write: OwnedWriteHalf,
    next_id: u64,
}

impl Watch {
    /// Replaces the view of this watch: the daemon answers on the stream
    /// (which [`Watch::next`] skips) and sends a snapshot of the new window
    /// at once; no event is lost meanwhile. A refused update (a bad filter)
    /// is a [`ClientError::Daemon`] from `next`, and the old view stays.
    /// Not cancel-safe: dropped halfway, it may leave half a line written.
    pub async fn update(&mut self, spec: WatchSpec) -> Result<(), ClientError> {
        let line = request_line(&mut self.next_id, spec.command(), Scope::Node)?;
        self.write.write_all(line.as_bytes()).await?;
        Ok(())
    }

    /// The next event; the answers to [`Watch::update`] are skipped, or
    /// returned as [`ClientError::Daemon`] when they are errors. A line
    /// that is no event this crate knows is a [`ClientError::Protocol`].
    /// The stream goes on after either error. Cancel-safe: it may be a
    /// branch of a `select!` (whose handler may then call
    /// [`Watch::update`]); a line is either returned or left unread.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        loop {
            let line = self.next_line().await?;
            let not_an_event = match serde_json::from_str::<Event>(&line) {
                Ok(event) => return Ok(event),
                Err(e) => e,
            };
            match serde_json::from_str::<Response>(&line) {
                Ok(Response { ok: true, .. }) => continue,
                Ok(Response {
                    error: Some(error), ..
                }) => return Err(ClientError::Daemon(error)),
                _ => return Err(ClientError::Protocol(format!("{not_an_event}: {line}"))),
            }
        }
    }

    /// The next line as the daemon wrote it (for printing it verbatim),
    /// answers to updates included.
    pub async fn next_line(&mut self) -> Result<String, ClientError> {
        next_line(&mut self.lines).await
    }
}

async fn next_line(lines: &mut Lines<BufReader<OwnedReadHalf>>) -> Result<String, ClientError> {
    lines.next_line().await?.ok_or(ClientError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code;
    use crate::request::Order;
    use serde_json::json;

    /// A client and the daemon's end of its socket.
    fn pair() -> (Client, Lines<BufReader<UnixStream>>) {
        let (a, b) = UnixStream::pair().expect("socket pair");
        (Client::from_stream(a), BufReader::new(b).lines())
    }

    async fn expect_request(daemon: &mut Lines<BufReader<UnixStream>>) -> Value {
        let line = daemon.next_line().await.expect("read").expect("a line");
        serde_json::from_str(&line).expect("JSON")
    }

    async fn answer(daemon: &mut Lines<BufReader<UnixStream>>, line: &str) {
        let stream = daemon.get_mut().get_mut();
        stream.write_all(line.as_bytes()).await.expect("write");
        stream.write_all(b"\n").await.expect("write");
    }

    #[tokio::test]
    async fn typed_calls_send_the_documented_requests() {
        let (mut client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 1, "cmd": "publish", "topic": "news", "data": {"a": 1}})
            );
            answer(
                &mut daemon,
                r#"{"id":1,"ok":true,"result":{"delivered":3}}"#,
            )
            .await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 2, "cmd": "evict", "filter": {"user": "alice"}, "reason": "abuse", "dry_run": false, "all": false})
            );
            answer(
                &mut daemon,
                r#"{"id":2,"ok":true,"result":{"evicted":2,"ids":[2,1]}}"#,
            )
            .await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 3, "cmd": "list", "filter": {}, "sort": "idle", "limit": 1})
            );
            answer(&mut daemon, r#"{"id":3,"ok":true,"result":[]}"#).await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(r, json!({"id": 4, "cmd": "drain", "timeout": "5s"}));
            answer(
                &mut daemon,
                r#"{"id":4,"ok":true,"result":{"draining":true}}"#,
            )
            .await;
        });
        let published = client
            .publish("news", json!({"a": 1}))
            .await
            .expect("publish");
        assert_eq!(published, PublishResult { delivered: 3 });
        let filter = Filter {
            user: Some("alice".into()),
            ..Filter::default()
        };
        let evicted = client
            .evict(Eviction::matching(filter).with_reason("abuse"))
            .await
            .expect("evict");
        assert_eq!(evicted, EvictResult::new(vec![2, 1]));
        let rows = client
            .list(Filter::default(), Some(SortKey::Idle), Some(1))
            .await;
        assert_eq!(rows.expect("list"), vec![]);
        let drain = client.drain(Some("5s")).await.expect("drain");
        assert!(drain.draining);
        peer.await.expect("peer");
    }

    #[tokio::test]
    async fn errors_carry_the_daemons_code_and_message() {
        let (mut client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            expect_request(&mut daemon).await;
            answer(
                &mut daemon,
                r#"{"id":1,"ok":false,"error":{"code":"not_found","message":"no connection 99"}}"#,
            )
            .await;
            expect_request(&mut daemon).await;
            answer(
                &mut daemon,
                r#"{"id":2,"ok":true,"result":{"evicted":"two"}}"#,
            )
            .await;
        });
        let e = client.show(99).await.expect_err("not found");
        assert!(
            matches!(&e, ClientError::Daemon(b) if b.code == code::NOT_FOUND),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "not_found: no connection 99");
        let e = client.evict(Eviction::conn(2)).await.expect_err("garbled");
        assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");
        peer.await.expect("peer");
        let e = client.stats().await.expect_err("gone");
        assert!(
            matches!(e, ClientError::Closed | ClientError::Io(_)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_sent_before_the_request_is_read_is_the_answer() {
        let (mut client, mut daemon) = pair();
        answer(
            &mut daemon,
            r#"{"ok":false,"error":{"code":"permission_denied","message":"uid 65534 may not use the admin socket"}}"#,
        )
        .await;
        drop(daemon);
        let e = client.stats().await.expect_err("refused");
        assert_eq!(
            e.to_string(),
            "permission_denied: uid 65534 may not use the admin socket"
        );
    }

    #[tokio::test]
    async fn watch_yields_events_and_raw_lines_until_the_daemon_closes() {
        let (client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            let r = expect_request(&mut daemon).await;
            assert_eq!(r, json!({"id": 1, "cmd": "watch", "interval_ms": 250}));
            answer(
                &mut daemon,
                r#"{"id":1,"ok":true,"result":{"watching":true}}"#,
            )
            .await;
            answer(&mut daemon, r#"{"event":"lagged","missed":92}"#).await;
            answer(&mut daemon, r#"{"event":"restarted"}"#).await;
            answer(&mut daemon, r#"{"event":"lagged", "missed":1}"#).await;
        });
        let mut watch = client
            .watch(Some(Duration::from_millis(250)))
            .await
            .expect("watching");
        assert_eq!(
            watch.next().await.expect("event"),
            Event::Lagged { missed: 92 }
        );
        let e = watch.next().await.expect_err("unknown event");
        assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");
        assert_eq!(
            watch.next_line().await.expect("line"),
            r#"{"event":"lagged", "missed":1}"#
        );
        peer.await.expect("peer");
        assert!(matches!(watch.next().await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn list_with_sends_the_order_and_the_offset() {
        let (mut client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 1, "cmd": "list", "filter": {"route": "/ws"}, "sort": "user", "order": "asc", "offset": 30, "limit": 30})
            );
            answer(&mut daemon, r#"{"id":1,"ok":true,"result":[]}"#).await;
        });
        let rows = client
            .list_with(ListSpec {
                filter: Filter {
                    route: Some("/ws".into()),
                    ..Filter::default()
                },
                sort: Some(SortKey::User),
                order: Some(Order::Asc),
                offset: Some(30),
                limit: Some(30),
            })
            .await;
        assert_eq!(rows.expect("list"), vec![]);
        peer.await.expect("peer");
    }

    #[tokio::test]
    async fn a_watch_changes_its_window_on_the_same_stream() {
        let (client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 1, "cmd": "watch", "interval_ms": 200, "sort": "in_rate", "limit": 2})
            );
            answer(
                &mut daemon,
                r#"{"id":1,"ok":true,"result":{"watching":true}}"#,
            )
            .await;
            answer(&mut daemon, r#"{"event":"lagged","missed":1}"#).await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(
                r,
                json!({"id": 2, "cmd": "watch", "interval_ms": 200, "sort": "in_rate", "offset": 2, "limit": 2})
            );
            answer(
                &mut daemon,
                r#"{"id":2,"ok":true,"result":{"watching":true}}"#,
            )
            .await;
            answer(&mut daemon, r#"{"event":"lagged","missed":2}"#).await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(r["id"], 3);
            answer(
                &mut daemon,
                r#"{"id":3,"ok":false,"error":{"code":"bad_arguments","message":"`ten` is not an IP address or CIDR"}}"#,
            )
            .await;
            answer(&mut daemon, r#"{"event":"lagged","missed":3}"#).await;
        });
        let page = WatchSpec {
            interval: Some(Duration::from_millis(200)),
            sort: Some(SortKey::InRate),
            limit: Some(2),
            ..WatchSpec::default()
        };
        let mut watch = client.watch_with(page.clone()).await.expect("watching");
        assert_eq!(
            watch.next().await.expect("event"),
            Event::Lagged { missed: 1 }
        );
        let next_page = WatchSpec {
            offset: Some(2),
            ..page.clone()
        };
        watch.update(next_page).await.expect("update");
        // The update's answer is skipped.
        assert_eq!(
            watch.next().await.expect("event"),
            Event::Lagged { missed: 2 }
        );
        let bad = WatchSpec {
            filter: Filter {
                ip: Some("ten".into()),
                ..Filter::default()
            },
            ..page
        };
        watch.update(bad).await.expect("update");
        let e = watch.next().await.expect_err("refused");
        assert!(
            matches!(&e, ClientError::Daemon(b) if b.code == code::BAD_ARGUMENTS),
            "{e:?}"
        );
        // The stream goes on.
        assert_eq!(
            watch.next().await.expect("event"),
            Event::Lagged { missed: 3 }
        );
        peer.await.expect("peer");
        assert!(matches!(watch.next().await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn next_races_other_work_and_the_handler_may_update() {
        let (client, mut daemon) = pair();
        let peer = tokio::spawn(async move {
            expect_request(&mut daemon).await;
            answer(
                &mut daemon,
                r#"{"id":1,"ok":true,"result":{"watching":true}}"#,
            )
            .await;
            let r = expect_request(&mut daemon).await;
            assert_eq!(r, json!({"id": 2, "cmd": "watch", "limit": 5}));
            answer(
                &mut daemon,
                r#"{"id":2,"ok":true,"result":{"watching":true}}"#,
            )
            .await;
            answer(&mut daemon, r#"{"event":"lagged","missed":7}"#).await;
        });
        let mut watch = client.watch(None).await.expect("watching");
        // A key press wins over the stream: `next` is dropped unfinished.
        tokio::select! {
            biased;
            _ = std::future::ready(()) => {
                let spec = WatchSpec { limit: Some(5), ..WatchSpec::default() };
                watch.update(spec).await.expect("update");
            }
            e = watch.next() => panic!("nothing was sent yet: {e:?}"),
        }
        assert_eq!(
            watch.next().await.expect("event"),
            Event::Lagged { missed: 7 }
        );
        peer.await.expect("peer");
    }

    #[tokio::test]
    async fn a_missing_socket_names_the_path() {
        let path = std::env::temp_dir().join(format!("wsgate-no-such-{}.sock", std::process::id()));
        let Err(e) = Client::connect(&path).await else {
            panic!("connected to {}", path.display())
        };
        assert_eq!(
            e.to_string(),
            format!("cannot reach the admin socket {}", path.display())
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
