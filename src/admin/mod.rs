//! The daemon's side of the admin interface: the protocol (the
//! `wsgate-admin-proto` crate, shared with `wsgate ctl` and the console),
//! the views it shows (`view`: rows and stats; `table`: their order and
//! window), the service that runs commands, the unix socket that carries
//! them (`socket`, reading `lines`), the `watch` streams, and [`start`],
//! which puts them together.

use std::path::PathBuf;
use std::sync::Arc;

pub use wsgate_admin_proto as protocol;

pub mod cluster;
pub mod lines;
#[cfg(test)]
mod lines_props;
pub mod service;
pub mod socket;
pub mod table;
pub mod view;
pub mod watch;

use crate::control;
use crate::daemon::Daemon;
use socket::SocketFile;

/// The admin socket could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the admin socket {} (set [server] admin_socket)", .path.display())]
pub struct StartError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Creates the admin socket the settings name and serves it until the
/// daemon stops; `None` when `admin_socket = ""` turns it off. The socket
/// file is removed when the returned [`SocketFile`] drops.
pub async fn start(
    daemon: &Arc<Daemon>,
    control: &control::Sender,
) -> Result<Option<SocketFile>, StartError> {
    let (path, mode, allowed_gid) = {
        let s = daemon.settings();
        let allowed_gid = s.config.server.admin_allowed_gid;
        (s.admin_socket(), s.admin_socket_mode(), allowed_gid)
    };
    let Some(path) = path else { return Ok(None) };
    let (listener, file) = socket::bind(&path, mode)
        .await
        .map_err(|source| StartError {
            path: path.clone(),
            source,
        })?;
    let access = socket::Access {
        own_uid: file.uid,
        allowed_gid,
    };
    let service = Arc::new(service::Service {
        daemon: Arc::clone(daemon),
        control: control.clone(),
    });
    tokio::spawn(socket::serve(listener, access, service));
    // Logged as one of the start-up lines, under the binary's target.
    tracing::info!(target: "wsgate", path = %path.display(), "admin socket ready");
    Ok(Some(file))
}
