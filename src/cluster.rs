//! Joining the cluster at start: the bus (`crates/cluster`) is started with
//! the `[cluster]` settings and attached to the hub; what other nodes
//! publish is delivered to this node's subscribers, their admin requests
//! are answered by this node's admin service, and the node says when it
//! drains and when it leaves.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use wsgate_cluster::{BoxFuture, Bus, Config, Inbound, NodeState, StartError, UserConn};

use crate::admin::cluster::answer_line;
use crate::admin::service::Service;
use crate::config::{CapScope, Limits};
use crate::control;
use crate::daemon::Daemon;
use crate::registry::{opened_ms, RemoteUserConn};
use crate::ws::close;

/// What the bus reaches of the daemon. It holds only a weak handle, so it
/// never keeps the daemon alive.
struct ToDaemon {
    daemon: Weak<Daemon>,
    control: control::Sender,
}

impl Inbound for ToDaemon {
    fn deliver(&self, topic: &str, frame: Bytes) {
        if let Some(daemon) = self.daemon.upgrade() {
            daemon.hub().deliver_remote(topic, frame);
        }
    }

    fn state(&self) -> NodeState {
        match self.daemon.upgrade() {
            Some(daemon) => NodeState {
                connections: daemon.registry().len() as u64,
                draining: daemon.is_draining(),
            },
            None => NodeState {
                connections: 0,
                draining: true,
            },
        }
    }

    fn admin(&self, request: Bytes) -> BoxFuture<Bytes> {
        let daemon = self.daemon.upgrade();
        let control = self.control.clone();
        Box::pin(async move {
            let Some(daemon) = daemon else {
                return Bytes::new();
            };
            let service = Service { daemon, control };
            Bytes::from(answer_line(&service, &request).await)
        })
    }

    fn user_conns(&self, user: &str) -> Vec<UserConn> {
        let Some(daemon) = self.daemon.upgrade() else {
            return Vec::new();
        };
        daemon
            .registry()
            .user_conns(user)
            .iter()
            .map(|c| UserConn {
                conn: c.id,
                route: c.route.to_string(),
                opened_ms: opened_ms(c),
            })
            .collect()
    }

    fn evict(&self, conn: u64, user: &str) {
        let Some(daemon) = self.daemon.upgrade() else {
            return;
        };
        let Some(c) = daemon.registry().get(conn) else {
            return;
        };
        if c.user.as_deref() != Some(user) {
            return;
        }
        tracing::info!(
            conn,
            user,
            "closing the user's oldest connection: a newer one on another node replaces it"
        );
        c.request_close(
            close::REPLACED,
            "replaced by a newer connection of the same user",
        );
    }
}

/// The connections of `user` on the other nodes, when a per-user cap of
/// the route (or the global one) counts the whole cluster and NATS is
/// connected; none otherwise (the caps then count this node only).
pub async fn user_conns(daemon: &Daemon, route: &Limits, user: &str) -> Vec<RemoteUserConn> {
    let Some(bus) = daemon.hub().bus() else {
        return Vec::new();
    };
    let cluster_wide = route.max_connections_per_user_scope == CapScope::Cluster
        || daemon.settings().limits().max_connections_per_user_scope == CapScope::Cluster;
    if !cluster_wide || !bus.connected() {
        return Vec::new();
    }
    let found = bus.user_conns(user).await;
    if !found.complete {
        tracing::debug!(
            user,
            "not every node told its connections of this user in time"
        );
    }
    found
        .conns
        .into_iter()
        .map(|r| RemoteUserConn {
            node: r.node,
            conn: r.conn.conn,
            route: r.conn.route,
            opened_ms: r.conn.opened_ms,
        })
        .collect()
}

/// Has the node of `old` close it: a newer connection of its user took its
/// place under a cluster-wide cap.
pub fn replace(daemon: &Daemon, old: &RemoteUserConn, user: &str) {
    if let Some(bus) = daemon.hub().bus() {
        tracing::info!(
            user,
            node = %old.node,
            conn = old.conn,
            "the user's oldest connection is on another node: asking it to close it"
        );
        bus.evict_remote(&old.node, old.conn, user);
    }
}

/// Starts the bus when `[cluster]` names NATS servers; a single node
/// otherwise. Returns at once: NATS that is down is retried in the
/// background while the node serves locally.
pub async fn join(daemon: &Arc<Daemon>, control: &control::Sender) -> Result<(), StartError> {
    let settings = daemon.settings();
    let cluster = &settings.config.cluster;
    if !cluster.enabled() {
        return Ok(());
    }
    let config = Config {
        servers: cluster.nats.clone(),
        node: cluster.node.clone(),
        subject_prefix: cluster.subject_prefix.clone(),
        credentials_file: cluster.credentials_file.clone(),
        ca_file: cluster.ca_file.clone(),
        forward_queue: cluster.forward_queue,
        connect_timeout: cluster.connect_timeout,
        log_interval: settings.config.server.refusal_log_interval,
        announce_interval: cluster.announce_interval,
        peer_timeout: cluster.peer_timeout,
        request_timeout: cluster.request_timeout,
        user_query_timeout: cluster.user_query_timeout,
    };
    let inbound = ToDaemon {
        daemon: Arc::downgrade(daemon),
        control: control.clone(),
    };
    let bus = Arc::new(Bus::start(config, Arc::new(inbound)).await?);
    daemon.hub().attach(Arc::clone(&bus));
    // A draining node says so at once, not at its next announcement.
    let draining = daemon.draining_started();
    let weak = Arc::downgrade(&bus);
    tokio::spawn(async move {
        draining.await;
        if let Some(bus) = weak.upgrade() {
            bus.announce_now();
        }
    });
    Ok(())
}

/// The last word to the other nodes before the daemon exits.
pub async fn leave(daemon: &Daemon) {
    if let Some(bus) = daemon.hub().bus() {
        bus.leave().await;
    }
}
