//! The admin unix socket: who may connect, line I/O, and `watch` streams.
//!
//! - The socket file is created with `admin_socket_mode` (0600 by default).
//!   A stale file from a crashed run is replaced only if nothing answers on
//!   it; the file is removed when the daemon exits.
//! - Peer credentials (SO_PEERCRED) are checked: root, the daemon's own uid
//!   and, if set, peers whose primary gid is `admin_allowed_gid`. Anyone
//!   else gets one error line and is disconnected.
//! - Every client has a bounded output queue; one that stops reading is
//!   disconnected, and a `watch` client that falls behind loses the oldest
//!   events (and is told how many). The daemon never waits on a client.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

use super::protocol::{code, Command, Event, Request, Response, WatchAck};
use super::service::{answer, default_interval, Service};
use super::view;

/// The socket file, removed on drop.
pub struct SocketFile {
    path: PathBuf,
    /// The daemon's uid (the socket file's owner).
    pub uid: u32,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates the socket: replaces a stale file, refuses to take over a live
/// one, sets the mode.
pub async fn bind(path: &Path, mode: u32) -> std::io::Result<(UnixListener, SocketFile)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        // Only a refused connection proves that nobody listens; any other
        // failure (e.g. no permission) leaves the file alone.
        match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another process answers on {}", path.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot tell whether {} is in use ({e}); not replacing it",
                        path.display()
                    ),
                ))
            }
        }
        tracing::info!(path = %path.display(), "replacing a stale admin socket");
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    let uid = std::fs::metadata(path)?.uid();
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            uid,
        },
    ))
}

/// Who may use the socket: root, the daemon's own uid, and the
/// `admin_allowed_gid` in force when the client connects.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub own_uid: u32,
    pub allowed_gid: Option<u32>,
}

impl Access {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == self.own_uid || self.allowed_gid == Some(gid)
    }
}

/// Serves admin clients until the daemon stops.
pub async fn serve(listener: UnixListener, access: Access, service: Arc<Service>) {
    loop {
        let stream = tokio::select! {
            _ = service.daemon.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            client(stream, access, service).await;
        });
    }
}

fn line(response: &Response) -> String {
    let mut s = serde_json::to_string(response).unwrap_or_default();
    s.push('\n');
    s
}

async fn client(stream: UnixStream, access: Access, service: Arc<Service>) {
    let cred = stream.peer_cred();
    let (uid, gid, pid) = match &cred {
        Ok(c) => (c.uid(), c.gid(), c.pid()),
        Err(_) => (u32::MAX, u32::MAX, None),
    };
    let (read, mut write) = stream.into_split();
    let access = Access {
        allowed_gid: service.daemon.settings().config.server.admin_allowed_gid,
        ..access
    };
    if !access.allows(uid, gid) {
        tracing::warn!(uid, gid, ?pid, "admin client refused");
        let refusal = Response::err(
            None,
            code::PERMISSION_DENIED,
            format!("uid {uid} may not use the admin socket"),
        );
        let _ = write.write_all(line(&refusal).as_bytes()).await;
        // FIN, then read what the client already sent: closing with unread
        // input makes the kernel reset the connection, and the client may
        // lose the refusal before it reads it.
        let _ = write.shutdown().await;
        let mut sink = Vec::new();
        let limit = service
            .daemon
            .settings()
            .config
            .server
            .admin_max_request_bytes;
        let mut input = read.take(limit as u64);
        let _ = tokio::time::timeout(default_interval(), input.read_to_end(&mut sink)).await;
        return;
    }
    tracing::debug!(uid, ?pid, "admin client connected");

    let (max_line, queue) = {
        let s = service.daemon.settings();
        let server = &s.config.server;
        (server.admin_max_request_bytes, server.admin_output_queue)
    };
    let (out, mut lines) = mpsc::channel::<String>(queue);
    // The writer gives the write half back when the queue closes (a
    // `watch` then writes directly).
    let writer = tokio::spawn(async move {
        while let Some(l) = lines.recv().await {
            if write.write_all(l.as_bytes()).await.is_err() {
                return None;
            }
        }
        Some(write)
    });

    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read one line, but never more than the limit.
        let n = match (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n > max_line && !buf.ends_with(b"\n") {
            let r = Response::err(
                None,
                code::BAD_REQUEST,
                format!("request longer than admin_max_request_bytes ({max_line})"),
            );
            let _ = out.try_send(line(&r));
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let response = match parse(text) {
            Err(r) => r,
            Ok(Request {
                id,
                command: Command::Watch { interval_ms },
            }) => {
                let interval = interval_ms
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .unwrap_or_else(default_interval);
                let ok = answer(id, &WatchAck { watching: true });
                if out.send(line(&ok)).await.is_err() {
                    break;
                }
                drop(out);
                if let Ok(Some(write)) = writer.await {
                    watch(&service, interval, write).await;
                }
                return;
            }
            Ok(Request { id, command }) => service.execute(id, command).await,
        };
        if out.try_send(line(&response)).is_err() {
            // The writer is stuck on a socket nobody reads: stop it, which
            // drops the write half, and with the read half the socket.
            tracing::warn!(uid, "admin client does not read its answers; disconnecting");
            writer.abort();
            return;
        }
    }
    drop(out);
    let _ = writer.await;
}

/// Parses a request line; an error is the answer to send.
fn parse(text: &str) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Response::err(None, code::BAD_REQUEST, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Response::err(
            None,
            code::BAD_REQUEST,
            "a request is a JSON object",
        ));
    };
    let id = object.get("id").cloned();
    let Some(cmd) = object.get("cmd").and_then(|c| c.as_str()) else {
        return Err(Response::err(id, code::BAD_REQUEST, "missing `cmd`"));
    };
    if !Command::NAMES.contains(&cmd) {
        return Err(Response::err(
            id,
            code::UNKNOWN_COMMAND,
            format!(
                "unknown command `{cmd}` (one of: {})",
                Command::NAMES.join(", ")
            ),
        ));
    }
    serde_json::from_value::<Request>(value.clone())
        .map_err(|e| Response::err(id, code::BAD_ARGUMENTS, format!("{cmd}: {e}")))
}

/// Streams snapshots and events until the client goes away.
///
/// It writes to the socket itself, one line at a time: a client that stops
/// reading holds up only this loop, with at most one line in hand, while
/// events pile up in the bounded broadcast buffer and the oldest are lost
/// (the client is told how many when it reads again).
async fn watch(service: &Service, interval: Duration, mut out: OwnedWriteHalf) {
    let daemon = &service.daemon;
    let mut events = daemon.events();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            _ = daemon.stopped() => return,
            _ = tick.tick() => Event::Snapshot {
                stats: Box::new(view::stats(daemon)),
                connections: view::list(&daemon.registry().all(), None, None),
            },
            e = events.recv() => match e {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let mut text = serde_json::to_string(&event).unwrap_or_default();
        text.push('\n');
        let write = out.write_all(text.as_bytes());
        tokio::select! {
            r = write => if r.is_err() { return },
            _ = daemon.stopped() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_owner_and_group_are_allowed() {
        let a = Access {
            own_uid: 1000,
            allowed_gid: Some(50),
        };
        assert!(a.allows(0, 0));
        assert!(a.allows(1000, 1000));
        assert!(a.allows(1234, 50));
        assert!(!a.allows(1234, 1234));
    }

    #[test]
    fn malformed_lines_get_precise_errors() {
        let code_of = |t: &str| parse(t).err().and_then(|r| r.error).map(|e| e.code);
        assert_eq!(code_of("{nope").as_deref(), Some(code::BAD_REQUEST));
        assert_eq!(code_of("[1]").as_deref(), Some(code::BAD_REQUEST));
        assert_eq!(code_of(r#"{"id":1}"#).as_deref(), Some(code::BAD_REQUEST));
        assert_eq!(
            code_of(r#"{"cmd":"rm -rf"}"#).as_deref(),
            Some(code::UNKNOWN_COMMAND)
        );
        assert_eq!(
            code_of(r#"{"cmd":"evict","dryrun":true}"#).as_deref(),
            Some(code::BAD_ARGUMENTS)
        );
        let Err(r) = parse(r#"{"id":"x","cmd":"show"}"#) else {
            panic!("a show without an id must be refused")
        };
        assert_eq!(r.id, Some(serde_json::json!("x")));
        assert!(parse(r#"{"id":1,"cmd":"stats"}"#).is_ok());
    }
}
