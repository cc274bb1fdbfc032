//! The `callback` router's options, checked when the config is loaded.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderValue, Uri};
use serde::Deserialize;
use wsgate_plugin_api::secret::SecretSource;
use wsgate_plugin_api::{OptionsError, Table};

use crate::metrics::Event;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_events")]
    events: Vec<String>,
    /// The API key sent as `Authorization: Bearer`: the name of an
    /// environment variable, or a file. There is no inline form: route
    /// options are shown as they are by `wsgate check` and the admin
    /// `config`.
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    #[serde(default = "default_max_answer_bytes")]
    max_answer_bytes: usize,
    #[serde(default = "default_pool_max_idle")]
    pool_max_idle: usize,
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pool_idle_timeout: Duration,
    /// For an `https://` backend: the PEM certificates to trust.
    ca_file: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_in_flight() -> usize {
    64
}

fn default_events() -> Vec<String> {
    Event::ALL.iter().map(|e| e.label().to_string()).collect()
}

fn default_max_answer_bytes() -> usize {
    1024 * 1024
}

fn default_pool_max_idle() -> usize {
    16
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Which events are posted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub open: bool,
    pub message: bool,
    pub close: bool,
}

impl Events {
    pub fn posts(&self, event: Event) -> bool {
        match event {
            Event::Open => self.open,
            Event::Message => self.message,
            Event::Close => self.close,
        }
    }
}

/// The checked options of one route.
pub struct Options {
    /// The backend's `http://` URL, which every event is posted to.
    pub url: Uri,
    /// For one request: connecting, sending and reading the whole answer.
    pub timeout: Duration,
    /// Events queued or running for one connection before its reads pause.
    pub max_in_flight: usize,
    pub events: Events,
    /// `Bearer <key>`, marked sensitive.
    pub authorization: Option<HeaderValue>,
    /// The longest answer body taken from the backend.
    pub max_answer_bytes: usize,
    /// Idle keep-alive connections kept to the backend.
    pub pool_max_idle: usize,
    /// How long an idle keep-alive connection is kept.
    pub pool_idle_timeout: Duration,
    /// For an `https://` backend: the roots of `ca_file`.
    pub tls: Option<std::sync::Arc<wsgate_http_client::rustls::ClientConfig>>,
}

/// Never shows the key.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("events", &self.events)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("pool_max_idle", &self.pool_max_idle)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Options {
    pub fn from_table(options: &Table) -> Result<Self, OptionsError> {
        let raw: Raw = OptionsError::parse(options)?;
        let wsgate_http_client::Endpoint { uri: url, tls } =
            wsgate_http_client::endpoint(&raw.url, "url", raw.ca_file.as_deref())
                .map_err(|(at, e)| OptionsError::at(at, e))?;
        if raw.timeout.is_zero() {
            return Err(OptionsError::at(
                "timeout",
                "must be more than 0 (every request must end)",
            ));
        }
        if raw.max_in_flight == 0 {
            return Err(OptionsError::at(
                "max_in_flight",
                "must be at least 1 (the event being posted counts)",
            ));
        }
        if raw.max_answer_bytes == 0 {
            return Err(OptionsError::at("max_answer_bytes", "must be at least 1"));
        }
        let events = parse_events(&raw.events)?;
        let at = if raw.key_env.is_some() {
            "key_env"
        } else {
            "key_file"
        };
        let authorization = SecretSource {
            env: raw.key_env,
            file: raw.key_file,
            inline: None,
        }
        .load_optional("key")?
        .map(|key| bearer(key.expose(), at))
        .transpose()?;
        Ok(Self {
            url,
            timeout: raw.timeout,
            max_in_flight: raw.max_in_flight,
            events,
            authorization,
            max_answer_bytes: raw.max_answer_bytes,
            pool_max_idle: raw.pool_max_idle,
            pool_idle_timeout: raw.pool_idle_timeout,
            tls,
        })
    }
}

/// `Bearer <key>` as a sensitive header value; the error never shows the key.
fn bearer(key: &[u8], at: &str) -> Result<HeaderValue, OptionsError> {
    let mut value = Vec::with_capacity(key.len() + 7);
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(key);
    let mut value = HeaderValue::from_bytes(&value).map_err(|_| {
        OptionsError::at(
            at,
            "the key must be usable in an HTTP header (no control characters)",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn parse_events(names: &[String]) -> Result<Events, OptionsError> {
    let mut events = Events::default();
    for (i, name) in names.iter().enumerate() {
        let Some(event) = Event::ALL.into_iter().find(|e| e.label() == name) else {
            return Err(OptionsError::at(
                format!("events[{i}]"),
                format!("unknown event `{name}` (one of: open, message, close)"),
            ));
        };
        let slot = match event {
            Event::Open => &mut events.open,
            Event::Message => &mut events.message,
            Event::Close => &mut events.close,
        };
        if *slot {
            return Err(OptionsError::at(
                format!("events[{i}]"),
                format!("`{name}` is listed twice"),
            ));
        }
        *slot = true;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(toml: &str) -> Result<Options, OptionsError> {
        Options::from_table(&toml.parse::<Table>().expect("toml"))
    }

    fn err_at(toml: &str) -> (Option<String>, String) {
        let err = options(toml).expect_err(toml);
        (err.path, err.message)
    }

    /// A variable name no other test (or process) uses.
    fn env_name(tag: &str) -> String {
        format!("WSGATE_ROUTE_CALLBACK_TEST_{tag}_{}", std::process::id())
    }

    #[test]
    fn defaults() {
        let o = options("url = \"http://127.0.0.1:8000/wsgate/events\"").expect("valid");
        assert_eq!(o.url.to_string(), "http://127.0.0.1:8000/wsgate/events");
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.max_in_flight, 64);
        assert_eq!(
            o.events,
            Events {
                open: true,
                message: true,
                close: true
            }
        );
        assert!(o.authorization.is_none());
        assert_eq!(o.max_answer_bytes, 1024 * 1024);
        assert_eq!(o.pool_max_idle, 16);
        assert_eq!(o.pool_idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        let (path, message) = err_at("url = \"https://app/events\"");
        assert_eq!(path.as_deref(), Some("url"));
        assert!(message.contains("ca_file"), "{message}");
        let (path, _) = err_at("url = \"https://app/events\"\nca_file = \"/nonexistent/ca.pem\"");
        assert_eq!(path.as_deref(), Some("ca_file"));
        for bad in [
            "ws://app/x",
            "app:8000/x",
            "http://",
            "http://u:p@app/x",
            "http://app/a b",
        ] {
            let (path, _) = err_at(&format!("url = \"{bad}\""));
            assert_eq!(path.as_deref(), Some("url"), "{bad}");
        }
        let o = options("url = \"http://app\"").expect("no path");
        assert_eq!(o.url.path(), "/");
        let o = options("url = \"http://[::1]:9/e?v=1\"").expect("ipv6 and a query");
        assert_eq!(o.url.query(), Some("v=1"));
    }

    #[test]
    fn limits_must_be_usable() {
        let u = "url = \"http://app/e\"\n";
        for (extra, key) in [
            ("timeout = \"0s\"", "timeout"),
            ("timeout = \"soon\"", "timeout"),
            ("max_in_flight = 0", "max_in_flight"),
            ("max_in_flight = -1", "max_in_flight"),
            ("max_answer_bytes = 0", "max_answer_bytes"),
            ("pool_idle_timeout = 3", "pool_idle_timeout"),
        ] {
            let (path, message) = err_at(&format!("{u}{extra}"));
            assert_eq!(path.as_deref(), Some(key), "{extra}: {message}");
        }
        let o = options(&format!(
            "{u}timeout = \"250ms\"\nmax_in_flight = 1\npool_max_idle = 0"
        ))
        .expect("valid");
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!((o.max_in_flight, o.pool_max_idle), (1, 0));
    }

    #[test]
    fn events_are_known_and_listed_once() {
        let u = "url = \"http://app/e\"\n";
        let (path, message) = err_at(&format!("{u}events = [\"message\", \"opne\"]"));
        assert_eq!(path.as_deref(), Some("events[1]"));
        assert!(message.contains("opne"), "{message}");
        let (path, _) = err_at(&format!("{u}events = [\"close\", \"close\"]"));
        assert_eq!(path.as_deref(), Some("events[1]"));
        let o = options(&format!("{u}events = [\"message\"]")).expect("valid");
        assert!(o.events.posts(Event::Message));
        assert!(!o.events.posts(Event::Open) && !o.events.posts(Event::Close));
        let o = options(&format!("{u}events = []")).expect("none at all");
        assert_eq!(o.events, Events::default());
    }

    #[test]
    fn unknown_keys_and_an_inline_key_are_refused() {
        let (_, message) = err_at("url = \"http://app/e\"\nmax_inflight = 3");
        assert!(message.contains("max_inflight"), "{message}");
        let (path, message) = err_at("url = \"http://app/e\"\nkey = \"s3cr3t\"");
        assert!(
            path.as_deref() == Some("key") || message.contains("`key`"),
            "{path:?}: {message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
        let (path, _) = err_at("timeout = \"1s\"");
        assert_eq!(path, None, "url is required");
    }

    #[test]
    fn the_key_is_read_from_the_environment_or_a_file_and_never_shown() {
        let var = env_name("KEY");
        std::env::set_var(&var, "k3y-from-env");
        let o = options(&format!("url = \"http://app/e\"\nkey_env = \"{var}\"")).expect("valid");
        let auth = o.authorization.as_ref().expect("a key");
        assert_eq!(auth.as_bytes(), b"Bearer k3y-from-env");
        assert!(auth.is_sensitive());
        let shown = format!("{o:?}");
        assert!(!shown.contains("k3y"), "{shown}");

        let missing = env_name("MISSING");
        let (path, message) = err_at(&format!("url = \"http://app/e\"\nkey_env = \"{missing}\""));
        assert_eq!(path.as_deref(), Some("key_env"));
        assert!(message.contains("is not set"), "{message}");

        let dir = std::env::temp_dir().join(env_name("DIR"));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("key");
        std::fs::write(&file, "k3y-from-file\n").expect("write");
        let o = options(&format!(
            "url = \"http://app/e\"\nkey_file = \"{}\"",
            file.display()
        ))
        .expect("valid");
        assert_eq!(
            o.authorization.as_ref().map(HeaderValue::as_bytes),
            Some(&b"Bearer k3y-from-file"[..])
        );

        let (path, message) = err_at(&format!(
            "url = \"http://app/e\"\nkey_env = \"{var}\"\nkey_file = \"{}\"",
            file.display()
        ));
        assert_eq!(path, None);
        assert!(message.contains("exclusive"), "{message}");

        let bad = env_name("BAD");
        std::env::set_var(&bad, "line\nbreak-k3y");
        let (path, message) = err_at(&format!("url = \"http://app/e\"\nkey_env = \"{bad}\""));
        assert_eq!(path.as_deref(), Some("key_env"));
        assert!(!message.contains("k3y"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
