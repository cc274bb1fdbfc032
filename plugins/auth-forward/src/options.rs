//! The `forward` authenticator's options, checked when the config is loaded.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use wsgate_plugin_api::secret::SecretSource;
use wsgate_plugin_api::{OptionsError, Table};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_forward_headers")]
    forward_headers: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    cache_ttl: Duration,
    #[serde(default = "default_cache_entries")]
    cache_entries: usize,
    #[serde(default, with = "humantime_serde")]
    negative_ttl: Duration,
    user_from: Option<String>,
    claims_from: Option<String>,
    /// The key that tells the app the caller is wsgate: the name of an
    /// environment variable, or a file. There is no inline form.
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    #[serde(default = "default_key_header")]
    key_header: String,
    #[serde(default)]
    pass_body: bool,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_max_answer_bytes")]
    max_answer_bytes: usize,
    #[serde(default = "default_pool_max_idle")]
    pool_max_idle: usize,
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pool_idle_timeout: Duration,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_forward_headers() -> Vec<String> {
    vec!["Cookie".to_string(), "Authorization".to_string()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

fn default_cache_entries() -> usize {
    10_000
}

fn default_key_header() -> String {
    "X-Wsgate-Key".to_string()
}

fn default_max_answer_bytes() -> usize {
    64 * 1024
}

fn default_pool_max_idle() -> usize {
    16
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Where the user (or the claims) of a 2xx answer is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An answer header.
    Header(HeaderName),
    /// A JSON pointer into the answer body (RFC 6901), e.g. `/user`.
    Json(String),
}

impl Source {
    /// Parses `header:<Name>` or `json:<pointer>`; `headers` says whether a
    /// header is a possible source here.
    fn parse(text: &str, at: &str, headers: bool) -> Result<Self, OptionsError> {
        if let Some(name) = text.strip_prefix("header:") {
            if !headers {
                return Err(OptionsError::at(
                    at,
                    "only `json:<pointer>` is possible here",
                ));
            }
            return HeaderName::from_bytes(name.trim().as_bytes())
                .map(Source::Header)
                .map_err(|_| OptionsError::at(at, format!("`{name}` is not a header name")));
        }
        if let Some(pointer) = text.strip_prefix("json:") {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(OptionsError::at(
                    at,
                    format!(
                        "`{pointer}` is not a JSON pointer: it starts with `/`, e.g. `json:/user`"
                    ),
                ));
            }
            return Ok(Source::Json(pointer.to_string()));
        }
        let forms = if headers {
            "`header:<Name>` or `json:<pointer>`"
        } else {
            "`json:<pointer>`"
        };
        Err(OptionsError::at(at, format!("`{text}`: expected {forms}")))
    }
}

/// The checked options of one `[auth.<name>]` instance.
pub struct Options {
    pub url: Uri,
    /// GET, or POST with a JSON description of the upgrade request.
    pub post: bool,
    /// The request headers copied to the app (and into the cache key).
    pub forward_headers: Vec<HeaderName>,
    /// For one call: connecting, sending and reading the whole answer.
    pub timeout: Duration,
    /// How long a yes is reused; zero: the cache is off.
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// How long a no (401/403) is reused; zero: never.
    pub negative_ttl: Duration,
    pub user_from: Option<Source>,
    pub claims_from: Option<Source>,
    /// The header and the key sent to the app, marked sensitive.
    pub key: Option<(HeaderName, HeaderValue)>,
    /// A 401/403 answer's body is passed to the client.
    pub pass_body: bool,
    /// For an `https://` URL: the certificates to trust.
    pub tls: Option<Arc<wsgate_http_client::rustls::ClientConfig>>,
    pub max_answer_bytes: usize,
    pub pool: wsgate_http_client::Pool,
}

/// Never shows the key.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("post", &self.post)
            .field("forward_headers", &self.forward_headers)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_entries", &self.cache_entries)
            .field("negative_ttl", &self.negative_ttl)
            .field("user_from", &self.user_from)
            .field("claims_from", &self.claims_from)
            .field(
                "key",
                &self.key.as_ref().map(|(name, _)| (name, "<redacted>")),
            )
            .field("pass_body", &self.pass_body)
            .field("tls", &self.tls.is_some())
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("pool", &self.pool)
            .finish()
    }
}

impl Options {
    pub fn from_table(options: &Table) -> Result<Self, OptionsError> {
        let raw: Raw = OptionsError::parse(options)?;
        let wsgate_http_client::Endpoint { uri: url, tls } =
            wsgate_http_client::endpoint(&raw.url, "url", raw.ca_file.as_deref())
                .map_err(|(at, e)| OptionsError::at(at, e))?;
        let post = match raw.method.to_ascii_uppercase().parse::<Method>() {
            Ok(Method::GET) => false,
            Ok(Method::POST) => true,
            _ => {
                return Err(OptionsError::at(
                    "method",
                    format!("`{}`: expected GET or POST", raw.method),
                ))
            }
        };
        let mut forward_headers = Vec::new();
        for (i, name) in raw.forward_headers.iter().enumerate() {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                OptionsError::at(
                    format!("forward_headers[{i}]"),
                    format!("`{name}` is not a header name"),
                )
            })?;
            if is_hop_by_hop(&header) {
                return Err(OptionsError::at(
                    format!("forward_headers[{i}]"),
                    format!("`{name}` belongs to the client's connection and is never forwarded"),
                ));
            }
            if !forward_headers.contains(&header) {
                forward_headers.push(header);
            }
        }
        if raw.timeout.is_zero() {
            return Err(OptionsError::at(
                "timeout",
                "must be more than 0 (every call must end)",
            ));
        }
        if raw.max_answer_bytes == 0 {
            return Err(OptionsError::at("max_answer_bytes", "must be at least 1"));
        }
        if !raw.cache_ttl.is_zero() && raw.cache_entries == 0 {
            return Err(OptionsError::at(
                "cache_entries",
                "must be at least 1 while cache_ttl is on (set cache_ttl = \"0s\" to turn the cache off)",
            ));
        }
        if raw.negative_ttl > raw.cache_ttl {
            return Err(OptionsError::at(
                "negative_ttl",
                "must not be longer than cache_ttl",
            ));
        }
        let user_from = raw
            .user_from
            .as_deref()
            .map(|s| Source::parse(s, "user_from", true))
            .transpose()?;
        let claims_from = raw
            .claims_from
            .as_deref()
            .map(|s| Source::parse(s, "claims_from", false))
            .transpose()?;
        let key_header = HeaderName::from_bytes(raw.key_header.as_bytes()).map_err(|_| {
            OptionsError::at(
                "key_header",
                format!("`{}` is not a header name", raw.key_header),
            )
        })?;
        let at = if raw.key_env.is_some() {
            "key_env"
        } else {
            "key_file"
        };
        let key = SecretSource {
            env: raw.key_env,
            file: raw.key_file,
            inline: None,
        }
        .load_optional("key")?
        .map(|key| {
            let mut value = HeaderValue::from_bytes(key.expose()).map_err(|_| {
                OptionsError::at(
                    at,
                    "the key must be usable in an HTTP header (no control characters)",
                )
            })?;
            value.set_sensitive(true);
            if forward_headers.contains(&key_header) {
                return Err(OptionsError::at(
                    "key_header",
                    format!("`{key_header}` is also in forward_headers"),
                ));
            }
            Ok((key_header, value))
        })
        .transpose()?;
        Ok(Self {
            url,
            post,
            forward_headers,
            timeout: raw.timeout,
            cache_ttl: raw.cache_ttl,
            cache_entries: raw.cache_entries,
            negative_ttl: raw.negative_ttl,
            user_from,
            claims_from,
            key,
            pass_body: raw.pass_body,
            tls,
            max_answer_bytes: raw.max_answer_bytes,
            pool: wsgate_http_client::Pool {
                max_idle: raw.pool_max_idle,
                idle_timeout: raw.pool_idle_timeout,
            },
        })
    }
}

/// The headers of the client's own connection to wsgate (and the upgrade
/// itself), which say nothing of who the client is.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    use http::header;
    [
        header::CONNECTION,
        header::UPGRADE,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::HOST,
        header::TE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ]
    .contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> Result<Options, OptionsError> {
        Options::from_table(&text.parse::<Table>().expect("toml"))
    }

    fn err(text: &str) -> OptionsError {
        options(text).expect_err("refused")
    }

    #[test]
    fn defaults() {
        let o = options("url = \"http://127.0.0.1:8000/auth\"").expect("valid");
        assert!(!o.post);
        assert_eq!(
            o.forward_headers,
            vec![http::header::COOKIE, http::header::AUTHORIZATION]
        );
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert_eq!(o.cache_ttl, Duration::from_secs(30));
        assert_eq!(o.cache_entries, 10_000);
        assert_eq!(o.negative_ttl, Duration::ZERO);
        assert_eq!(o.user_from, None);
        assert!(o.key.is_none() && !o.pass_body && o.tls.is_none());
    }

    #[test]
    fn sources_parse() {
        let o = options(
            "url = \"http://a/\"\nuser_from = \"header:X-User-Id\"\nclaims_from = \"json:/claims\"\nmethod = \"post\"",
        )
        .expect("valid");
        assert!(o.post);
        assert_eq!(
            o.user_from,
            Some(Source::Header(HeaderName::from_static("x-user-id")))
        );
        assert_eq!(o.claims_from, Some(Source::Json("/claims".to_string())));
        let o = options("url = \"http://a/\"\nuser_from = \"json:/user/id\"").expect("valid");
        assert_eq!(o.user_from, Some(Source::Json("/user/id".to_string())));
    }

    #[test]
    fn mistakes_are_named() {
        let base = "url = \"http://a/\"\n";
        for (extra, at) in [
            ("method = \"PUT\"", "method"),
            ("user_from = \"cookie:x\"", "user_from"),
            ("user_from = \"json:user\"", "user_from"),
            ("user_from = \"header:bad name\"", "user_from"),
            ("claims_from = \"header:X-Claims\"", "claims_from"),
            ("forward_headers = [\"Upgrade\"]", "forward_headers[0]"),
            (
                "forward_headers = [\"Cookie\", \"a b\"]",
                "forward_headers[1]",
            ),
            ("timeout = \"0s\"", "timeout"),
            ("max_answer_bytes = 0", "max_answer_bytes"),
            ("cache_entries = 0", "cache_entries"),
            ("negative_ttl = \"1m\"", "negative_ttl"),
            ("ca_file = \"/nonexistent/ca.pem\"", "ca_file"),
        ] {
            assert_eq!(
                err(&format!("{base}{extra}")).path.as_deref(),
                Some(at),
                "{extra}"
            );
        }
        assert_eq!(err("url = \"https://a/\"").path.as_deref(), Some("url"));
        assert_eq!(err("url = \"ftp://a/\"").path.as_deref(), Some("url"));
        assert_eq!(err("url = \"http://u:p@a/\"").path.as_deref(), Some("url"));
        assert!(err("url = \"http://a/\"\nurl_x = 1")
            .message
            .contains("url_x"));
        // The cache off: no entries needed.
        assert!(options("url = \"http://a/\"\ncache_ttl = \"0s\"\ncache_entries = 0").is_ok());
    }

    #[test]
    fn the_key_comes_from_the_environment_and_is_never_shown() {
        let var = format!("WSGATE_FORWARD_TEST_KEY_{}", std::process::id());
        std::env::set_var(&var, "k3y-v4lue");
        let o = options(&format!("url = \"http://a/\"\nkey_env = \"{var}\"")).expect("valid");
        let (name, value) = o.key.as_ref().expect("a key");
        assert_eq!(name, "x-wsgate-key");
        assert_eq!(value.as_bytes(), b"k3y-v4lue");
        assert!(value.is_sensitive());
        assert!(!format!("{o:?}").contains("k3y-v4lue"));
        let e = err(&format!(
            "url = \"http://a/\"\nkey_env = \"{var}\"\nkey_header = \"Cookie\""
        ));
        assert_eq!(e.path.as_deref(), Some("key_header"));
        std::env::remove_var(&var);
        let e = err(&format!("url = \"http://a/\"\nkey_env = \"{var}\""));
        assert!(e.message.contains("not set"), "{}", e.message);
    }
}
