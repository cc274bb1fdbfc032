//! The listeners: accept, HTTP/1.1, and the hand-off of upgraded sockets.
//!
//! [`serve`] is a function of bound listeners and the daemon state; the
//! binary binds the configured addresses (or takes the sockets systemd
//! passes). Listener `i` answers by `Settings::listeners[i]` as it is when
//! a connection is accepted, so a reload changes what it serves for the
//! connections it accepts next.
//!
//! While the daemon drains, the listener stays open so that load balancers
//! read `/readyz` = 503 (rather than a refused connection) and new upgrades
//! get a 503; it closes when the drain is over.

mod client_ip;
mod http;
mod reply;
pub mod sockets;
mod transport;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::config::listeners::Services;
use crate::daemon::Daemon;
use crate::edge::pending::PendingPermit;

/// What a connection's listener answers, as it was when it was accepted.
#[derive(Clone)]
pub struct Served {
    /// The listener's name (logs, metrics).
    pub listener: Arc<str>,
    pub services: Services,
    /// Whether the listener speaks TLS (`wss://`).
    pub tls: bool,
}

/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections on every listener (the `i`th is
/// `Settings::listeners[i]`) until the daemon has stopped, and samples
/// memory for `max_memory` meanwhile.
pub async fn serve(listeners: Vec<TcpListener>, daemon: Arc<Daemon>) {
    tokio::spawn(Arc::clone(daemon.edge()).watch_memory(daemon.stopped()));
    let loops: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(index, l)| tokio::spawn(accept_loop(l, index, Arc::clone(&daemon))))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

/// One listener's accept loop.
///
/// A connection takes one of `max_pending_handshakes` places (shared by
/// every listener) before it is accepted and holds it for its HTTP phase:
/// at the cap, the loop waits and the kernel's backlog holds the next ones.
async fn accept_loop(listener: TcpListener, index: usize, daemon: Arc<Daemon>) {
    loop {
        let permit = tokio::select! {
            _ = daemon.stopped() => break,
            permit = daemon.edge().pending_permit() => permit,
        };
        let Some(permit) = permit else {
            tracing::error!(
                "the pending-handshake semaphore closed; no more connections are accepted"
            );
            break;
        };
        tokio::select! {
            _ = daemon.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let daemon = Arc::clone(&daemon);
                    tokio::spawn(connection(daemon, index, stream, peer, permit.accepted()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
    let name = listener_name(&daemon, index);
    drop(listener);
    tracing::info!(listener = %name, "listener closed");
}

fn listener_name(daemon: &Daemon, index: usize) -> Arc<str> {
    daemon
        .settings()
        .listeners
        .get(index)
        .map_or_else(|| Arc::from("?"), |l| Arc::clone(&l.name))
}

/// One TCP connection's HTTP phase. An upgrade hands the socket to a
/// connection task and ends this one, and with it the place it held among
/// the pending handshakes (`_pending`).
async fn connection(
    daemon: Arc<Daemon>,
    index: usize,
    mut stream: TcpStream,
    mut peer: SocketAddr,
    _pending: PendingPermit,
) {
    let accepted = Instant::now();
    let _ = stream.set_nodelay(true);
    let (handshake_timeout, served, proxy_from, tls) = {
        let settings = daemon.settings();
        let Some(l) = settings.listeners.get(index) else {
            // A reload keeps the running listeners whole, so every bound
            // listener has its settings.
            tracing::error!(index, "a connection on a listener with no settings");
            return;
        };
        (
            settings.config.server.handshake_timeout,
            Served {
                listener: Arc::clone(&l.name),
                services: l.services,
                tls: l.tls.is_some(),
            },
            l.config
                .proxy_protocol
                .then(|| settings.config.server.trusted_proxies.clone()),
            l.tls.clone(),
        )
    };
    let deadline = accepted + handshake_timeout;
    if let Some(trusted) = proxy_from {
        match transport::proxied_peer(
            &daemon,
            &served.listener,
            &mut stream,
            peer,
            &trusted,
            deadline,
        )
        .await
        {
            Some(client) => peer = client,
            None => return,
        }
    }
    let http = HttpPhase {
        daemon,
        peer,
        accepted,
        served,
        deadline,
        handshake_timeout,
    };
    match tls {
        None => http.serve(TokioIo::new(stream)).await,
        Some(tls) => {
            let listener = Arc::clone(&http.served.listener);
            let handshake =
                transport::tls_handshake(&http.daemon, &listener, &tls, stream, peer, deadline);
            if let Some(tls) = handshake.await {
                http.serve(TokioIo::new(tls)).await;
            }
        }
    }
}

/// A connection's HTTP phase, on whatever transport it runs.
struct HttpPhase {
    daemon: Arc<Daemon>,
    peer: SocketAddr,
    accepted: Instant,
    served: Served,
    deadline: Instant,
    handshake_timeout: Duration,
}

impl HttpPhase {
    /// HTTP/1.1 on a connection, plain or TLS, until it upgrades or ends.
    async fn serve<I>(self, io: TokioIo<I>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let HttpPhase {
            daemon,
            peer,
            accepted,
            served,
            deadline,
            handshake_timeout,
        } = self;
        let service = {
            let daemon = Arc::clone(&daemon);
            service_fn(move |req| {
                let daemon = Arc::clone(&daemon);
                let served = served.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        http::handle(daemon, peer, accepted, &served, req).await,
                    )
                }
            })
        };
        // hyper only enforces the header timeout with a timer set; without it a
        // client sending one byte at a time would hold the socket forever.
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "http connection ended");
                }
            }
            _ = daemon.stopped() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(handshake_timeout, conn).await;
            }
        }
    }
}
