//! Joining the cluster at start: the bus (`crates/cluster`) is started with
//! the `[cluster]` settings and attached to the hub, and what other nodes
//! publish is delivered to this node's subscribers.

use std::sync::{Arc, Weak};

use wsgate_cluster::{Bus, Config, Inbound, StartError};

use crate::daemon::Daemon;

/// Where frames from other nodes go: the daemon's hub (the bus holds only a
/// weak handle, so it never keeps the daemon alive).
struct ToHub(Weak<Daemon>);

impl Inbound for ToHub {
    fn deliver(&self, topic: &str, frame: bytes::Bytes) {
        if let Some(daemon) = self.0.upgrade() {
            daemon.hub().deliver_remote(topic, frame);
        }
    }
}

/// Starts the bus when `[cluster]` names NATS servers; a single node
/// otherwise. Returns at once: NATS that is down is retried in the
/// background while the node serves locally.
pub async fn join(daemon: &Arc<Daemon>) -> Result<(), StartError> {
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
        forward_queue: cluster.forward_queue,
        connect_timeout: cluster.connect_timeout,
        log_interval: settings.config.server.refusal_log_interval,
    };
    let bus = Bus::start(config, Arc::new(ToHub(Arc::downgrade(daemon)))).await?;
    daemon.hub().attach(Arc::new(bus));
    Ok(())
}
