//! Test fixtures: a `watch` snapshot line exactly as a daemon sent it (four
//! clients: alice twice and bob on the pubsub route, one anonymous echo
//! client); a cluster's answer to `stats`.

use serde_json::json;
use wsgate_admin_proto::{ClusterInfo, ClusterResult, ConnRow, Event, Stats};

/// The line, as read from the admin socket.
pub const SNAPSHOT: &str = include_str!("testdata/snapshot.json");

/// The snapshot's stats and rows.
pub fn snapshot() -> (Stats, Vec<ConnRow>) {
    match serde_json::from_str(SNAPSHOT) {
        Ok(Event::Snapshot {
            stats, connections, ..
        }) => (*stats, connections),
        other => panic!("not a snapshot: {other:?}"),
    }
}

/// The snapshot's stats as node `ws-a` of a cluster sends them.
pub fn node_stats() -> Stats {
    let (mut stats, _) = snapshot();
    stats.cluster = Some(ClusterInfo {
        node: "ws-a".into(),
        nats_connected: true,
    });
    stats
}

/// `stats` with the cluster scope, as the daemon answers it: `ws-a` (the
/// asked node) with [`node_stats`], `ws-b` too late, `ws-c` silent.
pub fn cluster() -> ClusterResult {
    let answer = json!({"nodes": [
        {"node": "ws-a", "ok": true, "result": node_stats()},
        {"node": "ws-b", "ok": false, "error": {"code": "unavailable",
            "message": "no answer: no answer within 2s"}},
        {"node": "ws-c", "ok": false, "error": {"code": "unavailable",
            "message": "gone: no announcement for 9s"}},
    ]});
    match serde_json::from_value(answer) {
        Ok(result) => result,
        Err(e) => panic!("not a cluster result: {e}"),
    }
}
