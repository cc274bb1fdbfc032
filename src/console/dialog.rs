//! Dialogs as data: what a prompt or confirmation holds, and what the
//! console sends to the daemon (on the command connection) and gets back.

use wsgate_admin_proto::{ClusterResult, ConnDetail, EvictResult, Eviction, Filter, ReloadResult};

use super::input::Mode;

/// The dialog over the screen, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Help,
    /// `/`: the filter line being typed; the error of the last attempt.
    Filter {
        input: String,
        error: Option<String>,
    },
    /// `e`: one connection, named; an optional reason (typed after `r`).
    Evict {
        id: u64,
        user: Option<String>,
        ip: String,
        reason: String,
        typing: bool,
    },
    /// `E`: every connection the filter selects; `count` from the dry run,
    /// then the operator types it (or `yes`).
    EvictMatching {
        filter: Filter,
        text: String,
        count: Option<usize>,
        typed: String,
    },
    /// `r`: the dry run's summary (`None` while it runs), then `y`.
    Reload {
        preview: Option<ReloadResult>,
    },
    /// `D`: the operator types `drain`.
    Drain {
        typed: String,
    },
}

impl Dialog {
    pub fn mode(&self) -> Mode {
        match self {
            Dialog::Help => Mode::Help,
            Dialog::Filter { .. } | Dialog::Drain { .. } => Mode::Typing,
            Dialog::Evict { typing, .. } if *typing => Mode::Typing,
            Dialog::EvictMatching { count: Some(_), .. } => Mode::Typing,
            Dialog::Evict { .. } | Dialog::EvictMatching { .. } | Dialog::Reload { .. } => {
                Mode::Confirm
            }
        }
    }

    /// The text a prompt is typing into.
    pub fn input(&mut self) -> Option<&mut String> {
        match self {
            Dialog::Filter { input, .. } => Some(input),
            Dialog::Evict {
                reason,
                typing: true,
                ..
            } => Some(reason),
            Dialog::EvictMatching { typed, .. } | Dialog::Drain { typed } => Some(typed),
            _ => None,
        }
    }
}

/// The selected connection as `show` gives it, and how many other
/// connections its user and its address have (from `list`).
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub conn: ConnDetail,
    pub same_user: usize,
    pub same_ip: usize,
}

/// How many other connections of a user or an address the detail pane
/// counts; more show as `100+`.
pub const PEERS_COUNTED: usize = 100;

impl Detail {
    /// `3`, or `100+` past [`PEERS_COUNTED`].
    pub fn count(n: usize) -> String {
        if n >= PEERS_COUNTED {
            format!("{PEERS_COUNTED}+")
        } else {
            n.to_string()
        }
    }
}

/// A request for the command connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// The selected connection's topics and peers.
    Show(u64),
    /// Which connections are subscribed to a topic (for the filter).
    Members(String),
    EvictPreview(Filter),
    Evict(Eviction),
    Reload {
        dry_run: bool,
    },
    Drain,
    /// The effective config, for `drain_timeout`.
    Config,
    /// `stats` on every node of the daemon's cluster (the cluster view).
    ClusterStats,
}

/// What came back; errors as the client shows them (`code: message`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Detail(Result<Detail, String>),
    Members(String, Result<Vec<u64>, String>),
    Preview(Result<usize, String>),
    Evicted(Result<EvictResult, String>),
    Reload(Result<ReloadResult, String>),
    Drain(Result<(), String>),
    /// `[server] drain_timeout` in seconds, if the config says.
    DrainTimeout(Result<Option<f64>, String>),
    /// Each node's `stats`, the asked node first; an error from a daemon
    /// that is not in a cluster.
    Cluster(Result<ClusterResult, String>),
}

/// A reload result in a few lines: what applies, what needs a restart,
/// routes removed, connections over tightened caps.
pub fn reload_summary(r: &ReloadResult) -> Vec<String> {
    let mut out = Vec::new();
    let c = &r.changes;
    if c.is_empty() && c.routes_removed.is_empty() && r.over_cap.is_empty() {
        out.push("no changes".to_string());
    }
    out.extend(c.applied.iter().map(|k| format!("applies live: {k}")));
    out.extend(
        c.restart_required
            .iter()
            .map(|k| format!("needs a restart: {k}")),
    );
    out.extend(
        c.routes_removed
            .iter()
            .map(|p| format!("route removed: {p}")),
    );
    if r.on_removed_routes > 0 {
        out.push(format!(
            "{} connection(s) on removed routes close (1001)",
            r.on_removed_routes
        ));
    }
    let closing = r.over_cap.iter().filter(|o| o.closes).count();
    if !r.over_cap.is_empty() {
        out.push(format!(
            "{} connection(s) over a tightened cap, {closing} of them close (4006)",
            r.over_cap.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_admin_proto::{Changes, Overage};

    #[test]
    fn reload_summaries_say_what_would_happen() {
        let r = ReloadResult {
            dry_run: true,
            changes: Changes {
                applied: vec!["limits.max_connections_per_ip: 100 -> 2".into()],
                restart_required: vec!["server.listen: a -> b".into()],
                ..Changes::default()
            },
            over_cap: vec![Overage {
                id: 5,
                route: "/ws".into(),
                cap: "ip".into(),
                closes: true,
            }],
            on_removed_routes: 0,
        };
        assert_eq!(
            reload_summary(&r),
            [
                "applies live: limits.max_connections_per_ip: 100 -> 2",
                "needs a restart: server.listen: a -> b",
                "1 connection(s) over a tightened cap, 1 of them close (4006)",
            ]
        );
        let none = ReloadResult {
            changes: Changes::default(),
            over_cap: vec![],
            ..r
        };
        assert_eq!(reload_summary(&none), ["no changes"]);
    }
}
