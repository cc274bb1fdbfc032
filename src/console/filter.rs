//! The console's filter syntax (`/`): protocol selectors (`user:`, `ip:`,
//! `route:`, `topic:`, `idle>`, `age>`, `queue>`) and free text, parsed into
//! a protocol [`Filter`] plus the words the daemon cannot match.

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;
use wsgate_admin_proto::{parse_network, ConnRow, Filter};

/// A parsed filter line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// The selectors, as the protocol's `filter` object (what `E` sends).
    pub filter: Filter,
    /// Free text, lower-cased: each word must appear in the route, user or
    /// ip, or name a topic the connection is subscribed to.
    pub words: Vec<String>,
    /// `filter.ip` parsed once.
    network: Option<IpNet>,
}

/// Which connections are subscribed to a topic, as the daemon last said
/// (`list` with a `topic` filter): the rows themselves carry no topics.
pub type Members = HashMap<String, HashSet<u64>>;

impl Query {
    /// Parses `user:alice ip:10.0.0.0/8 idle>300 news`. Errors name the
    /// term that is wrong.
    pub fn parse(text: &str) -> Result<Query, String> {
        let mut q = Query::default();
        for term in text.split_whitespace() {
            if let Some((key, value)) = term.split_once(':') {
                let value = nonempty(key, value)?;
                match key {
                    "user" => q.filter.user = Some(value),
                    "route" => q.filter.route = Some(value),
                    "topic" => q.filter.topic = Some(value),
                    "ip" => {
                        q.network = Some(parse_network(&value).map_err(|e| e.to_string())?);
                        q.filter.ip = Some(value);
                    }
                    _ => return Err(format!("unknown selector `{key}:` in `{term}`")),
                }
            } else if let Some((key, value)) = term.split_once('>') {
                let value = value.strip_prefix('=').unwrap_or(value);
                let bad = || format!("`{term}`: `{value}` is not a number");
                match key {
                    "idle" => q.filter.min_idle_s = Some(value.parse().map_err(|_| bad())?),
                    "age" => q.filter.min_age_s = Some(value.parse().map_err(|_| bad())?),
                    "queue" => q.filter.min_queue = Some(value.parse().map_err(|_| bad())?),
                    _ => return Err(format!("unknown selector `{key}>` in `{term}`")),
                }
            } else {
                q.words.push(term.to_lowercase());
            }
        }
        Ok(q)
    }

    /// The topic names whose members the filter needs to know.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.filter.topic.iter().cloned().collect();
        names.extend(self.words.iter().cloned());
        names
    }

    /// Whether a row passes, the way the daemon's filter selects (every
    /// set selector must match; `idle>300` is idle for at least 300 s).
    pub fn matches(&self, row: &ConnRow, members: &Members) -> bool {
        let f = &self.filter;
        let member = |topic: &str| members.get(topic).is_some_and(|ids| ids.contains(&row.id));
        f.route.as_ref().is_none_or(|r| *r == row.route)
            && f.user.as_ref().is_none_or(|u| row.user.as_ref() == Some(u))
            && self.network.is_none_or(|net| {
                row.ip
                    .parse()
                    .is_ok_and(|ip: std::net::IpAddr| net.contains(&ip))
            })
            && f.topic.as_deref().is_none_or(member)
            && f.min_idle_s.is_none_or(|s| row.idle_s >= s)
            && f.min_age_s.is_none_or(|s| row.age_s >= s)
            && f.min_queue.is_none_or(|q| row.queue >= q)
            && self.words.iter().all(|w| {
                row.route.to_lowercase().contains(w)
                    || row.ip.contains(w.as_str())
                    || row
                        .user
                        .as_ref()
                        .is_some_and(|u| u.to_lowercase().contains(w))
                    || member(w)
            })
    }
}

fn nonempty(key: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("`{key}:` needs a value"))
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the daemon writes it (so that fields added later default).
    fn row(id: u64, route: &str, user: Option<&str>, ip: &str) -> ConnRow {
        let row = serde_json::json!({
            "id": id, "route": route, "user": user, "ip": ip,
            "connected_at": "2026-12-02T06:31:57.976Z", "age_s": 100.0, "idle_s": 50.0,
            "msgs_in": 0, "msgs_out": 0, "bytes_in": 0, "bytes_out": 0,
            "queue": 3, "subscriptions": 0, "rtt_ms": null,
        });
        serde_json::from_value(row).expect("a row")
    }

    #[test]
    fn selectors_become_the_protocol_filter() {
        let q =
            Query::parse("user:alice ip:10.0.0.0/8 route:/ws topic:news idle>300 queue>=10 age>5")
                .expect("valid");
        assert_eq!(
            q.filter,
            Filter {
                route: Some("/ws".into()),
                user: Some("alice".into()),
                ip: Some("10.0.0.0/8".into()),
                topic: Some("news".into()),
                min_idle_s: Some(300.0),
                min_age_s: Some(5.0),
                min_queue: Some(10),
            }
        );
        assert!(q.words.is_empty());
        let q = Query::parse("  Bob   echo ").expect("valid");
        assert_eq!(q.words, vec!["bob", "echo"]);
        assert!(q.filter.is_empty());
        assert_eq!(Query::parse("").expect("valid"), Query::default());
    }

    #[test]
    fn bad_terms_are_named() {
        assert_eq!(
            Query::parse("ip:ten"),
            Err("`ten` is not an IP address or CIDR".into())
        );
        assert_eq!(
            Query::parse("idle>soon"),
            Err("`idle>soon`: `soon` is not a number".into())
        );
        assert_eq!(
            Query::parse("colour:red"),
            Err("unknown selector `colour:` in `colour:red`".into())
        );
        assert_eq!(Query::parse("user:"), Err("`user:` needs a value".into()));
    }

    #[test]
    fn rows_match_like_the_daemon_selects() {
        let alice = row(1, "/ws", Some("alice"), "10.1.2.3");
        let echo = row(2, "/ws/echo", None, "192.0.2.7");
        let none = Members::new();
        let m = |text: &str, r: &ConnRow| Query::parse(text).expect("valid").matches(r, &none);
        assert!(m("ip:10.0.0.0/8", &alice) && !m("ip:10.0.0.0/8", &echo));
        assert!(m("ip:192.0.2.7", &echo));
        assert!(m("user:alice", &alice) && !m("user:alice", &echo));
        assert!(m("route:/ws", &alice) && !m("route:/ws", &echo));
        assert!(m("idle>50", &alice) && !m("idle>51", &alice));
        assert!(m("queue>3", &alice) && !m("queue>4", &alice));
        assert!(m("ALI", &alice) && m("echo", &echo) && m("192.0", &echo));
        assert!(!m("ali echo", &alice));
        assert!(!m("topic:news", &alice));
        let members: Members = [("news".to_string(), HashSet::from([1]))].into();
        let q = Query::parse("topic:news").expect("valid");
        assert!(q.matches(&alice, &members) && !q.matches(&echo, &members));
        let q = Query::parse("news").expect("valid");
        assert!(q.matches(&alice, &members) && !q.matches(&echo, &members));
        assert_eq!(q.topics(), vec!["news"]);
    }
}
