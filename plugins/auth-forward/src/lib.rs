//! The `forward` authenticator: wsgate asks the app who the client is, as
//! nginx's `auth_request` or Traefik's ForwardAuth do.
//!
//! For every upgrade on a route that names the instance, wsgate calls the
//! app's URL with the credentials the client presented (the
//! `forward_headers`, typically its session cookie) and reads the answer:
//!
//! - 2xx: the client is who the answer says (`user_from`: an answer header
//!   or a JSON pointer into the answer body; `claims_from`: a JSON object
//!   in it); without `user_from` the connection is anonymous;
//! - 401 / 403: the same status to the client, with wsgate's JSON refusal
//!   (or, with `pass_body = true`, the app's own answer);
//! - any other status, a timeout, an answer over `max_answer_bytes` or no
//!   answer at all: 503 `auth_unavailable` with `Retry-After`, counted apart
//!   from refusals, so that an outage of the app shows as one.
//!
//! # Options
//!
//! ```toml
//! [auth.app]
//! plugin = "forward"
//! url = "http://127.0.0.1:8000/internal/ws-auth"  # http://, or https:// with ca_file
//! method = "GET"                 # or POST: a JSON body {path, query, ip, secure, headers}
//! forward_headers = ["Cookie", "Authorization"]   # the default; never others
//! timeout = "2s"                 # the whole call; keep it under [server] handshake_timeout
//! cache_ttl = "30s"              # a yes is reused this long; "0s" = no cache
//! cache_entries = 10000          # the most answers kept (least recently used go first)
//! negative_ttl = "0s"            # a 401/403 is reused this long (at most cache_ttl)
//! user_from = "header:X-User-Id" # or "json:/user"; absent: anonymous
//! claims_from = "json:/claims"   # optional: a JSON object in the answer body
//! key_env = "WSGATE_FORWARD_KEY" # optional (or key_file): sent in key_header
//! key_header = "X-Wsgate-Key"    # the default
//! pass_body = false              # pass the app's 401/403 answer to the client
//! ca_file = "/etc/ssl/certs/ca-certificates.crt"  # for an https:// url
//! max_answer_bytes = 65536       # a longer answer is an outage (malformed)
//! pool_max_idle = 16             # idle keep-alive connections to the app
//! pool_idle_timeout = "30s"
//! ```
//!
//! # What the app gets
//!
//! A request to `url` with: the `forward_headers` the client sent (every
//! value, as sent), `X-Forwarded-For` (the client address), `X-Forwarded-Proto`
//! (`https` for `wss://`, else `http`), `X-Forwarded-Host`, `X-Forwarded-Uri`
//! (the upgrade's path and query), `X-Forwarded-Method: GET`, the key header
//! when a key is set, and `User-Agent: wsgate/<version>`. With POST, the same
//! headers and a JSON body describing the upgrade request.
//!
//! # The cache
//!
//! Keyed by a SHA-256 digest of the forwarded headers and the path and
//! query (an app that decides by the client's address should run with
//! `cache_ttl = "0s"`); the credentials themselves are not kept. Outages are
//! never cached.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};
use wsgate_plugin_api::{
    AuthPlugin, Authenticator, BoxFuture, Identity, OptionsError, Rejection, Table, UpgradeRequest,
};

mod cache;
mod metrics;
mod options;

use cache::{Cache, Key, KeyBuilder};
use metrics::{Outcome, METRICS};
use options::{Options, Source};

/// The factory, registered as `forward`.
pub struct Plugin;

impl AuthPlugin for Plugin {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError> {
        Ok(Arc::new(ForwardAuth::new(Options::from_table(options)?)))
    }

    fn public_keys(&self) -> &'static [&'static str] {
        &[
            "url",
            "method",
            "forward_headers",
            "timeout",
            "cache_ttl",
            "cache_entries",
            "negative_ttl",
            "user_from",
            "claims_from",
            "key_env",
            "key_file",
            "key_header",
            "pass_body",
            "ca_file",
            "max_answer_bytes",
            "pool_max_idle",
            "pool_idle_timeout",
        ]
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        METRICS.register(registry);
    }
}

/// One `[auth.<name>]` instance: its options, its keep-alive pool and its
/// cache.
pub struct ForwardAuth {
    options: Options,
    client: wsgate_http_client::Client,
    cache: Option<Cache>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The header names wsgate sets on the call (any copy the client sent is
/// not forwarded under them).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

impl ForwardAuth {
    fn new(options: Options) -> Self {
        let client = wsgate_http_client::Client::new(options.tls.clone(), options.pool);
        let cache = Cache::new(
            options.cache_entries,
            options.cache_ttl,
            options.negative_ttl,
        );
        Self {
            options,
            client,
            cache,
        }
    }

    async fn check(&self, request: &UpgradeRequest<'_>) -> Result<Identity, Rejection> {
        let uri = match request.query {
            Some(q) => format!("{}?{q}", request.path),
            None => request.path.to_string(),
        };
        let cached = self.cache.as_ref().map(|c| (c, self.key(request, &uri)));
        if let Some((cache, key)) = &cached {
            let hit = cache.get(key, Instant::now());
            METRICS.looked_up(hit.is_some());
            if let Some(answer) = hit {
                return answer;
            }
        }
        let started = Instant::now();
        let (outcome, answer) = self.call(request, &uri).await;
        METRICS.called(outcome, started.elapsed());
        if let Some((cache, key)) = cached {
            cache.put(key, &answer, Instant::now());
        }
        answer
    }

    /// The cache key of a call: what is forwarded of the request.
    fn key(&self, request: &UpgradeRequest<'_>, uri: &str) -> Key {
        let mut key = KeyBuilder::new();
        key.part(uri.as_bytes());
        for name in &self.options.forward_headers {
            key.part(name.as_str().as_bytes());
            for value in request.headers.get_all(name) {
                key.part(value.as_bytes());
            }
        }
        key.finish()
    }

    async fn call(
        &self,
        request: &UpgradeRequest<'_>,
        uri: &str,
    ) -> (Outcome, Result<Identity, Rejection>) {
        let call = match self.request(request, uri) {
            Ok(call) => call,
            Err(e) => return (Outcome::Unreachable, Err(unavailable(&e))),
        };
        let options = &self.options;
        let answer = match self
            .client
            .send(call, options.timeout, options.max_answer_bytes)
            .await
        {
            Ok(answer) => answer,
            Err(wsgate_http_client::Error::Timeout(_)) => {
                return (
                    Outcome::Timeout,
                    Err(unavailable("the auth app did not answer in time")),
                )
            }
            Err(wsgate_http_client::Error::Unreachable(_)) => {
                return (
                    Outcome::Unreachable,
                    Err(unavailable("the auth app cannot be reached")),
                )
            }
            Err(wsgate_http_client::Error::TooLarge(_)) => {
                return (
                    Outcome::Malformed,
                    Err(unavailable("the auth app's answer is too long")),
                )
            }
        };
        let status = answer.status();
        match status {
            s if s.is_success() => match self.identity(&answer) {
                Ok(identity) => (Outcome::Ok, Ok(identity)),
                Err(why) => (Outcome::Malformed, Err(unavailable(&why))),
            },
            StatusCode::UNAUTHORIZED => (
                Outcome::Unauthorized,
                Err(self.refusal(false, "the app refused the credentials", answer)),
            ),
            StatusCode::FORBIDDEN => (
                Outcome::Forbidden,
                Err(self.refusal(true, "the app does not allow this connection", answer)),
            ),
            s => (
                Outcome::ErrorStatus,
                Err(unavailable(&format!(
                    "the auth app answered {}",
                    s.as_u16()
                ))),
            ),
        }
    }

    /// The call to the app for `request`.
    fn request(
        &self,
        request: &UpgradeRequest<'_>,
        uri: &str,
    ) -> Result<Request<Full<Bytes>>, String> {
        let options = &self.options;
        let mut headers = http::HeaderMap::new();
        for name in &options.forward_headers {
            for value in request.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let set = |headers: &mut http::HeaderMap, name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        set(
            &mut headers,
            X_FORWARDED_FOR,
            &request.client_ip.to_string(),
        );
        let proto = if request.secure { "https" } else { "http" };
        set(&mut headers, X_FORWARDED_PROTO, proto);
        if let Some(host) = request.headers.get(header::HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        set(&mut headers, X_FORWARDED_URI, uri);
        set(&mut headers, X_FORWARDED_METHOD, "GET");
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(wsgate_http_client::USER_AGENT),
        );
        if let Some((name, value)) = &options.key {
            headers.insert(name.clone(), value.clone());
        }
        let body = if options.post {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Bytes::from(self.description(request).to_string())
        } else {
            Bytes::new()
        };
        let method = if options.post {
            http::Method::POST
        } else {
            http::Method::GET
        };
        let mut call = Request::builder()
            .method(method)
            .uri(options.url.clone())
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the call: {e}"))?;
        *call.headers_mut() = headers;
        Ok(call)
    }

    /// The JSON body of a POST: the upgrade request, with the forwarded
    /// headers only (values that are not text are left out).
    fn description(&self, request: &UpgradeRequest<'_>) -> Value {
        let mut headers = Map::new();
        for name in &self.options.forward_headers {
            let values: Vec<&str> = request
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                let joined = if *name == header::COOKIE {
                    values.join("; ")
                } else {
                    values.join(", ")
                };
                headers.insert(name.as_str().to_string(), Value::String(joined));
            }
        }
        serde_json::json!({
            "path": request.path,
            "query": request.query,
            "ip": request.client_ip.to_string(),
            "secure": request.secure,
            "headers": headers,
        })
    }

    /// The identity a 2xx answer gives, or why it gives none.
    fn identity(&self, answer: &Response<Bytes>) -> Result<Identity, String> {
        let options = &self.options;
        let wants_json = matches!(options.user_from, Some(Source::Json(_)))
            || matches!(options.claims_from, Some(Source::Json(_)));
        let body: Option<Value> = if wants_json {
            Some(
                serde_json::from_slice(answer.body())
                    .map_err(|_| "the auth app's answer is not JSON".to_string())?,
            )
        } else {
            None
        };
        let user = match &options.user_from {
            None => None,
            Some(Source::Header(name)) => {
                let value = answer
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("the auth app's answer has no {name} header"))?;
                Some(value.to_string())
            }
            Some(Source::Json(pointer)) => match body.as_ref().and_then(|b| b.pointer(pointer)) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => {
                    return Err(format!(
                        "the auth app's answer has no user (a string or number) at {pointer}"
                    ))
                }
            },
        };
        let claims = match &options.claims_from {
            Some(Source::Json(pointer)) => match body.as_ref().and_then(|b| b.pointer(pointer)) {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(claims)) => claims.clone(),
                Some(_) => {
                    return Err(format!(
                        "the auth app's claims at {pointer} are not a JSON object"
                    ))
                }
            },
            _ => Map::new(),
        };
        Ok(Identity {
            user: user.map(Arc::from),
            claims,
        })
    }

    /// A 401/403 of the app as the client gets it.
    fn refusal(&self, forbidden: bool, message: &str, answer: Response<Bytes>) -> Rejection {
        if !self.options.pass_body {
            return if forbidden {
                Rejection::Forbidden(message.to_string())
            } else {
                Rejection::Unauthorized(message.to_string())
            };
        }
        let content_type = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        Rejection::Answered {
            forbidden,
            message: message.to_string(),
            content_type,
            body: answer.into_body(),
        }
    }
}

fn unavailable(why: &str) -> Rejection {
    Rejection::Unavailable(format!("authentication is unavailable: {why}"))
}

impl Authenticator for ForwardAuth {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>> {
        Box::pin(self.check(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(extra: &str) -> ForwardAuth {
        let table: Table = format!("url = \"http://127.0.0.1:1/auth\"\n{extra}")
            .parse()
            .expect("toml");
        ForwardAuth::new(Options::from_table(&table).expect("valid"))
    }

    fn answer(header: Option<&str>, body: &str) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from(body.to_string()));
        if let Some(user) = header {
            r.headers_mut()
                .insert("x-user-id", user.parse().expect("value"));
        }
        r
    }

    #[test]
    fn the_identity_comes_from_where_the_options_say() {
        let a = auth("user_from = \"json:/user/id\"\nclaims_from = \"json:/claims\"");
        let id = a
            .identity(&answer(
                Some("mallory"),
                r#"{"user":{"id":42},"claims":{"plan":"pro"}}"#,
            ))
            .expect("identity");
        assert_eq!(id.user.as_deref(), Some("42"));
        assert_eq!(id.claims.get("plan"), Some(&Value::from("pro")));
        // Claims are optional; a user is not.
        let id = a
            .identity(&answer(None, r#"{"user":{"id":"u-1"}}"#))
            .expect("identity");
        assert!(id.claims.is_empty());
        for body in [r#"{"user":{}}"#, r#"{"user":{"id":""}}"#, "not json"] {
            assert!(a.identity(&answer(None, body)).is_err(), "{body}");
        }
        assert!(a
            .identity(&answer(None, r#"{"user":{"id":"u"},"claims":[1]}"#))
            .is_err());

        let a = auth("user_from = \"header:X-User-Id\"");
        let id = a.identity(&answer(Some(" alice "), "")).expect("identity");
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert!(a.identity(&answer(Some(""), "")).is_err());
        assert!(a.identity(&answer(None, "")).is_err());

        // Without user_from, a yes is an anonymous connection.
        let id = auth("").identity(&answer(None, "")).expect("identity");
        assert_eq!(id, Identity::anonymous());
    }
}
