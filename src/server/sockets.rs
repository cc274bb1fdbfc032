//! Listening sockets: those systemd passes (socket activation:
//! `LISTEN_FDS`, `LISTEN_FDNAMES`), matched to listeners by name and then
//! by address, and the others bound here.
//!
//! With a socket from systemd, a restart of the daemon never closes the
//! listening socket: connects made while no process serves it wait in its
//! backlog and are accepted by the next process.

use std::net::SocketAddr;

use crate::config::Settings;

/// The sockets systemd passed, taken from the environment once.
pub struct Inherited {
    sockets: Vec<InheritedSocket>,
}

struct InheritedSocket {
    /// `FileDescriptorName=` (systemd names unnamed ones `unknown`).
    name: Option<String>,
    local: Option<SocketAddr>,
    socket: std::net::TcpListener,
}

/// Where a listener's socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Bound,
    /// Passed by systemd.
    Systemd,
}

/// A listener's socket, in the order of `Settings::listeners`.
pub struct Bound {
    pub listener: tokio::net::TcpListener,
    pub local: SocketAddr,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("listener `{listener}`: cannot listen on {address}: {source}")]
    Bind {
        listener: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener `{listener}`: its socket cannot be used: {source}")]
    Socket {
        listener: String,
        source: std::io::Error,
    },
}

impl Inherited {
    /// Takes the sockets systemd passed to this process (none without
    /// `LISTEN_FDS`, or when `LISTEN_PID` names another process), and
    /// clears the variables so that no child inherits them. Call it before
    /// any other thread runs: it changes the environment.
    pub fn from_env() -> Inherited {
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|v| v.split(':').map(str::to_string).collect())
            .unwrap_or_default();
        std::env::remove_var("LISTEN_FDNAMES");
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Vec::new();
        for i in 0..fds.len() {
            let name = names.get(i).cloned();
            match fds.take_tcp_listener(i) {
                Ok(Some(socket)) => sockets.push(InheritedSocket {
                    name,
                    local: socket.local_addr().ok(),
                    socket,
                }),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    fd = i + 3,
                    name = name.as_deref().unwrap_or(""),
                    error = %e,
                    "systemd passed a socket that is not a listening TCP socket; it is not used"
                ),
            }
        }
        Inherited { sockets }
    }

    /// No sockets (tests, `wsgate check`).
    pub fn none() -> Inherited {
        Inherited {
            sockets: Vec::new(),
        }
    }

    /// Takes the socket for a listener: the one named like it, else the
    /// one bound to its address.
    fn take(&mut self, name: &str, address: SocketAddr) -> Option<InheritedSocket> {
        let at = self
            .sockets
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
            .or_else(|| {
                self.sockets
                    .iter()
                    .position(|s| s.local == Some(address) && address.port() != 0)
            })?;
        Some(self.sockets.remove(at))
    }
}

/// The listen backlog of a socket bound here (tokio's own default; the
/// kernel caps it at `net.core.somaxconn`): connects beyond the
/// `max_pending_handshakes` the daemon is handling wait there.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds and listens on `address`, with `SO_REUSEADDR` so that a restart
/// does not wait for the old connections' TIME_WAIT.
fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A socket systemd passed, made ready for tokio.
fn adopt(socket: std::net::TcpListener) -> std::io::Result<tokio::net::TcpListener> {
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket)
}

/// A socket for every listener, in order: systemd's where one matches,
/// else bound here. Passed sockets that match no listener are closed, with
/// a warning. Runs inside the runtime.
pub fn bind_all(settings: &Settings, mut inherited: Inherited) -> Result<Vec<Bound>, BindError> {
    let mut out = Vec::with_capacity(settings.listeners.len());
    for l in &settings.listeners {
        let (name, address) = (&l.config.name, l.config.address);
        let socket_error = |source| BindError::Socket {
            listener: name.clone(),
            source,
        };
        let (listener, origin) = match inherited.take(name, address) {
            Some(s) => (adopt(s.socket).map_err(socket_error)?, Origin::Systemd),
            None => {
                let bound = bind(address).map_err(|source| BindError::Bind {
                    listener: name.clone(),
                    address,
                    source,
                })?;
                (bound, Origin::Bound)
            }
        };
        let local = listener.local_addr().map_err(socket_error)?;
        out.push(Bound {
            listener,
            local,
            origin,
        });
    }
    for s in inherited.sockets {
        tracing::warn!(
            name = s.name.as_deref().unwrap_or(""),
            address = ?s.local,
            "systemd passed a socket that no listener names or listens on; it is closed"
        );
    }
    Ok(out)
}
