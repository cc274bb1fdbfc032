//! Who is connected: admission against the caps, and the index of every
//! live connection's handle ([`Conn`], in [`crate::handle`]).
//!
//! Counts follow the registry by construction: [`Registry::admit`] checks
//! every cap and inserts the connection under one lock, and returns a
//! [`Slot`] that the connection task holds; dropping the slot (however the
//! task ends) removes the connection and every count it added. No gauge can
//! drift and no quota can stay "full" after everyone left.
//!
//! The per-message path never takes the registry lock: it only touches the
//! connection's own atomics and send queue ([`Conn`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{CapScope, Limits, OnUserLimit};
use crate::handle::{lock, Conn, ConnId};
use crate::metrics::Traffic;
use crate::ws::close;

/// Why an admission was refused, with its HTTP status and metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `[limits] max_connections`: 503.
    Total,
    /// The route's `max_connections`: 503.
    Route,
    /// `max_connections_per_ip`: 429.
    Ip,
    /// `max_connections_per_user` with `reject`: 429.
    User,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "total_limit",
            Refusal::Route => "route_limit",
            Refusal::Ip => "ip_limit",
            Refusal::User => "user_limit",
        }
    }
}

/// Counts within one scope: the whole daemon, or one route.
#[derive(Default)]
struct Scope {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    /// Each user's connections, oldest first.
    by_user: HashMap<Arc<str>, VecDeque<ConnId>>,
}

impl Scope {
    fn user_count(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, VecDeque::len)
    }

    fn peaks(&self) -> Peaks {
        Peaks {
            ip: self.by_ip.values().copied().max().unwrap_or(0),
            user: self.by_user.values().map(VecDeque::len).max().unwrap_or(0),
        }
    }

    fn add(&mut self, id: ConnId, ip: IpAddr, user: Option<&Arc<str>>) {
        self.total += 1;
        *self.by_ip.entry(ip).or_default() += 1;
        if let Some(u) = user {
            self.by_user.entry(Arc::clone(u)).or_default().push_back(id);
        }
    }

    fn remove_user(&mut self, id: ConnId, user: &str) {
        if let Some(list) = self.by_user.get_mut(user) {
            list.retain(|c| *c != id);
            if list.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    fn remove(&mut self, id: ConnId, ip: IpAddr, user: Option<&str>) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
        if let Some(u) = user {
            self.remove_user(id, u);
        }
    }
}

#[derive(Default)]
struct Inner {
    conns: HashMap<ConnId, Arc<Conn>>,
    /// What closed connections carried; live ones are summed on demand.
    closed: Traffic,
    global: Scope,
    routes: HashMap<Arc<str>, Scope>,
}

/// Every live connection, and the counts the caps are checked against.
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

/// What a connection asks to be admitted with.
pub struct Candidate<'a> {
    pub route: &'a Arc<str>,
    pub ip: IpAddr,
    pub user: Option<&'a Arc<str>>,
    /// The global `[limits]`.
    pub global: &'a Limits,
    /// The route's effective limits.
    pub limits: &'a Limits,
    /// The user's connections on the other nodes, for a per-user cap whose
    /// scope is `cluster` (empty on a single node).
    pub remote: &'a [RemoteUserConn],
}

/// A user's connection on another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUserConn {
    pub node: String,
    pub conn: ConnId,
    pub route: String,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_ms: u64,
}

/// An admitted connection: its slot, and the connection on another node it
/// replaces (the user's oldest in the cluster, which that node is to close
/// with 4001).
pub struct Admitted {
    pub slot: Slot,
    pub replaces: Option<RemoteUserConn>,
}

/// When a connection opened, in milliseconds since the Unix epoch.
pub fn opened_ms(conn: &Conn) -> u64 {
    conn.connected_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A counts snapshot for `stats` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub total: usize,
    /// Each route that has connections: its path, its connections, and
    /// its busiest address and user; sorted by path.
    pub by_route: Vec<(String, usize, Peaks)>,
    pub ips: usize,
    pub users: usize,
    /// The busiest address and user over the whole daemon.
    pub peaks: Peaks,
}

/// The connections of a scope's busiest client address and busiest user:
/// how close the per-IP and per-user caps are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Peaks {
    pub ip: usize,
    pub user: usize,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Checks every cap and, if the candidate fits, registers it. With
    /// `evict_oldest`, the user's oldest connection is told to close with
    /// 4001 and its per-user share passes to the newcomer at once.
    /// A per-user cap of scope `cluster` counts `c.remote` too, and with
    /// `evict_oldest` the oldest may be on another node: it is named in
    /// [`Admitted::replaces`] for the caller to have it closed.
    pub fn admit(self: &Arc<Self>, c: Candidate<'_>) -> Result<Admitted, Refusal> {
        let mut inner = lock(&self.inner);
        let Inner {
            conns,
            global,
            routes,
            ..
        } = &mut *inner;
        let empty = Scope::default();
        let route_scope = routes.get(c.route).unwrap_or(&empty);

        if global.total >= c.global.max_connections {
            return Err(Refusal::Total);
        }
        if route_scope.total >= c.limits.max_connections {
            return Err(Refusal::Route);
        }
        let ip_global = global.by_ip.get(&c.ip).copied().unwrap_or(0);
        let ip_route = route_scope.by_ip.get(&c.ip).copied().unwrap_or(0);
        if ip_global >= c.global.max_connections_per_ip
            || ip_route >= c.limits.max_connections_per_ip
        {
            return Err(Refusal::Ip);
        }
        let mut victim = None;
        let mut replaces = None;
        if let Some(user) = c.user {
            let remote_in = |scope: CapScope, route: Option<&str>| -> Vec<&RemoteUserConn> {
                if scope != CapScope::Cluster {
                    return Vec::new();
                }
                c.remote
                    .iter()
                    .filter(|r| route.is_none_or(|p| r.route == p))
                    .collect()
            };
            let remote_route = remote_in(c.limits.max_connections_per_user_scope, Some(c.route));
            let remote_global = remote_in(c.global.max_connections_per_user_scope, None);
            let over_route = route_scope.user_count(user) + remote_route.len()
                >= c.limits.max_connections_per_user;
            let over_global =
                global.user_count(user) + remote_global.len() >= c.global.max_connections_per_user;
            if over_route || over_global {
                // The policy of the scope whose cap is hit decides.
                let policy = if over_route {
                    c.limits.on_user_limit
                } else {
                    c.global.on_user_limit
                };
                if policy == OnUserLimit::Reject {
                    return Err(Refusal::User);
                }
                let (local, remote) = if over_route {
                    (route_scope.by_user.get(&**user), remote_route)
                } else {
                    (global.by_user.get(&**user), remote_global)
                };
                let local = local
                    .and_then(|l| l.front())
                    .and_then(|id| conns.get(id))
                    .cloned();
                // The oldest of the cluster: by the opening nodes' clocks.
                let remote = remote
                    .into_iter()
                    .min_by_key(|r| (r.opened_ms, r.node.as_str(), r.conn));
                match (local, remote) {
                    (Some(l), Some(r)) if r.opened_ms < opened_ms(&l) => {
                        replaces = Some(r.clone());
                    }
                    (Some(l), _) => victim = Some(l),
                    (None, Some(r)) => replaces = Some(r.clone()),
                    (None, None) => {}
                }
            }
        }
        if let Some(old) = &victim {
            // Hand the old connection's per-user share to the new one now;
            // its slot still holds the total, IP and route counts until its
            // task ends.
            old.hand_over_user_share();
            if let Some(user) = &old.user {
                global.remove_user(old.id, user);
                if let Some(scope) = routes.get_mut(&old.route) {
                    scope.remove_user(old.id, user);
                }
            }
            old.request_close(
                close::REPLACED,
                "replaced by a newer connection of the same user",
            );
        }

        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(
            id,
            Arc::clone(c.route),
            c.user.cloned(),
            c.ip,
            c.limits.send_queue,
            c.limits.send_queue_bytes,
            c.limits.max_subscriptions,
        ));
        global.add(id, c.ip, c.user);
        routes
            .entry(Arc::clone(c.route))
            .or_default()
            .add(id, c.ip, c.user);
        conns.insert(id, Arc::clone(&conn));
        drop(inner);
        Ok(Admitted {
            slot: Slot {
                registry: Arc::clone(self),
                conn,
            },
            replaces,
        })
    }

    /// This node's connections of `user`, oldest first (for the other
    /// nodes' cluster-wide per-user caps).
    pub fn user_conns(&self, user: &str) -> Vec<Arc<Conn>> {
        let inner = lock(&self.inner);
        inner
            .global
            .by_user
            .get(user)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.conns.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One connection by id.
    pub fn get(&self, id: ConnId) -> Option<Arc<Conn>> {
        lock(&self.inner).conns.get(&id).cloned()
    }

    /// Every live connection (a snapshot of handles; read their stats after
    /// the lock is gone).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        lock(&self.inner).conns.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total traffic of every connection so far. The per-message path only
    /// touches each connection's own counters; the daemon-wide totals are
    /// summed here, under the lock that also moves a closing connection's
    /// totals, so they never count one twice or lose one.
    pub fn traffic(&self) -> Traffic {
        let inner = lock(&self.inner);
        let mut t = inner.closed;
        for c in inner.conns.values() {
            t += c.stats.traffic();
        }
        t
    }

    pub fn counts(&self) -> Counts {
        let inner = lock(&self.inner);
        let mut by_route: Vec<(String, usize, Peaks)> = inner
            .routes
            .iter()
            .map(|(r, s)| (r.to_string(), s.total, s.peaks()))
            .collect();
        by_route.sort_by(|a, b| a.0.cmp(&b.0));
        Counts {
            total: inner.global.total,
            by_route,
            ips: inner.global.by_ip.len(),
            users: inner.global.by_user.len(),
            peaks: inner.global.peaks(),
        }
    }

    fn release(&self, conn: &Conn) {
        let mut inner = lock(&self.inner);
        let user = conn.user_share();
        inner.conns.remove(&conn.id);
        inner.closed += conn.stats.traffic();
        inner.global.remove(conn.id, conn.ip, user);
        if let Some(scope) = inner.routes.get_mut(&conn.route) {
            scope.remove(conn.id, conn.ip, user);
            if scope.total == 0 {
                inner.routes.remove(&conn.route);
            }
        }
    }
}

/// A connection's place in the registry; dropping it frees the place.
pub struct Slot {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Slot {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.release(&self.conn);
    }
}

#[cfg(test)]
mod tests {
    use wsgate_plugin_api::Outbound;

    use super::*;
    use crate::handle::Offer;
    use crate::metrics::SlowConsumer;

    fn limits(total: usize, per_ip: usize, per_user: usize, on_user: OnUserLimit) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            max_connections_per_user: per_user,
            on_user_limit: on_user,
            ..Limits::default()
        }
    }

    fn admit(
        r: &Arc<Registry>,
        route: &Arc<str>,
        ip: [u8; 4],
        user: Option<&Arc<str>>,
        l: &Limits,
    ) -> Result<Slot, Refusal> {
        r.admit(Candidate {
            route,
            ip: IpAddr::from(ip),
            user,
            global: l,
            limits: l,
            remote: &[],
        })
        .map(|a| a.slot)
    }

    #[test]
    fn caps_refuse_and_dropping_slots_frees_them() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let l = limits(3, 2, 10, OnUserLimit::Reject);
        let a = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("a");
        let b = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("b");
        assert_eq!(
            admit(&r, &route, [1, 1, 1, 1], None, &l).err(),
            Some(Refusal::Ip)
        );
        let c = admit(&r, &route, [2, 2, 2, 2], None, &l).expect("c");
        assert_eq!(
            admit(&r, &route, [3, 3, 3, 3], None, &l).err(),
            Some(Refusal::Total)
        );
        drop((a, b, c));
        assert_eq!(r.counts(), Counts::default());
        assert!(admit(&r, &route, [1, 1, 1, 1], None, &l).is_ok());
    }

    #[test]
    fn evict_oldest_hands_over_the_user_share() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let alice: Arc<str> = "alice".into();
        let l = limits(10, 10, 2, OnUserLimit::EvictOldest);
        let first = admit(&r, &route, [1, 1, 1, 1], Some(&alice), &l).expect("1");
        let second = admit(&r, &route, [1, 1, 1, 1], Some(&alice), &l).expect("2");
        let third = admit(&r, &route, [1, 1, 1, 1], Some(&alice), &l).expect("3");
        assert!(first.conn().closing(), "the oldest is told to close");
        assert!(!second.conn().closing());
        drop(first);
        // The newcomer's count is right: one more would evict `second`.
        let fourth = admit(&r, &route, [1, 1, 1, 1], Some(&alice), &l).expect("4");
        assert!(second.conn().closing());
        drop((second, third, fourth));
        assert_eq!(r.counts(), Counts::default());
    }

    #[test]
    fn reject_refuses_the_user_over_the_cap() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let bob: Arc<str> = "bob".into();
        let l = limits(10, 10, 1, OnUserLimit::Reject);
        let _a = admit(&r, &route, [1, 1, 1, 1], Some(&bob), &l).expect("a");
        assert_eq!(
            admit(&r, &route, [1, 1, 1, 2], Some(&bob), &l).err(),
            Some(Refusal::User)
        );
    }

    #[test]
    fn route_caps_count_only_their_route() {
        let r = Registry::new();
        let a: Arc<str> = "/a".into();
        let b: Arc<str> = "/b".into();
        let global = limits(10, 10, 10, OnUserLimit::Reject);
        let small = limits(1, 10, 10, OnUserLimit::Reject);
        let cand = |route| Candidate {
            route,
            ip: IpAddr::from([1, 1, 1, 1]),
            user: None,
            global: &global,
            limits: &small,
            remote: &[],
        };
        let _x = r.admit(cand(&a)).expect("x");
        assert_eq!(r.admit(cand(&a)).err(), Some(Refusal::Route));
        assert!(r.admit(cand(&b)).is_ok());
    }

    fn remote(node: &str, conn: ConnId, route: &str, opened_ms: u64) -> RemoteUserConn {
        RemoteUserConn {
            node: node.to_string(),
            conn,
            route: route.to_string(),
            opened_ms,
        }
    }

    #[test]
    fn a_cluster_scope_counts_the_other_nodes_and_evicts_the_oldest_wherever_it_is() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let alice: Arc<str> = "alice".into();
        let mut l = limits(10, 10, 2, OnUserLimit::EvictOldest);
        l.max_connections_per_user_scope = CapScope::Cluster;
        let cand = |remote: &'static [RemoteUserConn]| Candidate {
            route: &route,
            ip: IpAddr::from([1, 1, 1, 1]),
            user: Some(&alice),
            global: &l,
            limits: &l,
            remote,
        };
        // One here and one, older, elsewhere: the cap of 2 is reached and
        // the remote one is the oldest.
        let here = r.admit(cand(&[])).expect("first");
        let old = Box::leak(Box::new([remote("b", 7, "/ws", 1)]));
        let admitted = r.admit(cand(old)).expect("second");
        assert_eq!(admitted.replaces, Some(old[0].clone()));
        assert!(!here.slot.conn().closing(), "the local one is newer");

        // The remote one is newer than the local ones: the local oldest goes.
        let young = Box::leak(Box::new([remote("b", 8, "/ws", u64::MAX)]));
        let third = r.admit(cand(young)).expect("third");
        assert_eq!(third.replaces, None);
        assert!(here.slot.conn().closing());

        // Another route's connections elsewhere do not count on this route
        // (the global cap here is of node scope).
        let mut global = limits(10, 10, 100, OnUserLimit::EvictOldest);
        global.max_connections_per_user_scope = CapScope::Node;
        let elsewhere = Box::leak(Box::new([
            remote("b", 9, "/other", 1),
            remote("c", 3, "/other", 2),
        ]));
        let r2 = Registry::new();
        let c = Candidate {
            route: &route,
            ip: IpAddr::from([1, 1, 1, 1]),
            user: Some(&alice),
            global: &global,
            limits: &l,
            remote: elsewhere,
        };
        assert_eq!(r2.admit(c).expect("fits").replaces, None);

        // With reject, the remote count refuses.
        let mut strict = limits(10, 10, 1, OnUserLimit::Reject);
        strict.max_connections_per_user_scope = CapScope::Cluster;
        let r3 = Registry::new();
        let one = Box::leak(Box::new([remote("b", 1, "/ws", 1)]));
        let c = Candidate {
            route: &route,
            ip: IpAddr::from([1, 1, 1, 1]),
            user: Some(&alice),
            global: &strict,
            limits: &strict,
            remote: one,
        };
        assert_eq!(r3.admit(c).err(), Some(Refusal::User));
        // Node scope: the same remote connection is not counted.
        strict.max_connections_per_user_scope = CapScope::Node;
        let c = Candidate {
            route: &route,
            ip: IpAddr::from([1, 1, 1, 1]),
            user: Some(&alice),
            global: &strict,
            limits: &strict,
            remote: one,
        };
        assert!(r3.admit(c).is_ok());
    }

    #[test]
    fn traffic_totals_keep_what_closed_connections_carried() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let l = limits(10, 10, 10, OnUserLimit::Reject);
        let a = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("a");
        let b = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("b");
        a.conn().stats.msgs_in.store(3, Ordering::Relaxed);
        a.conn().stats.bytes_out.store(100, Ordering::Relaxed);
        b.conn().stats.msgs_in.store(4, Ordering::Relaxed);
        assert_eq!(r.traffic().msgs_in, 7);
        drop(a);
        let t = r.traffic();
        assert_eq!((t.msgs_in, t.bytes_out), (7, 100));
        drop(b);
        assert_eq!(r.traffic().msgs_in, 7);
    }

    #[test]
    fn full_queue_requests_a_slow_consumer_close() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let mut l = limits(10, 10, 10, OnUserLimit::Reject);
        l.send_queue = 2;
        let s = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("s");
        let c = s.conn();
        assert_eq!(c.offer(Outbound::text("1")), Offer::Queued);
        assert_eq!(c.offer(Outbound::text("2")), Offer::Queued);
        assert_eq!(
            c.offer(Outbound::text("3")),
            Offer::Full(SlowConsumer::QueueFull)
        );
        assert_eq!(c.offer(Outbound::text("4")), Offer::Closing);
        let mut out = Vec::new();
        let close = c.take(&mut out, 10).expect("close request");
        assert!(out.is_empty(), "a slow consumer's queue is dropped");
        assert_eq!(close.code, close::SLOW_CONSUMER);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_with_what_the_socket_did_not_take() {
        let r = Registry::new();
        let route: Arc<str> = "/ws".into();
        let mut l = limits(10, 10, 10, OnUserLimit::Reject);
        l.send_queue = 100;
        l.send_queue_bytes = 10;
        let s = admit(&r, &route, [1, 1, 1, 1], None, &l).expect("s");
        let c = s.conn();
        // Exactly the bound fits.
        assert_eq!(c.offer(Outbound::text("1234")), Offer::Queued);
        assert_eq!(c.offer(Outbound::text("567890")), Offer::Queued);
        // Taken but not written: still counted.
        let mut out = Vec::new();
        assert!(c.take(&mut out, 1).is_none());
        assert_eq!(out.len(), 1);
        c.set_unsent(4);
        assert!(c.take(&mut out, 10).is_none());
        c.set_unsent(4 + 6);
        assert_eq!(
            c.offer(Outbound::text("x")),
            Offer::Full(SlowConsumer::QueueBytes)
        );
        let close = c.take(&mut out, 10).expect("close request");
        assert_eq!(close.code, close::SLOW_CONSUMER);
        assert!(
            close.reason.contains("send_queue_bytes"),
            "{}",
            close.reason
        );

        // The socket took everything: the whole bound is free again, and a
        // message larger than it is refused even on an empty queue.
        let s = admit(&r, &route, [1, 1, 1, 2], None, &l).expect("s");
        let c = s.conn();
        assert_eq!(c.offer(Outbound::text("1234567890")), Offer::Queued);
        assert!(c.take(&mut out, 10).is_none());
        c.set_unsent(0);
        assert_eq!(c.offer(Outbound::text("1234567890")), Offer::Queued);
        assert!(c.take(&mut out, 10).is_none());
        c.set_unsent(0);
        assert_eq!(
            c.offer(Outbound::text("12345678901")),
            Offer::Full(SlowConsumer::QueueBytes)
        );
    }
}
