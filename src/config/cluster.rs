//! `[cluster]`: its checks, and the node name in force (the host name when
//! the file names none).

use std::path::Path;

use super::schema::ClusterConfig;

/// Where Linux keeps the host name.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The longest node name, in bytes (it is a label in the admin views).
const MAX_NODE_NAME: usize = 64;

/// The checks of `[cluster]`, as `(key, message)`; fills in the node name.
pub fn check(cluster: &mut ClusterConfig) -> Vec<(&'static str, String)> {
    let mut issues = Vec::new();
    if !cluster.enabled() {
        return issues;
    }
    for url in &cluster.nats {
        if let Err(e) = wsgate_cluster::check_server(url) {
            issues.push(("nats", e));
        }
    }
    if let Err(e) = wsgate_cluster::url_credentials(&cluster.nats) {
        issues.push(("nats", e));
    }
    if cluster.node.is_empty() {
        cluster.node = host_name(Path::new(HOSTNAME_FILE));
    }
    if let Err(e) = check_node(&cluster.node) {
        issues.push(("node", e));
    }
    if let Err(e) = wsgate_cluster::check_prefix(&cluster.subject_prefix) {
        issues.push(("subject_prefix", e));
    }
    if cluster.forward_queue == 0 {
        issues.push(("forward_queue", "must be at least 1".to_string()));
    }
    for (key, value) in [
        ("connect_timeout", cluster.connect_timeout),
        ("announce_interval", cluster.announce_interval),
        ("request_timeout", cluster.request_timeout),
        ("user_query_timeout", cluster.user_query_timeout),
    ] {
        if value.is_zero() {
            issues.push((key, "must be more than 0s".to_string()));
        }
    }
    if cluster.peer_timeout <= cluster.announce_interval {
        issues.push((
            "peer_timeout",
            "must be longer than announce_interval (a few intervals: a node is gone only \
             after several missed announcements)"
                .to_string(),
        ));
    }
    for (key, file) in [
        ("credentials_file", &cluster.credentials_file),
        ("ca_file", &cluster.ca_file),
    ] {
        if let Some(path) = file {
            if let Err(e) = std::fs::metadata(path) {
                issues.push((key, format!("cannot read {}: {e}", path.display())));
            }
        }
    }
    issues
}

/// A node name: 1 to 64 letters, digits, `-` and `_` (it is a NATS subject
/// token and a label in the admin views).
fn check_node(node: &str) -> Result<(), String> {
    if node.is_empty() || node.len() > MAX_NODE_NAME {
        return Err(format!("must be 1 to {MAX_NODE_NAME} characters"));
    }
    if !node.chars().all(wsgate_cluster::is_token_char) {
        return Err(format!(
            "`{node}`: a node name is letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// The host's name, up to its first `.`, with characters a node name cannot
/// have replaced by `-`; `wsgate` when it cannot be read.
fn host_name(file: &Path) -> String {
    let raw = std::fs::read_to_string(file).unwrap_or_default();
    let short = raw.trim().split('.').next().unwrap_or_default();
    let name: String = short
        .chars()
        .map(|c| {
            if wsgate_cluster::is_token_char(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NODE_NAME)
        .collect();
    if name.is_empty() {
        "wsgate".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ClusterConfig {
        ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".to_string()],
            node: "ws-a".to_string(),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_single_node_is_not_checked() {
        let mut c = ClusterConfig {
            node: "not a name".to_string(),
            ..ClusterConfig::default()
        };
        assert!(check(&mut c).is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(check(&mut enabled()).is_empty());
        for (change, key) in [
            (
                (|c: &mut ClusterConfig| c.node = "a.b".into()) as fn(&mut ClusterConfig),
                "node",
            ),
            (|c| c.subject_prefix = "a..b".into(), "subject_prefix"),
            (|c| c.forward_queue = 0, "forward_queue"),
            (|c| c.peer_timeout = c.announce_interval, "peer_timeout"),
            (
                |c| c.request_timeout = Default::default(),
                "request_timeout",
            ),
            (|c| c.nats = vec!["http://x:1".into()], "nats"),
            (
                |c| c.credentials_file = Some("/nonexistent/x.creds".into()),
                "credentials_file",
            ),
        ] {
            let mut c = enabled();
            change(&mut c);
            let issues = check(&mut c);
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].0, key);
        }
    }

    #[test]
    fn the_host_name_is_the_default_node() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("hostname");
        std::fs::write(&file, "web-1.eu.example\n").expect("write");
        assert_eq!(host_name(&file), "web-1");
        std::fs::write(&file, "a+b\n").expect("write");
        assert_eq!(host_name(&file), "a-b");
        assert_eq!(host_name(&dir.path().join("absent")), "wsgate");
        let mut c = ClusterConfig {
            node: String::new(),
            ..enabled()
        };
        assert!(check(&mut c).is_empty());
        assert!(!c.node.is_empty());
    }
}
