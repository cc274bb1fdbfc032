//! A JWK set fetched from `jwks_url`, and kept fresh.
//!
//! # When the set is fetched
//!
//! * When the config is loaded ([`Jwks::load`], from the factory's `build`,
//!   which is sync and runs with or without the daemon's runtime): on a
//!   thread and runtime of its own ([`wsgate_http_client::run_apart`]),
//!   with a client of its own. With no usable set, that is a config error
//!   at `jwks_url` saying why, so `wsgate check` reports it too.
//! * Every `jwks_refresh`, by a task started with the first `authenticate`
//!   (there is no runtime at build time). It holds only a `Weak` to the
//!   set, so it ends when the authenticator is dropped (after a reload).
//!   After a failed fetch it tries again every `jwks_min_refresh` (at least
//!   1 s, at most `jwks_refresh`).
//! * When a token names a `kid` the set does not have (or, without a
//!   `kid`, no key fits its algorithm): at once, unless a fetch was
//!   attempted within `jwks_min_refresh`, so that made-up kids cannot make
//!   wsgate hammer the JWKS server.
//! * Before a token is checked, when no fetch was even attempted for
//!   `jwks_refresh` + [`GRACE`] (the refresher has not started yet, after a
//!   long idle): the set may be stale.
//!
//! Fetches are single-flight: one at a time per authenticator; who waits
//! for one uses its result. A failed fetch keeps the last good set; it is
//! logged (a warning with the URL and why, nothing secret) and counted.
//!
//! # The process-wide cache
//!
//! The last good set of each `jwks_url` is kept for the whole process, so
//! that a reload within `jwks_refresh` of the last fetch does not fetch
//! again, and a reload that cannot reach the JWKS server still builds with
//! the cached set (logged). It also gives `wsgate_jwt_jwks_keys`: the keys
//! of the cached sets of the URLs some authenticator uses, summed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use wsgate_http_client::{Client, Pool};
use wsgate_plugin_api::OptionsError;

use crate::keys::KeySet;
use crate::metrics::{Outcome, METRICS};
use crate::options::{algorithm_name, JwksOptions};

/// How much longer than `jwks_refresh` a set may go without a fetch
/// attempt before a token's check waits for one.
pub const GRACE: Duration = Duration::from_secs(5);

/// The refresher's least sleep (against a busy loop, whatever the clock
/// does).
const MIN_SLEEP: Duration = Duration::from_millis(100);

/// Fetches are minutes apart: one idle connection, briefly, serves a
/// refresh that follows another (an unknown `kid` right after a periodic
/// one).
const POOL: Pool = Pool {
    max_idle: 1,
    idle_timeout: Duration::from_secs(30),
};

/// The last good set of one URL, for the whole process.
struct Cached {
    set: Arc<KeySet>,
    fetched: Instant,
    /// Authenticators alive with this URL (for the keys gauge).
    users: usize,
}

static CACHE: LazyLock<Mutex<HashMap<String, Cached>>> = LazyLock::new(Mutex::default);

fn cache() -> MutexGuard<'static, HashMap<String, Cached>> {
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cached set of `url` and when it was fetched.
fn cached(url: &str) -> Option<(Arc<KeySet>, Instant)> {
    cache().get(url).map(|c| (Arc::clone(&c.set), c.fetched))
}

/// Keeps a freshly fetched set for `url`.
fn store(url: &str, set: &Arc<KeySet>, fetched: Instant) {
    let mut cache = cache();
    let entry = cache.entry(url.to_string()).or_insert_with(|| Cached {
        set: Arc::clone(set),
        fetched,
        users: 0,
    });
    entry.set = Arc::clone(set);
    entry.fetched = fetched;
    publish_keys(&cache);
}

/// Sets the keys gauge: the keys of the cached sets in use.
fn publish_keys(cache: &HashMap<String, Cached>) {
    let keys = cache
        .values()
        .filter(|c| c.users > 0)
        .map(|c| c.set.len())
        .sum();
    METRICS.set_keys(keys);
}

/// Why a fetch gave no usable set. The texts name what went wrong, never
/// the document's contents.
#[derive(Debug)]
pub enum FetchError {
    Http(wsgate_http_client::Error),
    Status(StatusCode),
    Document(String),
    NoUsableKey(String),
    /// The load-time fetch could not run (no thread or runtime).
    Apart(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use wsgate_http_client::Error;
        match self {
            FetchError::Http(Error::Timeout(d)) => write!(f, "timed out: no answer within {d:?}"),
            FetchError::Http(Error::Unreachable(why)) => write!(f, "unreachable: {why}"),
            FetchError::Http(Error::TooLarge(n)) => {
                write!(f, "the answer is over {n} bytes (jwks_max_bytes)")
            }
            FetchError::Status(status) => write!(f, "it answered HTTP status {status}"),
            FetchError::Document(why) => f.write_str(why),
            FetchError::NoUsableKey(why) => write!(f, "no usable key: {why}"),
            FetchError::Apart(why) => f.write_str(why),
        }
    }
}

/// GETs the document at `uri` and reads it as a JWK set. Redirects are not
/// followed (a 3xx is an error).
async fn fetch(
    client: &Client,
    uri: &Uri,
    timeout: Duration,
    max_bytes: usize,
) -> Result<(KeySet, Vec<String>), FetchError> {
    let request = Request::get(uri.clone())
        .header(USER_AGENT, wsgate_http_client::USER_AGENT)
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::Document(format!("cannot make the request: {e}")))?;
    let response = client
        .send(request, timeout, max_bytes)
        .await
        .map_err(FetchError::Http)?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    KeySet::from_jwks(response.body()).map_err(FetchError::Document)
}

/// A fetched set, if it has a key for at least one of `algorithms` (else
/// it is no use here, and the last good set is better).
fn usable(
    fetched: (KeySet, Vec<String>),
    url: &str,
    algorithms: &[Algorithm],
) -> Result<KeySet, FetchError> {
    let (set, skipped) = fetched;
    for why in &skipped {
        tracing::debug!("jwt: JWKS {url}: skipped {why}");
    }
    if set.usable_for(algorithms) == 0 {
        let names: Vec<&str> = algorithms.iter().map(|a| algorithm_name(*a)).collect();
        return Err(FetchError::NoUsableKey(format!(
            "none of its {} keys is a signature key for {}",
            set.len() + skipped.len(),
            names.join(", ")
        )));
    }
    Ok(set)
}

/// The kids of a set, for the log.
fn kids(set: &KeySet) -> Vec<&str> {
    set.keys()
        .iter()
        .map(|k| k.kid.as_deref().unwrap_or("-"))
        .collect()
}

/// What the authenticator holds of its set.
struct State {
    set: Arc<KeySet>,
    /// When `set` was fetched (by this authenticator or, from the cache,
    /// another one).
    fetched: Instant,
    /// The last fetch attempt, good or not.
    attempted: Instant,
    /// Fetch attempts so far: who waited for a fetch sees that one ran.
    attempts: u64,
}

/// Why a refresh is asked for; decides, once the caller's turn comes,
/// whether it is still needed.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The set is older than `jwks_refresh` and no fetch was attempted for
    /// `after`.
    Due { after: Duration },
    /// A token's key is missing; `seen` is the attempt count the caller
    /// saw (another fetch since then already answered it).
    Unknown { seen: u64 },
}

/// The JWKS of one authenticator.
pub struct Jwks {
    options: JwksOptions,
    algorithms: Vec<Algorithm>,
    /// For the refreshes, on the daemon's runtime.
    client: Client,
    state: Mutex<State>,
    /// Held during a fetch: one at a time.
    in_flight: tokio::sync::Mutex<()>,
    refresher_started: AtomicBool,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.options.url)
            .field("refresh", &self.options.refresh)
            .field("min_refresh", &self.options.min_refresh)
            .field("timeout", &self.options.timeout)
            .field("max_bytes", &self.options.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Gets the set when the config is loaded: from the cache if it was
    /// fetched within `jwks_refresh`, else fetched now; a failed fetch
    /// falls back on the cached set, however old. With neither, an error
    /// at `jwks_url` (or at `ca_file` for an unusable one).
    pub fn load(options: JwksOptions, algorithms: &[Algorithm]) -> Result<Arc<Self>, OptionsError> {
        let tls = match &options.ca_file {
            Some(path) => {
                Some(wsgate_http_client::trust(path).map_err(|e| OptionsError::at("ca_file", e))?)
            }
            None => None,
        };
        let url = options.url.as_str();
        let cached = cached(url).filter(|(set, _)| set.usable_for(algorithms) > 0);
        let (set, fetched, attempted) = match cached {
            Some((set, fetched)) if fetched.elapsed() < options.refresh => {
                tracing::debug!(
                    "jwt: JWKS {url}: using the set fetched {:?} ago",
                    fetched.elapsed()
                );
                (set, fetched, fetched)
            }
            cached => {
                // A client of its own: the pool of one is bound to the
                // runtime it first runs on, and this one ends here.
                let client = Client::new(tls.clone(), POOL);
                let (uri, timeout, max_bytes) =
                    (options.uri.clone(), options.timeout, options.max_bytes);
                let attempted = Instant::now();
                let result = wsgate_http_client::run_apart(async move {
                    fetch(&client, &uri, timeout, max_bytes).await
                })
                .unwrap_or_else(|e| Err(FetchError::Apart(e)))
                .and_then(|fetched| usable(fetched, url, algorithms));
                match (result, cached) {
                    (Ok(set), _) => {
                        METRICS.fetched(Outcome::Ok);
                        let set = Arc::new(set);
                        tracing::info!(
                            "jwt: fetched the JWKS {url}: {} keys (kids {:?})",
                            set.len(),
                            kids(&set)
                        );
                        store(url, &set, attempted);
                        (set, attempted, attempted)
                    }
                    (Err(e), Some((set, fetched))) => {
                        METRICS.fetched(Outcome::Error);
                        tracing::warn!(
                            "jwt: cannot fetch the JWKS {url}: {e}; using the set fetched {:?} ago",
                            fetched.elapsed()
                        );
                        (set, fetched, attempted)
                    }
                    (Err(e), None) => {
                        METRICS.fetched(Outcome::Error);
                        return Err(OptionsError::at(
                            "jwks_url",
                            format!("cannot fetch the JWKS {url}: {e}"),
                        ));
                    }
                }
            }
        };

        {
            let mut cache = cache();
            if let Some(entry) = cache.get_mut(url) {
                entry.users += 1;
            }
            publish_keys(&cache);
        }
        Ok(Arc::new(Self {
            client: Client::new(tls, POOL),
            algorithms: algorithms.to_vec(),
            state: Mutex::new(State {
                set,
                fetched,
                attempted,
                attempts: 0,
            }),
            in_flight: tokio::sync::Mutex::new(()),
            refresher_started: AtomicBool::new(false),
            options,
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The set now.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.state().set)
    }

    /// Starts the periodic refresher, once, on the caller's runtime (the
    /// first `authenticate` runs on the daemon's).
    pub fn start_refresher(self: &Arc<Self>) {
        if self.refresher_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.refresher_started.swap(true, Ordering::AcqRel) {
            runtime.spawn(refresher(Arc::downgrade(self)));
        }
    }

    /// Fetches first when no fetch was attempted for `jwks_refresh` +
    /// [`GRACE`]. A failure goes on with the last good set.
    pub async fn refresh_if_stale(&self) {
        let after = self.options.refresh + GRACE;
        if self.state().attempted.elapsed() >= after {
            self.refresh(Want::Due { after }).await;
        }
    }

    /// A token's key is not in the set: fetches at once, unless a fetch
    /// was attempted within `jwks_min_refresh`. The caller looks again
    /// either way.
    pub async fn refresh_for_unknown(&self) {
        let seen = {
            let state = self.state();
            if state.attempted.elapsed() < self.options.min_refresh {
                return;
            }
            state.attempts
        };
        self.refresh(Want::Unknown { seen }).await;
    }

    /// How long the refresher sleeps: until the set is `jwks_refresh` old,
    /// and at least the retry interval after the last attempt.
    fn next_due(&self) -> Duration {
        let state = self.state();
        let by_age = self.options.refresh.saturating_sub(state.fetched.elapsed());
        let by_retry = self.retry().saturating_sub(state.attempted.elapsed());
        by_age.max(by_retry).max(MIN_SLEEP)
    }

    /// The refresher's interval between failed attempts.
    fn retry(&self) -> Duration {
        self.options
            .min_refresh
            .max(Duration::from_secs(1))
            .min(self.options.refresh)
    }

    /// One refresh, if still wanted once it is this caller's turn.
    async fn refresh(&self, want: Want) {
        let _turn = self.in_flight.lock().await;
        let url = self.options.url.as_str();
        let attempted = Instant::now();
        {
            let mut state = self.state();
            let needed = match want {
                Want::Due { after } => {
                    state.fetched.elapsed() >= self.options.refresh
                        && state.attempted.elapsed() >= after
                }
                Want::Unknown { seen } => state.attempts == seen,
            };
            if !needed {
                return;
            }
            // A due refresh takes a newer set another authenticator of the
            // same URL fetched (two tables, or the one of the config this
            // one's is being replaced by).
            if let Want::Due { .. } = want {
                if let Some((set, fetched)) = cached(url) {
                    if fetched > state.fetched
                        && fetched.elapsed() < self.options.refresh
                        && set.usable_for(&self.algorithms) > 0
                    {
                        state.set = set;
                        state.fetched = fetched;
                        return;
                    }
                }
            }
            state.attempted = attempted;
            state.attempts += 1;
        }

        let result = fetch(
            &self.client,
            &self.options.uri,
            self.options.timeout,
            self.options.max_bytes,
        )
        .await
        .and_then(|fetched| usable(fetched, url, &self.algorithms));
        match result {
            Ok(set) => {
                METRICS.fetched(Outcome::Ok);
                let set = Arc::new(set);
                store(url, &set, attempted);
                let mut state = self.state();
                if kids(&state.set) != kids(&set) {
                    tracing::info!(
                        "jwt: the JWKS {url} changed: {} keys (kids {:?})",
                        set.len(),
                        kids(&set)
                    );
                } else {
                    tracing::debug!("jwt: refreshed the JWKS {url}: unchanged kids");
                }
                state.set = set;
                state.fetched = attempted;
            }
            Err(e) => {
                METRICS.fetched(Outcome::Error);
                let state = self.state();
                tracing::warn!(
                    "jwt: cannot refresh the JWKS {url}: {e}; keeping the last good set \
                     ({} keys, fetched {:?} ago)",
                    state.set.len(),
                    state.fetched.elapsed()
                );
            }
        }
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        let mut cache = cache();
        if let Some(entry) = cache.get_mut(&self.options.url) {
            entry.users = entry.users.saturating_sub(1);
        }
        publish_keys(&cache);
    }
}

/// The periodic refresher of one authenticator: ends when it is dropped.
async fn refresher(jwks: Weak<Jwks>) {
    loop {
        let Some(wait) = jwks.upgrade().map(|j| j.next_due()) else {
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(strong) = jwks.upgrade() else {
            return;
        };
        let after = strong.retry();
        strong.refresh(Want::Due { after }).await;
    }
}
