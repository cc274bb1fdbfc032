//! The `jwt` authenticator's options, checked when the config is loaded.
//!
//! Everything that can be wrong in a table is found here, before any key
//! is read or fetched: the one key source, the algorithms it allows, the
//! JWKS timings and the claim checks.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use wsgate_plugin_api::secret::{Secret, SecretSource};
use wsgate_plugin_api::{OptionsError, Table};

/// The most clock skew `leeway` (or `leeway_secs`) may allow: one day.
pub const MAX_LEEWAY: Duration = Duration::from_secs(86_400);

/// The clock skew allowed on `exp` / `nbf` when none is configured.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// How often a JWKS is fetched again, by default.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// How long after a fetch attempt a token with an unknown `kid` may cause
/// another one, by default.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// How long one JWKS fetch may take (connect, request, whole answer), by
/// default.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest JWKS document taken, by default: 1 MiB.
pub const DEFAULT_JWKS_MAX_BYTES: usize = 1024 * 1024;

/// The longest `jwks_timeout`: the first fetch holds up a config load.
const MAX_JWKS_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest `jwks_refresh`.
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(1);

/// The HMAC algorithms (a shared secret); the default list with a secret.
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Every algorithm this plugin supports, by its JOSE name.
const ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The JOSE name of an algorithm (for errors and `Debug`).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, known)| *known == alg)
        .map_or("?", |(name, _)| name)
}

/// The options of `[auth.<name>]` with `plugin = "jwt"`, as written.
///
/// `secret` is taken as a raw TOML value: a typed field would make a wrong
/// type an error that quotes the value. The JWKS options are `Option`s so
/// that setting one without `jwks_url` can be refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret: Option<toml::Value>,
    public_key_file: Option<PathBuf>,
    jwks_url: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    jwks_refresh: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    jwks_min_refresh: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    jwks_timeout: Option<Duration>,
    jwks_max_bytes: Option<usize>,
    algorithms: Option<Vec<String>>,
    user_claim: Option<String>,
    #[serde(default, with = "humantime_serde")]
    leeway: Option<Duration>,
    /// Deprecated: `leeway` in whole seconds.
    leeway_secs: Option<u64>,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Where the verification keys come from: exactly one source.
pub enum KeySource {
    /// A shared secret: HS256/384/512.
    Secret(Secret),
    /// A PEM file of one or more public keys.
    PublicKeyFile(PathBuf),
    /// A JWK set fetched from a URL, and fetched again now and then.
    Jwks(JwksOptions),
}

/// How a JWKS is fetched and kept fresh.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// The `http://` or `https://` URL, as configured (the cache key).
    pub url: String,
    pub uri: Uri,
    /// The PEM certificates an `https://` JWKS server is trusted by.
    pub ca_file: Option<PathBuf>,
    /// How often the set is fetched again.
    pub refresh: Duration,
    /// The least time between a fetch attempt and one caused by an
    /// unknown `kid`.
    pub min_refresh: Duration,
    /// The bound of one fetch.
    pub timeout: Duration,
    /// The longest document taken.
    pub max_bytes: usize,
}

/// The checked options.
pub struct Options {
    pub keys: KeySource,
    /// The algorithms a token may be signed with, without duplicates.
    pub algorithms: Vec<Algorithm>,
    pub user_claim: String,
    /// Whole seconds, as jsonwebtoken takes it.
    pub leeway_secs: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl Options {
    pub fn from_table(options: &Table) -> Result<Self, OptionsError> {
        let raw: Raw = OptionsError::parse(options)?;

        let has_secret =
            raw.secret_env.is_some() || raw.secret_file.is_some() || raw.secret.is_some();
        let sources = [
            has_secret,
            raw.public_key_file.is_some(),
            raw.jwks_url.is_some(),
        ];
        match sources.iter().filter(|set| **set).count() {
            0 => {
                return Err(OptionsError::new(
                    "a secret is required: set one of secret_env, secret_file or secret \
                     (HS256/384/512), or else public_key_file or jwks_url (public keys)",
                ))
            }
            1 => {}
            _ => {
                return Err(OptionsError::new(
                    "the key sources are exclusive: set only one of a secret (secret_env, \
                     secret_file or secret), public_key_file and jwks_url",
                ))
            }
        }
        if raw.jwks_url.is_none() {
            for (key, set) in [
                ("ca_file", raw.ca_file.is_some()),
                ("jwks_refresh", raw.jwks_refresh.is_some()),
                ("jwks_min_refresh", raw.jwks_min_refresh.is_some()),
                ("jwks_timeout", raw.jwks_timeout.is_some()),
                ("jwks_max_bytes", raw.jwks_max_bytes.is_some()),
            ] {
                if set {
                    return Err(OptionsError::at(key, "is only used with jwks_url"));
                }
            }
        }

        let algorithms = parse_algorithms(raw.algorithms.as_deref(), has_secret)?;
        // Exactly one source is set: neither a file nor a URL means a secret.
        let keys = match (raw.public_key_file, raw.jwks_url) {
            (Some(path), _) => KeySource::PublicKeyFile(path),
            (None, Some(url)) => KeySource::Jwks(jwks_options(
                url,
                raw.ca_file,
                raw.jwks_refresh,
                raw.jwks_min_refresh,
                raw.jwks_timeout,
                raw.jwks_max_bytes,
            )?),
            (None, None) => KeySource::Secret(
                SecretSource {
                    env: raw.secret_env,
                    file: raw.secret_file,
                    inline: raw.secret,
                }
                .load("secret")?,
            ),
        };

        let user_claim = raw.user_claim.unwrap_or_else(|| "sub".to_string());
        if user_claim.is_empty() {
            return Err(OptionsError::at("user_claim", "must not be empty"));
        }
        let leeway_secs = leeway(raw.leeway, raw.leeway_secs)?;
        if raw.issuer.as_deref() == Some("") {
            return Err(OptionsError::at("issuer", "must not be empty"));
        }
        if raw.audience.as_deref() == Some("") {
            return Err(OptionsError::at("audience", "must not be empty"));
        }

        Ok(Self {
            keys,
            algorithms,
            user_claim,
            leeway_secs,
            issuer: raw.issuer,
            audience: raw.audience,
        })
    }
}

/// Parses `algorithms`. With a secret only HS* are allowed, and all three
/// are the default; with public keys the list is required and HS* are
/// refused, so that no public key can ever be taken as an HMAC secret.
fn parse_algorithms(
    names: Option<&[String]>,
    secret: bool,
) -> Result<Vec<Algorithm>, OptionsError> {
    let Some(names) = names else {
        return if secret {
            Ok(HMAC.to_vec())
        } else {
            Err(OptionsError::at(
                "algorithms",
                "is required with public_key_file or jwks_url: list the algorithms the \
                 issuer signs with, e.g. [\"RS256\"]",
            ))
        };
    };
    let mut algorithms = Vec::new();
    for name in names {
        let alg = ALGORITHMS
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, alg)| *alg)
            .ok_or_else(|| {
                OptionsError::at(
                    "algorithms",
                    format!(
                        "unsupported algorithm `{name}`: supported are HS256, HS384, HS512 \
                         (with a secret) and RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
                         ES384, EdDSA (with public keys)"
                    ),
                )
            })?;
        let hmac = HMAC.contains(&alg);
        if secret && !hmac {
            return Err(OptionsError::at(
                "algorithms",
                format!(
                    "`{name}` needs public keys (public_key_file or jwks_url): with a secret \
                     only HS256, HS384 and HS512 are allowed"
                ),
            ));
        }
        if !secret && hmac {
            return Err(OptionsError::at(
                "algorithms",
                format!(
                    "`{name}` is an HMAC algorithm, which needs a secret: with public keys \
                     it would let a public key be used as the HMAC secret"
                ),
            ));
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(OptionsError::at(
            "algorithms",
            "at least one algorithm is required",
        ));
    }
    Ok(algorithms)
}

/// `leeway` (a duration) or the deprecated `leeway_secs`, in whole seconds.
fn leeway(leeway: Option<Duration>, leeway_secs: Option<u64>) -> Result<u64, OptionsError> {
    let (key, value) = match (leeway, leeway_secs) {
        (Some(_), Some(_)) => {
            return Err(OptionsError::at(
                "leeway_secs",
                "is the deprecated form of leeway: set only leeway",
            ))
        }
        (Some(d), None) => ("leeway", d),
        (None, Some(secs)) => {
            tracing::warn!("jwt: leeway_secs is deprecated, use leeway = \"{secs}s\"");
            ("leeway_secs", Duration::from_secs(secs))
        }
        (None, None) => ("leeway", DEFAULT_LEEWAY),
    };
    if value > MAX_LEEWAY {
        return Err(OptionsError::at(
            key,
            if key == "leeway" {
                "must be at most 1 day".to_string()
            } else {
                format!("must be at most {}", MAX_LEEWAY.as_secs())
            },
        ));
    }
    if value.subsec_nanos() != 0 {
        return Err(OptionsError::at(key, "must be a whole number of seconds"));
    }
    Ok(value.as_secs())
}

/// Checks the JWKS options; nothing is fetched here.
fn jwks_options(
    url: String,
    ca_file: Option<PathBuf>,
    refresh: Option<Duration>,
    min_refresh: Option<Duration>,
    timeout: Option<Duration>,
    max_bytes: Option<usize>,
) -> Result<JwksOptions, OptionsError> {
    let uri = wsgate_http_client::check_url(&url, ca_file.is_some())
        .map_err(|e| OptionsError::at("jwks_url", e))?;
    let refresh = refresh.unwrap_or(DEFAULT_JWKS_REFRESH);
    if refresh < MIN_JWKS_REFRESH {
        return Err(OptionsError::at("jwks_refresh", "must be at least 1s"));
    }
    let min_refresh = min_refresh.unwrap_or(DEFAULT_JWKS_MIN_REFRESH.min(refresh));
    if min_refresh > refresh {
        return Err(OptionsError::at(
            "jwks_min_refresh",
            "must not be more than jwks_refresh",
        ));
    }
    let timeout = timeout.unwrap_or(DEFAULT_JWKS_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_JWKS_TIMEOUT {
        return Err(OptionsError::at(
            "jwks_timeout",
            "must be more than 0 and at most 60s (the first fetch holds up the config load)",
        ));
    }
    let max_bytes = max_bytes.unwrap_or(DEFAULT_JWKS_MAX_BYTES);
    if max_bytes == 0 {
        return Err(OptionsError::at("jwks_max_bytes", "must be at least 1"));
    }
    Ok(JwksOptions {
        url,
        uri,
        ca_file,
        refresh,
        min_refresh,
        timeout,
        max_bytes,
    })
}
