//! The `proxy` router's options, checked when the config is loaded.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use wsgate_plugin_api::{OptionsError, Table};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    upstream: String,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "default_forward_headers")]
    forward_headers: Vec<String>,
    #[serde(default = "default_user_header")]
    user_header: String,
    /// PEM certificates to trust for a `wss://` upstream (else the
    /// upstream must present a certificate of one of them: there are no
    /// built-in roots).
    ca_file: Option<String>,
    /// The most of an upstream's refusal body passed on to the client.
    #[serde(default = "default_max_refusal_body")]
    max_refusal_body_bytes: usize,
}

fn default_max_refusal_body() -> usize {
    16 * 1024
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_forward_headers() -> Vec<String> {
    ["Cookie", "Authorization", "User-Agent"]
        .map(String::from)
        .to_vec()
}

fn default_user_header() -> String {
    "X-Wsgate-User".to_string()
}

/// Headers of the upgrade that only describe the client's own leg, and so
/// are never forwarded whatever `forward_headers` says: wsgate makes the
/// upstream leg's own.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "upgrade",
    "host",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// The upstream URL as configured: `ws://` or `wss://`, with `{path}` and
/// `{query}` filled in per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// `host` or `host:port` (IPv6 in brackets).
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// The path and query template, starting with `/`.
    pub path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            return Err("must start with ws:// or wss://".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(['{', '}']) {
            return Err("needs a host (without user info or placeholders)".into());
        }
        let uri: http::uri::Authority = authority
            .parse()
            .map_err(|e| format!("bad host {authority:?}: {e}"))?;
        let host = uri
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let mut probe = path.replace("{path}", "/p").replace("{query}", "q");
        if probe.contains(['{', '}']) {
            return Err("only {path} and {query} may be used as placeholders".into());
        }
        probe.insert_str(0, "http://h");
        probe
            .parse::<http::Uri>()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        Ok(Self {
            tls,
            authority: authority.to_string(),
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The request target for one connection: `{path}` is the client's
    /// path, `{query}` its query string (without `?`, empty when none).
    pub fn path_and_query(&self, path: &str, query: Option<&str>) -> String {
        self.path
            .replace("{path}", path)
            .replace("{query}", query.unwrap_or(""))
    }

    /// How the admin table names it.
    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{path_and_query}", self.authority)
    }
}

/// The checked options of one route.
#[derive(Debug)]
pub struct Options {
    pub target: Target,
    pub connect_timeout: Duration,
    pub forward_headers: Vec<HeaderName>,
    pub user_header: HeaderName,
    /// For `wss://`: the client TLS config (the roots of `ca_file`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_refusal_body: usize,
}

impl Options {
    pub fn from_table(options: &Table) -> Result<Self, OptionsError> {
        let raw: Raw = OptionsError::parse(options)?;
        let target = Target::parse(&raw.upstream).map_err(|e| OptionsError::at("upstream", e))?;
        if raw.connect_timeout.is_zero() {
            return Err(OptionsError::at(
                "connect_timeout",
                "must be more than 0 (the dial must end)",
            ));
        }
        let mut forward_headers = Vec::with_capacity(raw.forward_headers.len());
        for (i, name) in raw.forward_headers.iter().enumerate() {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| {
                OptionsError::at(format!("forward_headers[{i}]"), "not a header name")
            })?;
            if HOP_BY_HOP.contains(&header.as_str()) {
                return Err(OptionsError::at(
                    format!("forward_headers[{i}]"),
                    format!("{name} describes the client's own leg and is never forwarded"),
                ));
            }
            forward_headers.push(header);
        }
        let user_header = HeaderName::try_from(raw.user_header.as_str())
            .map_err(|_| OptionsError::at("user_header", "not a header name"))?;
        if HOP_BY_HOP.contains(&user_header.as_str()) {
            return Err(OptionsError::at(
                "user_header",
                "must not be a header of the WebSocket handshake",
            ));
        }
        let tls = match (target.tls, raw.ca_file) {
            (true, Some(path)) => Some(
                wsgate_http_client::trust(path.as_ref())
                    .map_err(|e| OptionsError::at("ca_file", e))?,
            ),
            (true, None) => {
                return Err(OptionsError::at(
                    "ca_file",
                    "a wss:// upstream needs ca_file, the PEM certificates to trust",
                ))
            }
            (false, Some(_)) => {
                return Err(OptionsError::at("ca_file", "only for a wss:// upstream"))
            }
            (false, None) => None,
        };
        Ok(Self {
            target,
            connect_timeout: raw.connect_timeout,
            forward_headers,
            user_header,
            tls,
            max_refusal_body: raw.max_refusal_body_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(toml: &str) -> Result<Options, OptionsError> {
        Options::from_table(&toml.parse::<Table>().expect("toml"))
    }

    #[test]
    fn upstream_urls_are_checked_and_filled_in() {
        let t = Target::parse("ws://127.0.0.1:8000/ws/chat?room={query}").expect("valid");
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 8000));
        assert_eq!(t.path_and_query("/ws/x", Some("a=1")), "/ws/chat?room=a=1");
        let t = Target::parse("wss://[::1]{path}").expect_err("placeholder in the host");
        assert!(t.contains("host"), "{t}");
        let t = Target::parse("wss://[::1]/up{path}").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert_eq!(t.path_and_query("/ws", None), "/up/ws");
        assert_eq!(t.url("/up/ws"), "wss://[::1]/up/ws");
        assert_eq!(Target::parse("ws://app").expect("valid").path, "/");
        for bad in [
            "http://app/ws",
            "ws:///ws",
            "ws://u@app/ws",
            "ws://app/{user}",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_options_name_their_key() {
        let err = options("upstream = \"ws://a\"\nforward_headers = [\"Host\"]").expect_err("hop");
        assert_eq!(err.path.as_deref(), Some("forward_headers[0]"));
        let err = options("upstream = \"ws://a\"\nconnect_timeout = \"0s\"").expect_err("zero");
        assert_eq!(err.path.as_deref(), Some("connect_timeout"));
        let err = options("upstream = \"wss://a\"").expect_err("no ca_file");
        assert_eq!(err.path.as_deref(), Some("ca_file"));
        let err = options("upstream = \"ws://a\"\nca_file = \"x\"").expect_err("ca for ws");
        assert_eq!(err.path.as_deref(), Some("ca_file"));
        let err = options("upstream = \"ws://a\"\nuser_header = \"bad header\"").expect_err("bad");
        assert_eq!(err.path.as_deref(), Some("user_header"));
        let err = options("upstreams = \"ws://a\"").expect_err("unknown key");
        assert!(err.message.contains("upstreams"), "{}", err.message);
        let ok = options("upstream = \"ws://a:1/x\"").expect("defaults");
        assert_eq!(ok.connect_timeout, Duration::from_secs(3));
        assert_eq!(ok.user_header.as_str(), "x-wsgate-user");
        assert_eq!(ok.forward_headers.len(), 3);
    }
}
