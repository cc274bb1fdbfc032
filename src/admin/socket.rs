//! The admin unix socket: who may connect, line I/O, and `watch` streams.
//!
//! - The socket file is created with `admin_socket_mode` (0600 by default).
//!   A stale file from a crashed run is replaced only if nothing answers on
//!   it; the file is removed when the daemon exits.
//! - Peer credentials (SO_PEERCRED) are checked: root, the daemon's own uid
//!   and, if set, peers whose primary gid is `admin_allowed_gid`. Anyone
//!   else gets one error line and is disconnected.
//! - Every client has a bounded output queue; one that stops reading is
//!   disconnected. The daemon never waits on a client.
//! - Requests are lines ([`super::lines`]), run one after another; a
//!   `watch` turns the connection into a stream ([`super::watch`]) that
//!   loses the oldest events when its client falls behind (and tells it how
//!   many), and takes only updates of its view from then on.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::cluster;
use super::lines::{line, parse, too_long, Line, LineReader};
use super::protocol::{code, Command, Request, Response, Scope, WatchAck};
use super::service::{answer, default_interval, Service};
use super::watch;

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

    let mut input = LineReader::new(read, max_line);
    loop {
        let text = match input.next().await {
            Line::End => break,
            Line::TooLong => {
                let _ = out.try_send(line(&too_long(max_line)));
                break;
            }
            Line::Text(text) => text,
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let response = match parse(text) {
            Err(r) => r,
            Ok(Request {
                id,
                command: command @ Command::Watch { .. },
                ..
            }) => match watch::View::asked(command) {
                Err(e) => Response::err(id, code::BAD_ARGUMENTS, e),
                Ok(view) => {
                    let ok = answer(id, &WatchAck { watching: true });
                    if out.send(line(&ok)).await.is_err() {
                        break;
                    }
                    drop(out);
                    if let Ok(Some(write)) = writer.await {
                        watch::run(&service, view, input, write).await;
                    }
                    return;
                }
            },
            Ok(Request {
                id,
                scope: Scope::Cluster,
                command,
            }) => cluster::execute(&service, id, command).await,
            Ok(Request { id, command, .. }) => service.execute(id, command).await,
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
