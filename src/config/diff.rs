//! What a reload changes: a pure function of the old and new settings.
//!
//! Keys are compared on the redacted form of the config, so a secret's value
//! never appears in a change list; a changed secret shows as a changed key.

use std::collections::BTreeMap;

use serde::Serialize;

use super::listeners;
use super::schema::ServerConfig;
use super::settings::Settings;

/// Keys that are read once at start, so a change needs a restart.
pub const RESTART_KEYS: &[&str] = &[
    "server.listen",
    "server.admin_socket",
    "server.admin_socket_mode",
    "server.admin_watch_buffer",
    "server.watch_config",
    "server.reload_debounce",
    "cluster.nats",
    "cluster.node",
    "cluster.subject_prefix",
    "cluster.credentials_file",
    "cluster.ca_file",
    "cluster.forward_queue",
    "cluster.connect_timeout",
    "cluster.announce_interval",
    "cluster.peer_timeout",
    "cluster.request_timeout",
    "cluster.user_query_timeout",
];

/// The listeners, which apply live (`serve`, `tls`, `proxy_protocol`) as
/// long as their names and addresses stay; a change to those needs a
/// restart, and until then the running listeners keep all their settings.
pub const LISTENERS_KEY: &str = "server.listeners";

/// Each listener's name and address: what a reload cannot change.
fn listener_identities(server: &ServerConfig) -> Vec<(String, std::net::SocketAddr)> {
    listeners::effective(server)
        .into_iter()
        .map(|l| (l.name, l.address))
        .collect()
}

/// Whether the new config binds other listeners than the running one.
pub fn listeners_moved(running: &ServerConfig, new: &ServerConfig) -> bool {
    listener_identities(running) != listener_identities(new)
}

/// Keys read only at start keep their running values in the new settings,
/// so that the config in force (admin `config`) says what really runs; the
/// next reload reports them again until a restart.
pub fn keep_restart_keys(running: &Settings, new: &mut Settings) {
    if listeners_moved(&running.config.server, &new.config.server) {
        new.config.server.listeners = running.config.server.listeners.clone();
        new.listeners = running.listeners.clone();
    }
    keep_restart_server_keys(&running.config.server, &mut new.config.server);
    // The bus runs with the cluster it started with; only
    // `ready_requires_nats` applies live.
    let ready_requires_nats = new.config.cluster.ready_requires_nats;
    new.config.cluster = running.config.cluster.clone();
    new.config.cluster.ready_requires_nats = ready_requires_nats;
}

fn keep_restart_server_keys(running: &ServerConfig, new: &mut ServerConfig) {
    new.listen = running.listen;
    new.admin_socket = running.admin_socket.clone();
    new.admin_socket_mode = running.admin_socket_mode.clone();
    new.admin_watch_buffer = running.admin_watch_buffer;
    new.watch_config = running.watch_config;
    new.reload_debounce = running.reload_debounce;
}

/// The difference between two configs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Changed keys that apply live, as `path: old -> new` (secrets: `path`).
    pub applied: Vec<String>,
    /// Changed keys that need a restart; the running value stays.
    pub restart_required: Vec<String>,
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    /// Routes whose router, auth, origins, limits or options changed.
    pub routes_changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.restart_required.is_empty()
    }
}

/// Compares two settings.
pub fn diff(old: &Settings, new: &Settings) -> Changes {
    let mut out = Changes::default();
    // Real values decide what changed; redacted ones are what is shown.
    let mut a = Doc::of(old);
    let mut b = Doc::of(new);
    let routes_a = a.take_routes();
    let routes_b = b.take_routes();

    let mut changed = Vec::new();
    compare("", a.pair(), b.pair(), &mut changed);
    for (path, a_routes, b_routes) in routes(&routes_a, &routes_b) {
        match (a_routes, b_routes) {
            (None, Some(_)) => out.routes_added.push(path.clone()),
            (Some(_), None) => out.routes_removed.push(path.clone()),
            (Some(x), Some(y)) => {
                let before = changed.len();
                compare(&format!("routes[{path}]"), pair(x), pair(y), &mut changed);
                if changed.len() > before {
                    out.routes_changed.push(path.clone());
                }
            }
            (None, None) => {}
        }
    }
    if old.api_keys != new.api_keys {
        changed.push(("api keys".into(), None));
    }
    for path in &out.routes_added {
        changed.push((format!("routes[{path}] added"), None));
    }
    for path in &out.routes_removed {
        changed.push((format!("routes[{path}] removed"), None));
    }

    for (path, values) in changed {
        let line = match values {
            Some((x, y)) => format!("{path}: {x} -> {y}"),
            None => path.clone(),
        };
        let restart = if path == LISTENERS_KEY {
            listeners_moved(&old.config.server, &new.config.server)
        } else {
            RESTART_KEYS.contains(&path.as_str())
        };
        if restart {
            out.restart_required.push(line);
        } else {
            out.applied.push(line);
        }
    }
    out
}

type Change = (String, Option<(String, String)>);

/// A config as values: real (to compare) and redacted (to show).
struct Doc {
    real: toml::Value,
    shown: toml::Value,
}

/// A value with its redacted twin (same shape, secrets replaced).
type Pair<'a> = (&'a toml::Value, &'a toml::Value);

fn pair(p: &RouteValues) -> Pair<'_> {
    (&p.0, &p.1)
}

impl Doc {
    fn of(s: &Settings) -> Self {
        let real = toml::Value::try_from(&s.config)
            .unwrap_or_else(|_| toml::Value::Table(toml::Table::new()));
        Doc {
            real,
            shown: s.redacted_value(),
        }
    }

    fn pair(&self) -> Pair<'_> {
        (&self.real, &self.shown)
    }

    fn take_routes(&mut self) -> Vec<RouteValues> {
        let take = |v: &mut toml::Value| {
            v.as_table_mut()
                .and_then(|t| t.remove("routes"))
                .and_then(|r| match r {
                    toml::Value::Array(a) => Some(a),
                    _ => None,
                })
                .unwrap_or_default()
        };
        take(&mut self.real)
            .into_iter()
            .zip(take(&mut self.shown))
            .collect()
    }
}

/// A route as (real, redacted) values.
type RouteValues = (toml::Value, toml::Value);

/// Routes matched by path: (path, old, new).
fn routes<'a>(
    a: &'a [RouteValues],
    b: &'a [RouteValues],
) -> Vec<(String, Option<&'a RouteValues>, Option<&'a RouteValues>)> {
    let key = |v: &(toml::Value, toml::Value)| {
        v.0.get("path")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string()
    };
    type Both<'a> = Option<&'a RouteValues>;
    let mut by_path: BTreeMap<String, (Both<'a>, Both<'a>)> = BTreeMap::new();
    for r in a {
        by_path.entry(key(r)).or_default().0 = Some(r);
    }
    for r in b {
        by_path.entry(key(r)).or_default().1 = Some(r);
    }
    by_path.into_iter().map(|(p, (x, y))| (p, x, y)).collect()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Records every leaf that differs; values of secrets are not shown.
fn compare(prefix: &str, a: Pair<'_>, b: Pair<'_>, out: &mut Vec<Change>) {
    let none = toml::Value::Table(toml::Table::new());
    // A redacted table is a leaf: its keys may be secrets themselves.
    let shown_tables = a.1.is_table() && b.1.is_table();
    match (a.0, b.0) {
        (toml::Value::Table(x), toml::Value::Table(y)) if shown_tables => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = join(prefix, k);
                let shown = |p: Pair<'_>| p.1.get(k.as_str()).cloned().unwrap_or(none.clone());
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => {
                        let (sa, sb) = (shown(a), shown(b));
                        compare(&path, (va, &sa), (vb, &sb), out)
                    }
                    (Some(_), None) => out.push(leaf(path, &shown(a), None)),
                    (None, Some(_)) => out.push(leaf(path, &shown(b), None).flip()),
                    (None, None) => {}
                }
            }
        }
        (x, y) if x == y => {}
        _ => out.push(leaf(prefix.to_string(), a.1, Some(b.1))),
    }
}

/// A changed leaf: `(path, Some((old, new)))`, or `(path, None)` when
/// either side is a secret.
fn leaf(path: String, old: &toml::Value, new: Option<&toml::Value>) -> Change {
    let unset = toml::Value::String("(unset)".into());
    let new = new.unwrap_or(&unset);
    let secret = [old, new]
        .iter()
        .any(|v| show(v).contains(super::schema::REDACTED));
    let values = (!secret).then(|| (show(old), show(new)));
    (path, values)
}

trait Flip {
    fn flip(self) -> Self;
}

impl Flip for Change {
    /// For a key that appeared: `(unset) -> value`.
    fn flip(self) -> Self {
        let (path, values) = self;
        (path, values.map(|(a, b)| (b, a)))
    }
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s == "(unset)" => s.clone(),
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::from_text("t.toml", text).expect("valid")
    }

    #[test]
    fn identical_configs_have_no_changes() {
        let a = settings("[limits]\nmax_connections = 5\n");
        let b = settings("[limits]\nmax_connections = 5\n");
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn limits_apply_live_and_listen_needs_a_restart() {
        let a = settings(
            "[server]\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_connections_per_ip = 100\n",
        );
        let b =
            settings("[server]\nlisten = \"127.0.0.1:2\"\n[limits]\nmax_connections_per_ip = 1\n");
        let c = diff(&a, &b);
        assert_eq!(c.applied, vec!["limits.max_connections_per_ip: 100 -> 1"]);
        assert_eq!(
            c.restart_required,
            vec!["server.listen: \"127.0.0.1:1\" -> \"127.0.0.1:2\""]
        );
    }

    #[test]
    fn every_restart_key_keeps_its_running_value() {
        let a = settings("");
        let mut b = settings(concat!(
            "[server]\nlisten = \"127.0.0.1:9\"\nadmin_socket = \"/x.sock\"\n",
            "admin_socket_mode = \"0660\"\nadmin_watch_buffer = 7\n",
            "watch_config = false\nreload_debounce = \"1s\"\n",
            "[cluster]\nnats = [\"nats://127.0.0.1:1\"]\nnode = \"n1\"\nsubject_prefix = \"x\"\n",
            "credentials_file = \"/dev/null\"\nca_file = \"/dev/null\"\nforward_queue = 5\nconnect_timeout = \"1s\"\n",
            "announce_interval = \"1s\"\npeer_timeout = \"9s\"\nrequest_timeout = \"3s\"\n",
            "user_query_timeout = \"1s\"\n",
        ));
        assert_eq!(diff(&a, &b).restart_required.len(), RESTART_KEYS.len());
        keep_restart_keys(&a, &mut b);
        assert!(diff(&a, &b).is_empty(), "{:?}", diff(&a, &b));
    }

    #[test]
    fn listeners_apply_live_unless_an_address_or_name_changes() {
        let one = |serve: &str, address: &str| {
            settings(&format!(
                "[[server.listeners]]\nname = \"public\"\naddress = \"{address}\"\nserve = {serve}\n"
            ))
        };
        let a = one("[\"ws\"]", "127.0.0.1:1");
        let b = one("[\"ws\", \"health\"]", "127.0.0.1:1");
        let c = diff(&a, &b);
        assert!(c.restart_required.is_empty(), "{c:?}");
        assert_eq!(c.applied.len(), 1, "{c:?}");
        assert!(c.applied[0].starts_with("server.listeners:"), "{c:?}");

        let mut moved = one("[\"ws\", \"health\"]", "127.0.0.1:2");
        let c = diff(&a, &moved);
        assert!(c.applied.is_empty(), "{c:?}");
        assert_eq!(c.restart_required.len(), 1, "{c:?}");
        keep_restart_keys(&a, &mut moved);
        assert!(
            diff(&a, &moved).is_empty(),
            "the running listeners stay whole"
        );
        assert_eq!(moved.listeners[0].config.serve, a.listeners[0].config.serve);
    }

    #[test]
    fn routes_are_matched_by_path() {
        let a = settings(concat!(
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
            "[[routes]]\npath = \"/b\"\nrouter = \"echo\"\n",
        ));
        let b = settings(concat!(
            "[[routes]]\npath = \"/b\"\nrouter = \"echo\"\n[routes.limits]\nsend_queue = 5\n",
            "[[routes]]\npath = \"/c\"\nrouter = \"pubsub\"\n",
        ));
        let c = diff(&a, &b);
        assert_eq!(c.routes_added, vec!["/c"]);
        assert_eq!(c.routes_removed, vec!["/a"]);
        assert_eq!(c.routes_changed, vec!["/b"]);
        assert!(
            c.applied
                .contains(&"routes[/b].limits.send_queue: (unset) -> 5".to_string()),
            "{c:?}"
        );
    }

    #[test]
    fn secrets_show_as_changed_keys_without_values() {
        let a = settings("[api]\nkeys = [\"old-key\"]\n[auth.t]\nplugin = \"token\"\ntokens = { \"tok-1\" = \"u\" }\n");
        let b = settings("[api]\nkeys = [\"new-key\"]\n[auth.t]\nplugin = \"token\"\ntokens = { \"tok-2\" = \"u\" }\n");
        let c = diff(&a, &b);
        let all = format!("{c:?}");
        assert!(
            !all.contains("old-key") && !all.contains("new-key"),
            "{all}"
        );
        assert!(!all.contains("tok-1") && !all.contains("tok-2"), "{all}");
        assert!(c.applied.contains(&"api keys".to_string()), "{all}");
        assert!(
            c.applied.iter().any(|l| l.starts_with("auth.t.tokens")),
            "{all}"
        );
    }
}
