//! Test fixtures: a `watch` snapshot line exactly as a daemon sent it (four
//! clients: alice twice and bob on the pubsub route, one anonymous echo
//! client).

use wsgate_admin_proto::{ConnRow, Event, Stats};

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
