//! The other nodes, as their announcements tell: each node publishes its
//! name, version, connection count and whether it drains every
//! `announce_interval` on `<prefix>.nodes`; one silent for `peer_timeout`
//! is shown as gone, one that said it leaves as left.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a node says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub node: String,
    pub version: String,
    pub connections: u64,
    pub draining: bool,
    /// The last announcement of a node that stops.
    #[serde(default)]
    pub leaving: bool,
}

/// What the daemon tells the bus for its announcements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeState {
    pub connections: u64,
    pub draining: bool,
}

/// How a peer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Announced within `peer_timeout`.
    Live,
    /// Silent for `peer_timeout` or more.
    Gone,
    /// Said it stops.
    Left,
}

/// Another node, as last announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub announcement: Announcement,
    pub state: PeerState,
    /// Since its last announcement.
    pub silent_for: Duration,
}

/// The table of the other nodes.
pub struct Peers {
    seen: Mutex<BTreeMap<String, (Announcement, Instant)>>,
    timeout: Duration,
}

impl Peers {
    pub fn new(timeout: Duration) -> Self {
        Self {
            seen: Mutex::default(),
            timeout,
        }
    }

    /// Takes an announcement (another node's: a node does not hear its own).
    pub fn heard(&self, announcement: Announcement, now: Instant) {
        self.lock()
            .insert(announcement.node.clone(), (announcement, now));
    }

    /// Every node heard of, by name.
    pub fn all(&self, now: Instant) -> Vec<Peer> {
        self.lock()
            .values()
            .map(|(a, at)| {
                let silent_for = now.saturating_duration_since(*at);
                let state = if a.leaving {
                    PeerState::Left
                } else if silent_for >= self.timeout {
                    PeerState::Gone
                } else {
                    PeerState::Live
                };
                Peer {
                    announcement: a.clone(),
                    state,
                    silent_for,
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Announcement, Instant)>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(node: &str, leaving: bool) -> Announcement {
        Announcement {
            node: node.to_string(),
            version: "0.1.0".to_string(),
            connections: 3,
            draining: leaving,
            leaving,
        }
    }

    #[test]
    fn silence_makes_a_node_gone_and_leaving_makes_it_left() {
        let peers = Peers::new(Duration::from_secs(6));
        let t0 = Instant::now();
        peers.heard(said("b", false), t0);
        peers.heard(said("c", false), t0);
        let states = |at| -> Vec<(String, PeerState)> {
            peers
                .all(at)
                .into_iter()
                .map(|p| (p.announcement.node, p.state))
                .collect()
        };
        assert_eq!(
            states(t0 + Duration::from_secs(5)),
            vec![("b".into(), PeerState::Live), ("c".into(), PeerState::Live)]
        );
        peers.heard(said("c", false), t0 + Duration::from_secs(5));
        assert_eq!(
            states(t0 + Duration::from_secs(7)),
            vec![("b".into(), PeerState::Gone), ("c".into(), PeerState::Live)]
        );
        peers.heard(said("c", true), t0 + Duration::from_secs(8));
        assert_eq!(states(t0 + Duration::from_secs(8))[1].1, PeerState::Left);
        // A node that comes back is live again.
        peers.heard(said("b", false), t0 + Duration::from_secs(9));
        assert_eq!(states(t0 + Duration::from_secs(9))[0].1, PeerState::Live);
    }
}
