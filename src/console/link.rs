//! The console's two connections to the admin socket, as tasks that feed
//! the one message channel: the `watch` stream (reconnected with backoff
//! when the daemon goes away) and a command connection that runs one
//! [`Cmd`] at a time. The watching connection carries only the stream, so
//! commands never wait behind snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use wsgate_admin_proto::{
    code, Client, ClientError, Command, Event, Eviction, Filter, Watch, WatchSpec,
};

use super::app::{Msg, Snapshot};
use super::dialog::{Cmd, Detail, Outcome, PEERS_COUNTED};

/// The first wait before reconnecting, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follows the daemon's `watch` stream until the console leaves (the
/// channel closes). The window comes from `view`; a change of it goes to
/// the daemon as an update on the same stream, so no event is lost. A
/// daemon whose `watch` takes no window is watched whole.
pub async fn watch(
    path: PathBuf,
    interval: Duration,
    mut view: watch::Receiver<WatchSpec>,
    tx: mpsc::Sender<Msg>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let why = match open(&path, interval, &mut view).await {
            Ok((mut stream, windows)) => {
                if tx.send(Msg::Connected { windows }).await.is_err() {
                    return;
                }
                backoff = BACKOFF_MIN;
                loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        changed = view.changed(), if windows => {
                            if changed.is_err() {
                                return;
                            }
                            let spec = with_interval(&view.borrow_and_update(), interval);
                            match stream.update(spec).await {
                                Ok(()) => continue,
                                Err(e) => break describe(&e),
                            }
                        }
                    };
                    let msg = match next {
                        Ok(Event::Snapshot {
                            stats,
                            matched,
                            offset,
                            connections,
                        }) => Msg::Snapshot(Snapshot {
                            stats,
                            matched,
                            offset,
                            rows: connections,
                        }),
                        Ok(event) => Msg::Event(event),
                        // An event this console does not know.
                        Err(ClientError::Protocol(_)) => continue,
                        Err(ClientError::Daemon(e)) => {
                            Msg::Refused(format!("watch: {}: {}", e.code, e.message))
                        }
                        Err(e) => break describe(&e),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => describe(&e),
        };
        if tx.send(Msg::Disconnected(why)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A watch stream of the current window, or of everything from a daemon
/// that refuses windows; whether it takes windows.
async fn open(
    path: &Path,
    interval: Duration,
    view: &mut watch::Receiver<WatchSpec>,
) -> Result<(Watch, bool), ClientError> {
    let spec = with_interval(&view.borrow_and_update(), interval);
    match Client::connect(path).await?.watch_with(spec).await {
        Err(ClientError::Daemon(e)) if e.code == code::BAD_ARGUMENTS => {
            let whole = Client::connect(path).await?.watch(Some(interval)).await?;
            Ok((whole, false))
        }
        stream => Ok((stream?, true)),
    }
}

fn with_interval(spec: &WatchSpec, interval: Duration) -> WatchSpec {
    WatchSpec {
        interval: Some(interval),
        ..spec.clone()
    }
}

/// Runs commands one by one on their own connection (`first`, then a new
/// one whenever the last one failed), sending each outcome back.
pub async fn commands(
    path: PathBuf,
    first: Client,
    mut rx: mpsc::Receiver<Cmd>,
    tx: mpsc::Sender<Msg>,
) {
    let mut client = Some(first);
    while let Some(cmd) = rx.recv().await {
        let mut c = match client.take() {
            Some(c) => c,
            None => match Client::connect(&path).await {
                Ok(c) => c,
                Err(e) => {
                    if tx
                        .send(Msg::Command(failed(&cmd, describe(&e))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            },
        };
        let (outcome, healthy) = run(&mut c, cmd).await;
        if healthy {
            client = Some(c);
        }
        if tx.send(Msg::Command(outcome)).await.is_err() {
            return;
        }
    }
}

/// One command; whether the connection is still good afterwards (a
/// daemon's error answer leaves it open).
async fn run(c: &mut Client, cmd: Cmd) -> (Outcome, bool) {
    let mut healthy = true;
    let mut err = |e: ClientError| {
        healthy = matches!(e, ClientError::Daemon(_));
        describe(&e)
    };
    let outcome = match cmd {
        Cmd::Show(id) => Outcome::Detail(detail(c, id).await.map_err(&mut err)),
        Cmd::Members(topic) => {
            let filter = Filter {
                topic: Some(topic.clone()),
                ..Filter::default()
            };
            let rows = c.list(filter, None, None).await;
            let ids = rows.map(|rows| rows.iter().map(|r| r.id).collect());
            Outcome::Members(topic, ids.map_err(&mut err))
        }
        Cmd::EvictPreview(filter) => Outcome::Preview(
            c.evict_preview(Eviction::matching(filter))
                .await
                .map(|p| p.count)
                .map_err(&mut err),
        ),
        Cmd::Evict(which) => Outcome::Evicted(c.evict(which).await.map_err(&mut err)),
        Cmd::Reload { dry_run } => Outcome::Reload(c.reload(dry_run).await.map_err(&mut err)),
        Cmd::Drain => Outcome::Drain(c.drain(None).await.map(|_| ()).map_err(&mut err)),
        Cmd::Config => Outcome::DrainTimeout(
            c.config()
                .await
                .map(|config| {
                    let timeout = config.get("server").and_then(|s| s.get("drain_timeout"));
                    timeout
                        .and_then(|t| humantime::parse_duration(t.as_str()?).ok())
                        .map(|d| d.as_secs_f64())
                })
                .map_err(&mut err),
        ),
        Cmd::ClusterStats => Outcome::Cluster(c.cluster(Command::Stats {}).await.map_err(&mut err)),
    };
    (outcome, healthy)
}

/// `show`, then `list` by the connection's user and by its address.
/// Each list stops at [`PEERS_COUNTED`] others: a count, not a download of
/// every connection behind one address.
async fn detail(c: &mut Client, id: u64) -> Result<Detail, ClientError> {
    let conn = c.show(id).await?;
    let others = |rows: Vec<wsgate_admin_proto::ConnRow>| rows.len().saturating_sub(1);
    let limit = Some(PEERS_COUNTED + 1);
    let same_user = match conn.row.user.clone() {
        Some(user) => {
            let filter = Filter {
                user: Some(user),
                ..Filter::default()
            };
            others(c.list(filter, None, limit).await?)
        }
        None => 0,
    };
    let filter = Filter {
        ip: Some(conn.row.ip.clone()),
        ..Filter::default()
    };
    let same_ip = others(c.list(filter, None, limit).await?);
    Ok(Detail {
        conn,
        same_user,
        same_ip,
    })
}

/// The outcome of a command that could not be sent.
fn failed(cmd: &Cmd, e: String) -> Outcome {
    match cmd {
        Cmd::Show(_) => Outcome::Detail(Err(e)),
        Cmd::Members(topic) => Outcome::Members(topic.clone(), Err(e)),
        Cmd::EvictPreview(_) => Outcome::Preview(Err(e)),
        Cmd::Evict(_) => Outcome::Evicted(Err(e)),
        Cmd::Reload { .. } => Outcome::Reload(Err(e)),
        Cmd::Drain => Outcome::Drain(Err(e)),
        Cmd::Config => Outcome::DrainTimeout(Err(e)),
        Cmd::ClusterStats => Outcome::Cluster(Err(e)),
    }
}

/// An error with its causes: `cannot reach the admin socket X: No such
/// file or directory (os error 2)`.
pub fn describe(e: &ClientError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
