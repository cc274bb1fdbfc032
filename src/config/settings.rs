//! Validation: a [`Config`] is consumed into [`Settings`], the form the
//! daemon runs on. Every problem is collected (not only the first) with its
//! key path and place in the file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wsgate_plugin_api::{Authenticator, DynRouter, OptionsError};

use super::listeners::{self, Services};
use super::load::{ConfigError, Issue, Source};
use super::memory::{self, MemoryBounds};
use super::schema::{
    Config, Limits, LimitsOverride, ListenerConfig, Secret, ServerConfig, TlsConfig, REDACTED,
};
use crate::certs::{self, ByServerName, CertError};
use crate::plugins;

/// Paths the daemon serves itself; a route may not take them.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/api/publish"];

/// A validated config with its plugins built and secrets read.
pub struct Settings {
    /// Where it came from (`<built-in>` for the defaults).
    pub file: String,
    /// The config as written (with defaults filled in).
    pub config: Config,
    pub routes: Vec<Arc<Route>>,
    /// Keys accepted by the publish API; empty = API disabled.
    pub api_keys: Vec<Secret>,
    /// Non-fatal remarks found while loading (e.g. an unset `keys_env`).
    pub warnings: Vec<String>,
    /// `max_memory` and its low-water mark in bytes (`None`: off), read
    /// against the cgroup limit when written as a percentage.
    pub memory: Option<MemoryBounds>,
    /// The listeners, in file order (one for `listen` when the file has no
    /// `[[server.listeners]]`).
    pub listeners: Vec<Listener>,
}

/// One listener's settings. Its address is bound once at start; the rest
/// applies to the connections it accepts after a reload.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `config.name`, shared with the connections it accepts.
    pub name: Arc<str>,
    pub config: ListenerConfig,
    pub services: Services,
    /// Its certificates, loaded and checked, and the rustls config over
    /// them.
    pub tls: Option<Arc<ListenerTls>>,
}

/// A TLS listener's certificates and the rustls config over them.
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certs: Arc<ByServerName>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls").finish_non_exhaustive()
    }
}

/// One route, ready to serve.
pub struct Route {
    pub path: String,
    pub router_name: String,
    pub router: Arc<dyn DynRouter>,
    pub auth_name: String,
    /// `None` for `auth = "none"`.
    pub auth: Option<Arc<dyn Authenticator>>,
    pub allowed_origins: Vec<String>,
    /// The global limits with this route's overrides applied.
    pub limits: Limits,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("path", &self.path)
            .field("router", &self.router_name)
            .field("auth", &self.auth_name)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The built-in defaults (no file).
    pub fn builtin() -> Result<Self, ConfigError> {
        let source = Source {
            file: "<built-in>".into(),
            text: String::new(),
        };
        Self::build(&source, Config::default())
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = Source::read(path)?;
        let config = source.parse()?;
        Self::build(&source, config)
    }

    /// Parses and validates config text (`file` names it in errors).
    pub fn from_text(file: &str, text: &str) -> Result<Self, ConfigError> {
        let source = Source {
            file: file.into(),
            text: text.into(),
        };
        let config = source.parse()?;
        Self::build(&source, config)
    }

    /// Finds the route for a request path.
    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.path == path)
    }

    /// The certificate and key files of every TLS listener.
    pub fn tls_files(&self) -> Vec<std::path::PathBuf> {
        self.listeners
            .iter()
            .filter_map(|l| l.config.tls.as_ref())
            .flat_map(TlsConfig::pairs)
            .flat_map(|(cert, key)| [cert.to_path_buf(), key.to_path_buf()])
            .collect()
    }

    /// The global limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The admin socket path in force (`None`: turned off).
    pub fn admin_socket(&self) -> Option<std::path::PathBuf> {
        admin_socket_path(&self.config)
    }

    /// The admin socket mode (validated octal).
    pub fn admin_socket_mode(&self) -> u32 {
        u32::from_str_radix(&self.config.server.admin_socket_mode, 8).unwrap_or(0o600)
    }

    fn build(source: &Source, mut config: Config) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut warnings = Vec::new();

        for (key, message) in super::cluster::check(&mut config.cluster) {
            issues.push(source.issue(&format!("cluster.{key}"), message));
        }

        let server = &config.server;
        if server.handshake_timeout.is_zero() {
            issues.push(source.issue("server.handshake_timeout", "must be more than 0s"));
        }
        if server.close_timeout.is_zero() {
            issues.push(source.issue("server.close_timeout", "must be more than 0s"));
        }

        if u32::from_str_radix(&server.admin_socket_mode, 8).map_or(true, |m| m > 0o777) {
            issues.push(source.issue(
                "server.admin_socket_mode",
                "must be an octal file mode such as \"0600\" or \"0660\"",
            ));
        }
        for (key, value) in [
            ("admin_output_queue", server.admin_output_queue),
            ("admin_max_request_bytes", server.admin_max_request_bytes),
            ("admin_watch_buffer", server.admin_watch_buffer),
        ] {
            if value == 0 {
                issues.push(source.issue(&format!("server.{key}"), "must be at least 1"));
            }
        }

        for (key, message) in check_edge(server) {
            issues.push(source.issue(&format!("server.{key}"), message));
        }
        for (path, message) in listeners::check(server) {
            issues.push(source.issue(&path, message));
        }
        if !server.listeners.is_empty() && source.has_key("server.listen") {
            warnings
                .push("server.listen is not used: [[server.listeners]] gives the addresses".into());
        }
        let mut listeners = Vec::new();
        for (i, config) in listeners::effective(server).into_iter().enumerate() {
            let tls = match &config.tls {
                None => None,
                Some(tls) => {
                    let at = format!("server.listeners[{i}].tls");
                    match listener_tls(tls) {
                        Ok(built) => {
                            warnings.extend(expiry_warnings(&config.name, &built.certs));
                            Some(Arc::new(built))
                        }
                        Err(e) => {
                            issues.push(source.issue(&at, e.to_string()));
                            None
                        }
                    }
                }
            };
            listeners.push(Listener {
                name: Arc::from(config.name.as_str()),
                services: Services::of(&config.serve),
                tls,
                config,
            });
        }
        let memory = match memory::resolve(
            server.max_memory,
            server.max_memory_low_water,
            memory::cgroup_limit,
        ) {
            Ok((bounds, warning)) => {
                warnings.extend(warning);
                bounds
            }
            Err((path, message)) => {
                issues.push(source.issue(path, message));
                None
            }
        };

        for (key, message) in check_limits(&config.limits) {
            issues.push(source.issue(&format!("limits.{key}"), message));
        }

        // Auth instances, all built so that a broken one is found now.
        let mut auths: Vec<(String, Arc<dyn Authenticator>)> = Vec::new();
        for (name, table) in &config.auth {
            let at = format!("auth.{name}");
            if name == "none" {
                issues.push(source.issue(&at, "`none` is reserved for routes without auth"));
                continue;
            }
            let Some(plugin_name) = table.get("plugin").and_then(|v| v.as_str()) else {
                issues.push(source.issue(
                    &at,
                    format!(
                        "missing `plugin` (one of: {})",
                        plugins::auth_names().join(", ")
                    ),
                ));
                continue;
            };
            let Some(plugin) = plugins::auth(plugin_name) else {
                issues.push(source.issue(
                    &format!("{at}.plugin"),
                    format!(
                        "unknown auth plugin `{plugin_name}` (one of: {})",
                        plugins::auth_names().join(", ")
                    ),
                ));
                continue;
            };
            let mut options = table.clone();
            options.remove("plugin");
            match plugin.build(&options) {
                Ok(auth) => auths.push((name.clone(), auth)),
                Err(e) => issues.push(option_issue(source, &at, e)),
            }
        }

        let mut routes = Vec::new();
        for (i, rc) in config.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !rc.path.starts_with('/') {
                issues.push(source.issue(&format!("{at}.path"), "must start with `/`"));
            }
            if RESERVED_PATHS.contains(&rc.path.as_str()) {
                issues.push(source.issue(
                    &format!("{at}.path"),
                    format!("`{}` is served by wsgate itself", rc.path),
                ));
            }
            if let Some(first) = config.routes[..i].iter().position(|r| r.path == rc.path) {
                let place = source
                    .issue(&format!("routes[{first}].path"), "")
                    .line
                    .map_or_else(String::new, |l| format!(" at line {l}"));
                issues.push(source.issue(
                    &format!("{at}.path"),
                    format!(
                        "`{}` is already a route: first defined{place} (routes[{first}])",
                        rc.path
                    ),
                ));
            }
            let auth = if rc.auth == "none" {
                None
            } else if let Some((_, a)) = auths.iter().find(|(n, _)| *n == rc.auth) {
                Some(Arc::clone(a))
            } else {
                if !config.auth.contains_key(&rc.auth) {
                    let known: Vec<&str> = config.auth.keys().map(String::as_str).collect();
                    let message = if known.is_empty() {
                        format!(
                            "no auth instance `{0}`: none is defined (add [auth.{0}], or use `none`)",
                            rc.auth
                        )
                    } else {
                        format!(
                            "no auth instance `{}` (defined: {}; or use `none`)",
                            rc.auth,
                            known.join(", ")
                        )
                    };
                    issues.push(source.issue(&format!("{at}.auth"), message));
                }
                // A defined but broken instance was reported above.
                None
            };
            let limits = config.limits.with(&rc.limits);
            for (key, message) in check_limits(&limits) {
                if overrides(&rc.limits, key) {
                    issues.push(source.issue(&format!("{at}.limits.{key}"), message));
                }
            }
            let Some(plugin) = plugins::router(&rc.router) else {
                issues.push(source.issue(
                    &format!("{at}.router"),
                    format!(
                        "unknown router `{}` (one of: {})",
                        rc.router,
                        plugins::router_names().join(", ")
                    ),
                ));
                continue;
            };
            match plugin.build(&rc.options) {
                Ok(router) => routes.push(Arc::new(Route {
                    path: rc.path.clone(),
                    router_name: rc.router.clone(),
                    router,
                    auth_name: rc.auth.clone(),
                    auth,
                    allowed_origins: rc.allowed_origins.clone(),
                    limits,
                })),
                Err(e) => issues.push(option_issue(source, &format!("{at}.options"), e)),
            }
        }

        let api_keys = match api_keys(&config) {
            Ok((keys, warning)) => {
                warnings.extend(warning);
                keys
            }
            Err((path, message)) => {
                issues.push(source.issue(path, message));
                Vec::new()
            }
        };

        if !issues.is_empty() {
            return Err(source.error(issues));
        }
        Ok(Settings {
            file: source.file.clone(),
            config,
            routes,
            api_keys,
            warnings,
            memory,
            listeners,
        })
    }

    /// The effective config as TOML, with every secret shown as
    /// `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.redacted_value()).unwrap_or_default()
    }

    /// The effective config as a TOML value, secrets redacted.
    pub fn redacted_value(&self) -> toml::Value {
        let mut value = toml::Value::try_from(&self.config)
            .unwrap_or_else(|_| toml::Value::Table(toml::Table::new()));
        if let Some(auth) = value.get_mut("auth").and_then(|v| v.as_table_mut()) {
            for (_, instance) in auth.iter_mut() {
                let Some(table) = instance.as_table_mut() else {
                    continue;
                };
                let public = table
                    .get("plugin")
                    .and_then(|p| p.as_str())
                    .and_then(plugins::auth)
                    .map(|p| p.public_keys())
                    .unwrap_or(&[]);
                for (key, v) in table.iter_mut() {
                    if key != "plugin" && !public.contains(&key.as_str()) {
                        *v = toml::Value::String(REDACTED.into());
                    }
                }
            }
        }
        // A NATS URL may carry a password or a token.
        if let Some(urls) = value
            .get_mut("cluster")
            .and_then(|c| c.get_mut("nats"))
            .and_then(|n| n.as_array_mut())
        {
            for url in urls.iter_mut() {
                if let Some(text) = url.as_str() {
                    *url = toml::Value::String(wsgate_cluster::shown(text));
                }
            }
        }
        value
    }
}

/// Where the admin socket of a config is: the configured path, or the
/// default (`$XDG_RUNTIME_DIR/wsgate/admin.sock`, else `./wsgate-admin.sock`).
pub fn admin_socket_path(config: &Config) -> Option<std::path::PathBuf> {
    match &config.server.admin_socket {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.clone()),
        None => Some(match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => std::path::Path::new(&dir).join("wsgate/admin.sock"),
            _ => std::path::PathBuf::from("wsgate-admin.sock"),
        }),
    }
}

fn option_issue(source: &Source, at: &str, e: OptionsError) -> Issue {
    let path = match &e.path {
        Some(p) if p.starts_with('[') => format!("{at}{p}"),
        Some(p) => format!("{at}.{p}"),
        None => at.to_string(),
    };
    source.issue(&path, e.message)
}

/// The problems in one set of limits, as (key, message).
fn check_limits(l: &Limits) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut at_least_one = |key, v: usize| {
        if v == 0 {
            out.push((key, "must be at least 1".to_string()));
        }
    };
    at_least_one("max_connections", l.max_connections);
    at_least_one("max_connections_per_ip", l.max_connections_per_ip);
    at_least_one("max_connections_per_user", l.max_connections_per_user);
    at_least_one("max_message_bytes", l.max_message_bytes);
    at_least_one("send_queue", l.send_queue);
    if l.messages_per_second > 0 && l.message_burst == 0 {
        out.push((
            "message_burst",
            "must be at least 1 when messages_per_second is set".to_string(),
        ));
    }
    if l.frames_per_second > 0 && l.frame_burst == 0 {
        out.push((
            "frame_burst",
            "must be at least 1 when frames_per_second is set".to_string(),
        ));
    }
    if l.send_queue_bytes < l.max_message_bytes {
        out.push((
            "send_queue_bytes",
            format!(
                "must be at least max_message_bytes ({}): a message of that size could never be queued",
                l.max_message_bytes
            ),
        ));
    }
    if !l.ping_interval.is_zero() && l.pong_timeout.is_zero() {
        out.push((
            "pong_timeout",
            "must be more than 0s when ping_interval is set".to_string(),
        ));
    }
    out
}

/// The problems in the connect-storm and memory keys of `[server]`.
fn check_edge(s: &ServerConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (rate_key, rate, burst_key, burst) in [
        (
            "connects_per_second_per_ip",
            s.connects_per_second_per_ip,
            "connect_burst_per_ip",
            s.connect_burst_per_ip,
        ),
        (
            "connects_per_second",
            s.connects_per_second,
            "connect_burst",
            s.connect_burst,
        ),
    ] {
        if rate > 0 && burst == 0 {
            out.push((
                burst_key,
                format!("must be at least 1 when {rate_key} is set"),
            ));
        }
    }
    if s.connect_tracked_ips == 0 {
        out.push(("connect_tracked_ips", "must be at least 1".to_string()));
    }
    if !s.max_memory.is_off() && s.memory_sample_interval.is_zero() {
        out.push((
            "memory_sample_interval",
            "must be more than 0s when max_memory is set".to_string(),
        ));
    }
    if s.max_pending_handshakes == 0 || s.max_pending_handshakes > MAX_PENDING_HANDSHAKES {
        out.push((
            "max_pending_handshakes",
            format!("must be at least 1 and at most {MAX_PENDING_HANDSHAKES}"),
        ));
    }
    out
}

/// Most permits a tokio semaphore holds.
pub const MAX_PENDING_HANDSHAKES: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Whether a route's overrides name `key`.
fn overrides(over: &LimitsOverride, key: &str) -> bool {
    toml::Value::try_from(over)
        .ok()
        .and_then(|v| v.as_table().map(|t| t.contains_key(key)))
        .unwrap_or(false)
        // Cross-key rules are reported on the route when either side is set.
        || (key == "message_burst" && over.messages_per_second.is_some())
        || (key == "pong_timeout" && over.ping_interval.is_some())
        || (key == "frame_burst" && over.frames_per_second.is_some())
        || (key == "send_queue_bytes" && over.max_message_bytes.is_some())
}

type ApiKeys = (Vec<Secret>, Option<String>);

/// Gathers the publish API keys from `keys`, `keys_file` and `keys_env`.
fn api_keys(config: &Config) -> Result<ApiKeys, (&'static str, String)> {
    let api = &config.api;
    let mut keys: Vec<Secret> = Vec::new();
    let mut warning = None;
    for (i, k) in api.keys.iter().enumerate() {
        if k.0.trim().is_empty() {
            return Err(("api.keys", format!("key {i} is empty")));
        }
        keys.push(Secret(k.0.trim().to_string()));
    }
    if let Some(path) = &api.keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "api.keys_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| Secret(l.to_string())),
        );
    }
    if let Some(var) = &api.keys_env {
        match std::env::var(var) {
            Ok(value) => keys.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| Secret(k.to_string())),
            ),
            Err(_) => {
                warning = Some(format!(
                    "api.keys_env: environment variable {var} is not set; it adds no key"
                ))
            }
        }
    }
    Ok((keys, warning))
}

/// A duration for logs and tables (`30s`, `1m 30s`).
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Loads a listener's certificates and builds its rustls config.
fn listener_tls(tls: &TlsConfig) -> Result<ListenerTls, CertError> {
    let loaded = tls
        .pairs()
        .into_iter()
        .map(|(c, k)| certs::load(c, k))
        .collect::<Result<Vec<_>, _>>()?;
    // The config checks ask for at least one pair.
    let Some(certs) = ByServerName::new(loaded) else {
        return Err(CertError::NoCertificate {
            path: Default::default(),
        });
    };
    let certs = Arc::new(certs);
    let config = certs::server_config(Arc::clone(&certs), &tls.min_version)?;
    Ok(ListenerTls { config, certs })
}

/// Whole days in `seconds`, in words.
fn days(seconds: i64) -> String {
    match seconds / 86_400 {
        0 => "less than a day".to_string(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

/// A warning for each certificate that expires within
/// [`certs::EXPIRY_WARNING`] (or has expired).
fn expiry_warnings(listener: &str, certs: &ByServerName) -> Vec<String> {
    let now = std::time::SystemTime::now();
    let soon = i64::try_from(certs::EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    certs
        .certificates()
        .iter()
        .filter_map(|c| {
            let left = c.seconds_left(now);
            let name = c.name();
            let file = c.cert_file.display();
            if left < 0 {
                Some(format!(
                    "listener `{listener}`: the certificate for {name} ({file}) expired {} ago",
                    days(-left)
                ))
            } else if left < soon {
                Some(format!(
                    "listener `{listener}`: the certificate for {name} ({file}) expires in {}",
                    days(left)
                ))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        match Settings::from_text("t.toml", text) {
            Ok(_) => panic!("config must be refused:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn builtin_defaults_are_valid() {
        let s = Settings::builtin().expect("defaults");
        assert!(s.route("/ws").is_some());
        assert!(s.route("/ws/echo").is_some());
        assert!(s.api_keys.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let e = err(concat!(
            "[limits]\n",
            "send_queue = 0\n",
            "\n",
            "[[routes]]\n",
            "path = \"/a\"\n",
            "router = \"nope\"\n",
            "auth = \"missing\"\n",
        ));
        let text = e.to_string();
        assert!(
            text.contains("t.toml:2:14: limits.send_queue: must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("t.toml:6:10: routes[0].router: unknown router `nope`"),
            "{text}"
        );
        assert!(
            text.contains("t.toml:7:8: routes[0].auth: no auth instance `missing`"),
            "{text}"
        );
    }

    #[test]
    fn route_override_errors_name_the_route() {
        let e = err(
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n[routes.limits]\nmax_connections = 0\n",
        );
        assert_eq!(e.issues.len(), 1, "{e}");
        assert_eq!(e.issues[0].path, "routes[0].limits.max_connections");
        assert_eq!(e.issues[0].line, Some(5));
    }

    #[test]
    fn duplicate_and_reserved_paths_are_refused() {
        let e = err(concat!(
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
            "[[routes]]\npath = \"/metrics\"\nrouter = \"echo\"\n",
        ));
        let text = e.to_string();
        assert!(
            text.contains(
                "t.toml:5:8: routes[1].path: `/a` is already a route: first defined at line 2 (routes[0])"
            ),
            "{text}"
        );
        assert!(
            text.contains("routes[2].path: `/metrics` is served by wsgate itself"),
            "{text}"
        );
    }

    #[test]
    fn connect_storm_and_memory_keys_are_checked_with_their_place() {
        let e = err(concat!(
            "[server]\n",
            "connects_per_second_per_ip = 5\n",
            "max_pending_handshakes = 0\n",
            "max_memory = \"1MiB\"\n",
            "max_memory_low_water = \"2MiB\"\n",
            "memory_sample_interval = \"0s\"\n",
        ));
        let text = e.to_string();
        for want in [
            "server.connect_burst_per_ip: must be at least 1 when connects_per_second_per_ip is set",
            "t.toml:3:26: server.max_pending_handshakes: must be at least 1",
            "t.toml:5:24: server.max_memory_low_water: must be at most max_memory (1048576 bytes)",
            "t.toml:6:26: server.memory_sample_interval: must be more than 0s when max_memory is set",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        let e = err("[server]\nmax_memory = \"lots\"\n");
        assert!(
            e.to_string()
                .contains("t.toml:2:14: server.max_memory: `lots`: expected a size in bytes"),
            "{e}"
        );
        let s = Settings::from_text("t.toml", "[server]\nmax_memory = \"1GiB\"\n").expect("valid");
        assert_eq!(
            s.memory,
            Some(MemoryBounds {
                high: 1 << 30,
                low: ((1u64 << 30) as f64 * 0.9) as u64
            })
        );
    }

    #[test]
    fn unknown_auth_plugin_is_refused() {
        let e = err("[auth.x]\nplugin = \"kerberos\"\n");
        assert!(
            e.to_string()
                .contains("auth.x.plugin: unknown auth plugin `kerberos`"),
            "{e}"
        );
    }

    #[test]
    fn redaction_hides_auth_secrets_and_api_keys() {
        let s = Settings::from_text(
            "t.toml",
            "[api]\nkeys = [\"sekrit-api\"]\n[auth.t]\nplugin = \"token\"\ntokens = { \"sekrit-token\" = \"alice\" }\n",
        )
        .expect("valid");
        let shown = s.redacted_toml();
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
        assert_eq!(s.api_keys.len(), 1);
    }

    #[test]
    fn redaction_hides_a_nats_password_and_its_error_too() {
        let s = Settings::from_text(
            "t.toml",
            "[cluster]\nnats = [\"nats://ws:sekrit-pw@10.0.0.5:4222\"]\nnode = \"a\"\n",
        )
        .expect("valid");
        let shown = s.redacted_toml();
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(
            shown.contains("nats://ws:<redacted>@10.0.0.5:4222"),
            "{shown}"
        );
        let Err(e) = Settings::from_text(
            "t.toml",
            "[cluster]\nnats = [\"nats://ws:sekrit-pw@10.0.0.5:4222\", \"nats://ws:other@b:1\"]\nnode = \"a\"\n",
        ) else {
            panic!("two credentials were accepted");
        };
        assert!(!e.to_string().contains("sekrit"), "{e}");
        assert!(e.to_string().contains("cluster.nats"), "{e}");
    }
}
