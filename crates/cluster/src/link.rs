//! The bus's tasks: one hands queued frames to the NATS client, one keeps
//! the topic subscriptions in line with local interest and gives what
//! arrives to the local hub.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_nats::{ConnectOptions, Event, ServerAddr, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_stream::StreamMap;

use crate::metrics::{Dropped, METRICS};
use crate::{subject, Config, Inbound, Shared, StartError};

/// Connects (in the background: a server that is down is retried with
/// back-off, forever) and starts the tasks.
pub(crate) async fn start(
    config: Config,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    outbox: mpsc::Receiver<(String, Bytes)>,
    stop: Arc<Notify>,
) -> Result<(), StartError> {
    let servers = config
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| StartError::Connect(format!("`{s}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = Arc::clone(&shared);
    let mut options = ConnectOptions::new()
        .name(format!("wsgate {}", config.node))
        .no_echo()
        .retry_on_initial_connect()
        .connection_timeout(config.connect_timeout)
        .event_callback(move |event| {
            let shared = Arc::clone(&events);
            async move { on_event(&shared, event) }
        });
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| StartError::Credentials {
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
    }
    let client = options
        .connect(servers)
        .await
        .map_err(|e| StartError::Connect(e.to_string()))?;
    tracing::info!(
        node = %config.node,
        servers = %config.servers.join(", "),
        "cluster: connecting to NATS (the node serves locally until it is connected)"
    );
    tokio::spawn(publish(client.clone(), Arc::clone(&shared), outbox));
    tokio::spawn(subscribe(client, shared, inbound, stop));
    Ok(())
}

/// Keeps the connected flag, the gauge and the log in line with the
/// client's events.
fn on_event(shared: &Shared, event: Event) {
    match event {
        Event::Connected => {
            shared.connected.store(true, Ordering::Release);
            METRICS.connected.set(1);
            METRICS.connects.inc();
            tracing::info!(node = %shared.node, "cluster: connected to NATS");
        }
        Event::Disconnected => {
            shared.connected.store(false, Ordering::Release);
            METRICS.connected.set(0);
            tracing::warn!(
                node = %shared.node,
                "cluster: lost NATS: local delivery goes on, publishes do not reach the other \
                 nodes until it is back (reconnecting)"
            );
        }
        Event::Closed => {
            shared.connected.store(false, Ordering::Release);
            METRICS.connected.set(0);
        }
        // Each failed reconnect attempt: the disconnect was said once.
        Event::ClientError(e) => tracing::debug!("cluster: NATS: {e}"),
        Event::SlowConsumer(sid) => tracing::warn!(
            "cluster: messages from NATS were dropped: subscription {sid} could not keep up"
        ),
        other => tracing::warn!("cluster: NATS: {other}"),
    }
}

/// Hands queued frames to the client. The queue is bounded (the handle
/// drops and counts past it); a publish the client refuses is counted.
async fn publish(
    client: async_nats::Client,
    shared: Arc<Shared>,
    mut outbox: mpsc::Receiver<(String, Bytes)>,
) {
    while let Some((subject, frame)) = outbox.recv().await {
        match client.publish(subject, frame).await {
            Ok(()) => {
                METRICS.forwarded.inc();
            }
            Err(_) => shared.dropped(Dropped::PublishFailed),
        }
    }
}

/// Applies interest changes and delivers what arrives, until the handle
/// is dropped.
async fn subscribe(
    client: async_nats::Client,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    stop: Arc<Notify>,
) {
    let mut topics: StreamMap<Arc<str>, Subscriber> = StreamMap::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            () = shared.wake.notified() => apply(&client, &shared, &mut topics).await,
            Some((topic, message)) = topics.next(), if !topics.is_empty() => {
                METRICS.received.inc();
                inbound.deliver(&topic, message.payload);
            }
        }
    }
}

/// Subscribes to the topics that gained a local subscriber and drops the
/// subscriptions of those that lost their last.
async fn apply(
    client: &async_nats::Client,
    shared: &Shared,
    topics: &mut StreamMap<Arc<str>, Subscriber>,
) {
    let changes: HashMap<Arc<str>, bool> = std::mem::take(
        &mut shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes,
    );
    for (topic, on) in changes {
        if !on {
            // Dropping the subscriber unsubscribes.
            topics.remove(&topic);
            continue;
        }
        if topics.contains_key(&topic) {
            continue;
        }
        match client.subscribe(subject(&shared.prefix, &topic)).await {
            Ok(subscriber) => {
                topics.insert(topic, subscriber);
            }
            Err(e) => tracing::warn!(
                topic = %topic,
                "cluster: cannot subscribe on NATS: {e}; messages of this topic from other \
                 nodes are missed"
            ),
        }
    }
    METRICS.subscriptions.set(topics.len() as i64);
}
