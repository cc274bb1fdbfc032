//! The `jwt` authenticator: JSON Web Tokens signed with a shared secret
//! (HS256/384/512) or with public keys (RS256/384/512, PS256/384/512,
//! ES256/384, EdDSA) from a PEM file or a JWKS URL.
//!
//! The client presents the JWT as `Authorization: Bearer <jwt>` or, for
//! browsers (which cannot set headers on a WebSocket), as the `access_token`
//! query parameter. The token is accepted when its header's `alg` is one of
//! the configured `algorithms`, its signature verifies with a key of that
//! algorithm, its `exp` claim is present and not past, its `nbf` claim (if
//! any) is not in the future, and `iss` / `aud` match when configured. The
//! connection's user is the `user_claim` claim; the whole payload is passed
//! on as the identity's claims.
//!
//! # Options
//!
//! ```toml
//! [auth.jwt]
//! plugin = "jwt"
//! # The key source: exactly one of a secret (HS*), a public key file or a
//! # JWKS URL.
//! secret_env = "WSGATE_JWT_SECRET"   # an environment variable
//! # secret_file = "/etc/wsgate/jwt.key"  # a file; trailing newlines are cut
//! # secret = "..."                       # inline: discouraged
//! # public_key_file = "/etc/wsgate/issuer.pem"  # PEM public key(s)
//! # jwks_url = "https://auth.example.com/.well-known/jwks.json"
//! # ca_file = "/etc/ssl/certs/ca-certificates.crt"  # required for https://
//! # jwks_refresh = "5m"       # default 5m: how often the JWKS is fetched again
//! # jwks_min_refresh = "30s"  # default 30s (at most jwks_refresh)
//! # jwks_timeout = "5s"       # default 5s: one fetch, start to end (at most 60s)
//! # jwks_max_bytes = 1048576  # default 1 MiB: the longest JWKS taken
//! algorithms = ["HS256"]   # with a secret: default HS256, HS384 and HS512;
//!                          # with public keys: required, e.g. ["RS256"]
//! user_claim = "sub"       # default "sub"; a number is used as its decimal text
//! leeway = "30s"           # default 30s: clock skew allowed on exp / nbf (at most 1 day)
//! # leeway_secs = 30       # deprecated form of leeway (not both)
//! issuer = "https://auth.example.com"  # optional: then `iss` must match
//! audience = "wsgate"                  # optional: then `aud` must contain it
//! ```
//!
//! The secret is read when the config is loaded, so a missing variable or
//! file is a config error. It never appears in errors or `Debug` output.
//! When `audience` is not set, the `aud` claim is not checked.
//!
//! # Keys and algorithms
//!
//! With a secret only HS256/384/512 are allowed. With public keys
//! `algorithms` is required and HS* are refused, so that a public key can
//! never be taken as an HMAC secret ("algorithm confusion"); `none` is never
//! accepted. A token is only checked with keys that fit its algorithm: RSA
//! keys for RS* and PS*, EC P-256 for ES256, EC P-384 for ES384, Ed25519
//! for EdDSA, and a JWK's own `alg`, when it states one, must be the
//! token's.
//!
//! `public_key_file` holds one or more PEM blocks: `PUBLIC KEY` (RSA, EC
//! P-256 / P-384 or Ed25519) or `RSA PUBLIC KEY`. Its keys have no `kid`: a
//! token's `kid` is ignored and every key that fits is tried. Each key must
//! fit one of the `algorithms`.
//!
//! A JWKS is fetched when the config is loaded: a JWKS that cannot be
//! fetched (timeout, unreachable, an error status, not a JWK set, no
//! usable key) is a config error at `jwks_url`, unless an earlier fetch in
//! this process left a set to use. A token with a `kid` is checked with the
//! key of that `kid`; one without, with every key that fits. An unknown
//! `kid` makes wsgate fetch the JWKS again at once (at most once per
//! `jwks_min_refresh`); if the key is still unknown the token is refused
//! ("unknown signing key"). Keys with `use = "enc"` (or `key_ops` without
//! `verify`), symmetric (`oct`) keys and unsupported curves are skipped.
//! See the `jwks` module for when the set is fetched again and what a failure does.
//!
//! # Rejections
//!
//! Missing, malformed, badly signed, expired or not-yet-valid tokens,
//! tokens of an algorithm not configured, tokens whose key is unknown, and
//! tokens without a usable user claim, are refused with 401. A genuine
//! token whose `iss` or `aud` is missing or does not match is refused with
//! 403 ("token not valid for this service"). The texts are fixed: nothing
//! of the token or a key is echoed.
//!
//! # Metrics
//!
//! * `wsgate_jwt_jwks_refreshes_total{result="ok"|"error"}`: JWKS fetches
//!   (at config load, periodic, on an unknown `kid`).
//! * `wsgate_jwt_jwks_keys`: the signature keys in the last good JWKS of
//!   each `jwks_url` in use, summed.

use std::fmt;
use std::sync::Arc;

use wsgate_plugin_api::{
    AuthPlugin, Authenticator, BoxFuture, Identity, OptionsError, Rejection, Table, UpgradeRequest,
};

mod jwks;
mod keys;
mod metrics;
mod options;
mod verify;

use jwks::Jwks;
use keys::{KeySet, Lookup};
use options::{algorithm_name, KeySource, Options};
use verify::{invalid, unauthorized, Verifier, UNKNOWN_KEY};

/// The factory, registered as `jwt`.
pub struct Plugin;

impl AuthPlugin for Plugin {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError> {
        Ok(Arc::new(JwtAuth::from_options(options)?))
    }

    fn public_keys(&self) -> &'static [&'static str] {
        &[
            "secret_env",
            "secret_file",
            "public_key_file",
            "jwks_url",
            "ca_file",
            "jwks_refresh",
            "jwks_min_refresh",
            "jwks_timeout",
            "jwks_max_bytes",
            "algorithms",
            "user_claim",
            "leeway",
            "leeway_secs",
            "issuer",
            "audience",
        ]
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        metrics::METRICS.register(registry);
    }
}

/// Where an authenticator's keys are.
enum Keys {
    /// The secret's key, or the keys of a PEM file: they never change.
    Fixed { set: KeySet, secret: bool },
    /// A JWKS, fetched again now and then.
    Jwks(Arc<Jwks>),
}

/// Verifies JWTs. `Debug` never shows the secret.
pub struct JwtAuth {
    keys: Keys,
    verifier: Verifier,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("JwtAuth");
        match &self.keys {
            Keys::Fixed { secret: true, .. } => s.field("secret", &"<redacted>"),
            Keys::Fixed { set, .. } => s.field("public_keys", &set.keys()),
            Keys::Jwks(jwks) => s.field("jwks", jwks),
        };
        let algorithms: Vec<&str> = self
            .verifier
            .algorithms()
            .into_iter()
            .map(algorithm_name)
            .collect();
        s.field("algorithms", &algorithms)
            .field("user_claim", &self.verifier.user_claim())
            .field("leeway_secs", &self.verifier.leeway_secs())
            .field("issuer", &self.verifier.issuer())
            .field("audience", &self.verifier.audience())
            .finish()
    }
}

impl JwtAuth {
    fn from_options(options: &Table) -> Result<Self, OptionsError> {
        let options = Options::from_table(options)?;
        let verifier = Verifier::new(
            &options.algorithms,
            options.leeway_secs,
            options.issuer.as_deref(),
            options.audience.as_deref(),
            options.user_claim,
        );
        // The keys last: a JWKS is fetched only for an otherwise good table.
        let keys = match options.keys {
            KeySource::Secret(secret) => Keys::Fixed {
                set: KeySet::secret(secret.expose()),
                secret: true,
            },
            KeySource::PublicKeyFile(path) => {
                let set = KeySet::from_pem_file(&path)
                    .map_err(|e| OptionsError::at("public_key_file", e))?;
                for (n, key) in set.keys().iter().enumerate() {
                    if !options.algorithms.iter().any(|alg| key.fits(*alg)) {
                        return Err(OptionsError::at(
                            "public_key_file",
                            format!(
                                "{}: key {} is an {} key, which none of the algorithms can use",
                                path.display(),
                                n + 1,
                                key.kind.name()
                            ),
                        ));
                    }
                }
                Keys::Fixed { set, secret: false }
            }
            KeySource::Jwks(jwks) => Keys::Jwks(Jwks::load(jwks, &options.algorithms)?),
        };
        Ok(Self { keys, verifier })
    }

    async fn check(&self, request: &UpgradeRequest<'_>) -> Result<Identity, Rejection> {
        let token = request.bearer_token().ok_or_else(|| {
            unauthorized(
                "missing credentials: send `Authorization: Bearer <token>` or the \
                 `access_token` query parameter",
            )
        })?;
        let (header, validation) = self.verifier.header(&token)?;
        let alg = header.alg;
        match &self.keys {
            // These keys have no kid: every one that fits is tried.
            Keys::Fixed { set, .. } => match set.lookup(None, alg) {
                Lookup::Keys(keys) => self.verifier.verify(&token, &keys, validation),
                Lookup::Unknown | Lookup::Mismatch => Err(unauthorized(UNKNOWN_KEY)),
            },
            Keys::Jwks(jwks) => {
                jwks.start_refresher();
                jwks.refresh_if_stale().await;
                let kid = header.kid.as_deref();
                {
                    let set = jwks.current();
                    match set.lookup(kid, alg) {
                        Lookup::Keys(keys) => {
                            return self.verifier.verify(&token, &keys, validation)
                        }
                        Lookup::Mismatch => return Err(invalid()),
                        Lookup::Unknown => {}
                    }
                }
                // A key the set does not have: it may be new.
                jwks.refresh_for_unknown().await;
                let set = jwks.current();
                match set.lookup(kid, alg) {
                    Lookup::Keys(keys) => self.verifier.verify(&token, &keys, validation),
                    Lookup::Mismatch => Err(invalid()),
                    Lookup::Unknown => Err(unauthorized(UNKNOWN_KEY)),
                }
            }
        }
    }
}

impl Authenticator for JwtAuth {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>> {
        Box::pin(self.check(request))
    }
}

#[cfg(test)]
mod tests;
