//! Authentication: the upgrade request an `Authenticator` sees, and what it answers.

use std::net::IpAddr;
use std::sync::Arc;

use crate::{query, BoxFuture, Bytes, HeaderMap, OptionsError, Table};

/// What an authenticator sees of the upgrade request.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    /// The request path, e.g. `/ws`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The client address (after `trusted_proxies` are applied).
    pub client_ip: IpAddr,
    /// Whether the client connected over TLS (`wss://`).
    pub secure: bool,
    /// The connection's id (as [`Session::id`](crate::Session::id) gives
    /// it) once the connection is admitted: a router's
    /// [`accept`](crate::Router::accept) hook sees it; authenticators, which
    /// run before the caps, do not.
    pub conn_id: Option<&'a str>,
}

impl UpgradeRequest<'_> {
    /// The credential the client presented: `Authorization: Bearer <t>`, or
    /// else the query parameter `access_token` (browsers cannot set headers
    /// on a WebSocket).
    pub fn bearer_token(&self) -> Option<String> {
        query::bearer_token(self.headers, self.query)
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query::query_param(self.query?, name)
    }
}

/// Who a connection belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The user id, if the authenticator knows one. Per-user caps and
    /// `{user}` topic patterns use it.
    pub user: Option<Arc<str>>,
    /// Extra claims (e.g. a JWT's payload), for routers that want them.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user: impl Into<Arc<str>>) -> Self {
        Self {
            user: Some(user.into()),
            claims: serde_json::Map::new(),
        }
    }
}

/// Why an upgrade was refused. The message is shown to the client, so it
/// must never contain the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 401: missing, malformed, unknown or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials that are not allowed here.
    #[error("{0}")]
    Forbidden(String),
    /// 503 `auth_unavailable`, with `Retry-After`: whoever decides could
    /// not be asked (down, too slow, or it answered an error). Counted apart
    /// from refusals, so that an outage shows as one.
    #[error("{0}")]
    Unavailable(String),
    /// A 401 or 403 with the answer of the app that decided, passed to the
    /// client as it is (content type and body) instead of wsgate's JSON
    /// refusal; `message` is what the log says.
    #[error("{message}")]
    Answered {
        /// 403 rather than 401.
        forbidden: bool,
        message: String,
        content_type: String,
        body: Bytes,
    },
}

/// Turns an upgrade request into an identity.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>>;
}

/// Builds authenticators of one kind from their `[auth.<name>]` tables.
pub trait AuthPlugin: Send + Sync + 'static {
    /// The name used in `plugin = "..."`.
    fn name(&self) -> &'static str;

    /// Validates `options` (the table without its `plugin` key) and builds
    /// an authenticator. Secrets named by `*_env` or `*_file` keys are read
    /// here (see [`crate::secret`]), so that a missing secret is a config
    /// error.
    fn build(&self, options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError>;

    /// The option keys whose values are safe to show (in `wsgate check`, the
    /// admin `config`); every other value is shown as `<redacted>`.
    fn public_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Registers the plugin's own metrics (once, at start; they are shown
    /// under the `wsgate_` prefix). The default has none.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}
