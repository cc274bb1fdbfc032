//! The bus's tasks: one hands queued frames to the NATS client, one keeps
//! the topic subscriptions in line with local interest and gives what
//! arrives to the local hub, one announces this node and hears the others,
//! one answers the other nodes' admin requests. All end when the bus's
//! handle is dropped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event, ServerAddr, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Dropped, METRICS};
use crate::peers::{Announcement, NodeState};
use crate::{subject, Config, Inbound, Shared, StartError, UserConn};

/// Where nodes announce themselves.
pub(crate) fn nodes_subject(prefix: &str) -> String {
    format!("{prefix}.nodes")
}

/// Where a node answers admin requests.
pub(crate) fn admin_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.admin.{node}")
}

/// Where nodes are asked for a user's connections.
pub(crate) fn users_subject(prefix: &str) -> String {
    format!("{prefix}.users")
}

/// Where a node takes eviction orders for its connections.
pub(crate) fn evict_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.evict.{node}")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UserQuery {
    user: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UserAnswer {
    node: String,
    conns: Vec<UserConn>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EvictOrder {
    conn: u64,
    user: String,
}

pub(crate) fn user_query(user: &str) -> Bytes {
    let q = UserQuery {
        user: user.to_string(),
    };
    Bytes::from(serde_json::to_vec(&q).unwrap_or_default())
}

pub(crate) fn evict_order(conn: u64, user: &str) -> Bytes {
    let o = EvictOrder {
        conn,
        user: user.to_string(),
    };
    Bytes::from(serde_json::to_vec(&o).unwrap_or_default())
}

/// Publishes `query` on `subject` and gathers the answers of up to
/// `expected` nodes within `timeout`, by node.
pub(crate) async fn gather(
    client: &async_nats::Client,
    subject: String,
    query: Bytes,
    expected: usize,
    timeout: Duration,
) -> Vec<(String, Vec<UserConn>)> {
    let inbox = client.new_inbox();
    let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(subject, inbox, query)
        .await
        .is_err()
    {
        return Vec::new();
    }
    let mut found: Vec<(String, Vec<UserConn>)> = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while found.len() < expected {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await else {
            break;
        };
        if let Ok(a) = serde_json::from_slice::<UserAnswer>(&message.payload) {
            if !found.iter().any(|(n, _)| *n == a.node) {
                found.push((a.node, a.conns));
            }
        }
    }
    found
}

/// This node's announcement, as sent.
pub(crate) fn announcement(shared: &Shared, state: NodeState, leaving: bool) -> Bytes {
    let a = Announcement {
        node: shared.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        connections: state.connections,
        draining: state.draining || leaving,
        leaving,
    };
    Bytes::from(serde_json::to_vec(&a).unwrap_or_default())
}

/// Connects (in the background: a server that is down is retried with
/// back-off, forever) and starts the tasks.
pub(crate) async fn start(
    config: Config,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    outbox: mpsc::Receiver<(String, Bytes)>,
    stop: CancellationToken,
) -> Result<async_nats::Client, StartError> {
    let servers = config
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| StartError::Connect(format!("`{}`: {e}", crate::shown(s))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = Arc::clone(&shared);
    let mut options = ConnectOptions::new()
        .name(format!("wsgate {}", config.node))
        .no_echo()
        .retry_on_initial_connect()
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .event_callback(move |event| {
            let shared = Arc::clone(&events);
            async move { on_event(&shared, event) }
        });
    match crate::url_credentials(&config.servers).map_err(StartError::Connect)? {
        Some(crate::Credentials::UserPassword(user, password)) => {
            options = options.user_and_password(user, password);
        }
        Some(crate::Credentials::Token(token)) => options = options.token(token),
        None => {}
    }
    if let Some(path) = &config.ca_file {
        options = options.add_root_certificates(path.clone());
    }
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
        servers = %config.servers.iter().map(|s| crate::shown(s)).collect::<Vec<_>>().join(", "),
        "cluster: connecting to NATS (the node serves locally until it is connected)"
    );
    // Made now, sent once connected (and again after every reconnect).
    let nodes = client
        .subscribe(nodes_subject(&shared.prefix))
        .await
        .map_err(|e| StartError::Connect(e.to_string()))?;
    let admin = client
        .subscribe(admin_subject(&shared.prefix, &shared.node))
        .await
        .map_err(|e| StartError::Connect(e.to_string()))?;
    tokio::spawn(publish(
        client.clone(),
        Arc::clone(&shared),
        outbox,
        stop.clone(),
    ));
    tokio::spawn(subscribe(
        client.clone(),
        Arc::clone(&shared),
        Arc::clone(&inbound),
        stop.clone(),
    ));
    tokio::spawn(announce(
        client.clone(),
        Arc::clone(&shared),
        Arc::clone(&inbound),
        config.announce_interval,
        nodes,
        stop.clone(),
    ));
    let users = client
        .subscribe(users_subject(&shared.prefix))
        .await
        .map_err(|e| StartError::Connect(e.to_string()))?;
    let evictions = client
        .subscribe(evict_subject(&shared.prefix, &shared.node))
        .await
        .map_err(|e| StartError::Connect(e.to_string()))?;
    tokio::spawn(answer(
        client.clone(),
        Arc::clone(&inbound),
        admin,
        stop.clone(),
    ));
    tokio::spawn(tell_users(
        client.clone(),
        Arc::clone(&shared),
        Arc::clone(&inbound),
        users,
        stop.clone(),
    ));
    tokio::spawn(take_evictions(inbound, evictions, stop));
    Ok(client)
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
        // Every failed attempt to reach NATS: said once per log interval.
        Event::ClientError(e) if shared.connect_log.open() => tracing::warn!(
            node = %shared.node,
            "cluster: cannot connect to NATS: {e} (retrying; said at most once per {:?})",
            shared.connect_log.interval
        ),
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
    stop: CancellationToken,
) {
    while let Some(Some((subject, frame))) = stop.run_until_cancelled(outbox.recv()).await {
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
    stop: CancellationToken,
) {
    let mut topics: StreamMap<Arc<str>, Subscriber> = StreamMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
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

/// Announces this node every `interval` (and at once when asked), and keeps
/// the table of the others from their announcements.
async fn announce(
    client: async_nats::Client,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    interval: Duration,
    mut nodes: Subscriber,
    stop: CancellationToken,
) {
    let subject = nodes_subject(&shared.prefix);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.announce.notified() => {}
            heard = nodes.next() => {
                let Some(message) = heard else { return };
                match serde_json::from_slice::<Announcement>(&message.payload) {
                    Ok(a) if a.node != shared.node => shared.peers.heard(a, Instant::now()),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("cluster: an announcement that is not one: {e}"),
                }
                continue;
            }
        }
        // Only while connected: the client would hold them otherwise.
        if shared.connected.load(Ordering::Acquire) {
            let said = announcement(&shared, inbound.state(), false);
            let _ = client.publish(subject.clone(), said).await;
        }
    }
}

/// Answers the other nodes' admin requests, one at a time.
async fn answer(
    client: async_nats::Client,
    inbound: Arc<dyn Inbound>,
    mut requests: Subscriber,
    stop: CancellationToken,
) {
    while let Some(Some(message)) = stop.run_until_cancelled(requests.next()).await {
        let Some(reply) = message.reply else {
            continue;
        };
        let answer = inbound.admin(message.payload).await;
        if let Err(e) = client.publish(reply, answer).await {
            tracing::debug!("cluster: cannot answer an admin request: {e}");
        }
    }
}

/// Tells the other nodes this node's connections of the users they ask
/// about.
async fn tell_users(
    client: async_nats::Client,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    mut queries: Subscriber,
    stop: CancellationToken,
) {
    while let Some(Some(message)) = stop.run_until_cancelled(queries.next()).await {
        let (Some(reply), Ok(q)) = (
            message.reply,
            serde_json::from_slice::<UserQuery>(&message.payload),
        ) else {
            continue;
        };
        let answer = UserAnswer {
            node: shared.node.clone(),
            conns: inbound.user_conns(&q.user),
        };
        let Ok(answer) = serde_json::to_vec(&answer) else {
            continue;
        };
        let _ = client.publish(reply, Bytes::from(answer)).await;
    }
}

/// Closes the connections other nodes say a newer one replaced.
async fn take_evictions(
    inbound: Arc<dyn Inbound>,
    mut orders: Subscriber,
    stop: CancellationToken,
) {
    while let Some(Some(message)) = stop.run_until_cancelled(orders.next()).await {
        match serde_json::from_slice::<EvictOrder>(&message.payload) {
            Ok(order) => inbound.evict(order.conn, &order.user),
            Err(e) => tracing::debug!("cluster: an eviction order that is not one: {e}"),
        }
    }
}
