//! The `jwt` authenticator: HMAC-signed JSON Web Tokens (HS256/384/512).
//!
//! The client presents the JWT as `Authorization: Bearer <jwt>` or, for
//! browsers (which cannot set headers on a WebSocket), as the `access_token`
//! query parameter. The token is accepted when its signature verifies with
//! the shared secret under one of the allowed algorithms, its `exp` claim is
//! present and not past, its `nbf` claim (if any) is not in the future, and
//! `iss` / `aud` match when configured. The connection's user is the
//! `user_claim` claim; the whole payload is passed on as the identity's
//! claims.
//!
//! # Options
//!
//! ```toml
//! [auth.jwt]
//! plugin = "jwt"
//! # The shared secret: exactly one of these three.
//! secret_env = "WSGATE_JWT_SECRET"   # an environment variable
//! # secret_file = "/etc/wsgate/jwt.key"  # a file; trailing newlines are cut
//! # secret = "..."                       # inline: discouraged
//! algorithms = ["HS256"]   # default: HS256, HS384 and HS512
//! user_claim = "sub"       # default "sub"; a number is used as its decimal text
//! leeway_secs = 0          # clock skew allowed on exp / nbf (at most 86400)
//! issuer = "https://auth.example.com"  # optional: then `iss` must match
//! audience = "wsgate"                  # optional: then `aud` must contain it
//! ```
//!
//! The secret is read when the config is loaded, so a missing variable or
//! file is a config error. It never appears in errors or `Debug` output.
//! When `audience` is not set, the `aud` claim is not checked.
//!
//! # Rejections
//!
//! Missing, malformed, badly signed, expired or not-yet-valid tokens, and
//! tokens without a usable user claim, are refused with 401. A genuine token
//! whose `iss` or `aud` is missing or does not match is refused with 403
//! ("token not valid for this service").

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use wsgate_plugin_api::secret::SecretSource;
use wsgate_plugin_api::{
    AuthPlugin, Authenticator, BoxFuture, Identity, OptionsError, Rejection, Table, UpgradeRequest,
};

/// The most clock skew `leeway_secs` may allow: one day.
const MAX_LEEWAY_SECS: u64 = 86_400;

/// The algorithms this plugin supports, by name; also the default list.
const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
];

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
            "algorithms",
            "user_claim",
            "leeway_secs",
            "issuer",
            "audience",
        ]
    }
}

/// The options of `[auth.<name>]` with `plugin = "jwt"`.
///
/// `secret` is taken as a raw TOML value: a typed field would make a wrong
/// type an error that quotes the value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret: Option<toml::Value>,
    algorithms: Option<Vec<String>>,
    user_claim: Option<String>,
    #[serde(default)]
    leeway_secs: u64,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Verifies HMAC-signed JWTs. `Debug` never shows the secret.
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("secret", &"<redacted>")
            .field("algorithms", &self.validation.algorithms)
            .field("user_claim", &self.user_claim)
            .field("leeway_secs", &self.validation.leeway)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish()
    }
}

impl JwtAuth {
    fn from_options(options: &Table) -> Result<Self, OptionsError> {
        let options: Options = OptionsError::parse(options)?;
        let secret = SecretSource {
            env: options.secret_env,
            file: options.secret_file,
            inline: options.secret,
        }
        .load("secret")?;
        let algorithms = parse_algorithms(options.algorithms.as_deref())?;

        let user_claim = options.user_claim.unwrap_or_else(|| "sub".to_string());
        if user_claim.is_empty() {
            return Err(OptionsError::at("user_claim", "must not be empty"));
        }
        if options.leeway_secs > MAX_LEEWAY_SECS {
            return Err(OptionsError::at(
                "leeway_secs",
                format!("must be at most {MAX_LEEWAY_SECS}"),
            ));
        }

        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = algorithms;
        validation.leeway = options.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = options.issuer {
            if issuer.is_empty() {
                return Err(OptionsError::at("issuer", "must not be empty"));
            }
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match options.audience {
            Some(audience) => {
                if audience.is_empty() {
                    return Err(OptionsError::at("audience", "must not be empty"));
                }
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is not ours to
            // judge (jsonwebtoken would otherwise refuse any token with one).
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        Ok(Self {
            key: DecodingKey::from_secret(secret.expose()),
            validation,
            user_claim,
        })
    }

    fn check(&self, request: &UpgradeRequest<'_>) -> Result<Identity, Rejection> {
        let token = request.bearer_token().ok_or_else(|| {
            unauthorized(
                "missing credentials: send `Authorization: Bearer <token>` or the \
                 `access_token` query parameter",
            )
        })?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(&token, &self.key, &self.validation)
            .map_err(|e| rejection(e.kind()))?;
        let claims = data.claims;

        // jsonwebtoken skips an `nbf` it cannot parse; a token that states a
        // start time we cannot read is not valid.
        if let Some(nbf) = claims.get("nbf") {
            if !is_numeric_date(nbf) {
                return Err(unauthorized("invalid token"));
            }
        }

        let claim = &self.user_claim;
        let user = match claims.get(claim) {
            None | Some(Value::Null) => {
                return Err(unauthorized(format!("token has no {claim} claim")))
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(unauthorized(format!("token has an empty {claim} claim")))
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(unauthorized(format!(
                    "token's {claim} claim is not a string or number"
                )))
            }
        };

        Ok(Identity {
            user: Some(Arc::from(user)),
            claims,
        })
    }
}

impl Authenticator for JwtAuth {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>> {
        Box::pin(std::future::ready(self.check(request)))
    }
}

fn unauthorized(message: impl Into<String>) -> Rejection {
    Rejection::Unauthorized(message.into())
}

/// Maps a jsonwebtoken error to what the client is told. Only fixed texts:
/// nothing of the token (or the library's error text) is echoed.
fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::ExpiredSignature => unauthorized("token expired"),
        ErrorKind::ImmatureSignature => unauthorized("token not yet valid"),
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
            Rejection::Forbidden("token not valid for this service".to_string())
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" | "aud" => Rejection::Forbidden("token not valid for this service".to_string()),
            // Only the claims we required ("exp") can get here.
            "exp" => unauthorized("token has no exp claim"),
            _ => unauthorized("invalid token"),
        },
        _ => unauthorized("invalid token"),
    }
}

/// Whether `value` is a JWT NumericDate as jsonwebtoken reads it: a
/// non-negative integer or finite number.
fn is_numeric_date(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0),
        _ => false,
    }
}

/// Parses `algorithms`, defaulting to all supported ones.
fn parse_algorithms(names: Option<&[String]>) -> Result<Vec<Algorithm>, OptionsError> {
    let Some(names) = names else {
        return Ok(ALGORITHMS.iter().map(|(_, alg)| *alg).collect());
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
                        "unsupported algorithm `{name}`: only HS256, HS384 and HS512 are supported"
                    ),
                )
            })?;
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Write;
    use std::net::IpAddr;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    use serde_json::json;
    use wsgate_plugin_api::HeaderMap;

    use super::*;

    const SECRET: &str = "test-secret-for-wsgate-jwt-0123456789";

    fn table(text: &str) -> Table {
        text.parse().expect("test TOML")
    }

    /// Options with the inline test secret plus `extra`.
    fn inline(extra: &str) -> Table {
        table(&format!("secret = \"{SECRET}\"\n{extra}"))
    }

    fn build(options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError> {
        Plugin.build(options)
    }

    fn build_err(options: &Table) -> OptionsError {
        match build(options) {
            Ok(_) => panic!("options were accepted"),
            Err(e) => e,
        }
    }

    fn sign_with(alg: Algorithm, secret: &str, claims: &Value) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign test token")
    }

    fn sign(claims: &Value) -> String {
        sign_with(Algorithm::HS256, SECRET, claims)
    }

    fn now() -> u64 {
        get_current_timestamp()
    }

    /// The authenticator's futures are ready at once; poll one to its end.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("authenticate did not complete at once"),
        }
    }

    fn auth_with(
        auth: &dyn Authenticator,
        authorization: Option<&str>,
    ) -> Result<Identity, Rejection> {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert("authorization", value.parse().expect("header value"));
        }
        let request = UpgradeRequest {
            path: "/ws",
            query: None,
            headers: &headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            conn_id: None,
        };
        block_on(auth.authenticate(&request))
    }

    fn auth_token(auth: &dyn Authenticator, token: &str) -> Result<Identity, Rejection> {
        auth_with(auth, Some(&format!("Bearer {token}")))
    }

    fn unauthorized_msg(result: Result<Identity, Rejection>) -> String {
        match result {
            Err(Rejection::Unauthorized(message)) => message,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    fn assert_forbidden(result: Result<Identity, Rejection>) {
        assert_eq!(
            result,
            Err(Rejection::Forbidden(
                "token not valid for this service".to_string()
            ))
        );
    }

    fn env_name(tag: &str) -> String {
        format!("WSGATE_AUTH_JWT_TEST_{tag}_{}", std::process::id())
    }

    #[test]
    fn valid_token_gives_user_and_claims() {
        let auth = build(&inline("")).expect("valid options");
        let exp = now() + 600;
        let token = sign(&json!({ "sub": "alice", "exp": exp, "role": "admin" }));
        let identity = auth_token(&*auth, &token).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("alice"));
        assert_eq!(identity.claims.get("role"), Some(&json!("admin")));
        assert_eq!(identity.claims.get("exp"), Some(&json!(exp)));
        assert_eq!(identity.claims.len(), 3);
    }

    #[test]
    fn token_in_query_parameter_is_accepted() {
        let auth = build(&inline("")).expect("valid options");
        let token = sign(&json!({ "sub": "alice", "exp": now() + 600 }));
        let headers = HeaderMap::new();
        let query = format!("access_token={token}");
        let request = UpgradeRequest {
            path: "/ws",
            query: Some(&query),
            headers: &headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            conn_id: None,
        };
        let identity = block_on(auth.authenticate(&request)).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("alice"));
    }

    #[test]
    fn numeric_and_custom_user_claims() {
        let auth = build(&inline("")).expect("valid options");
        let token = sign(&json!({ "sub": 42, "exp": now() + 600 }));
        let identity = auth_token(&*auth, &token).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("42"));

        let auth = build(&inline("user_claim = \"uid\"")).expect("valid options");
        let token = sign(&json!({ "sub": "ignored", "uid": "u-7", "exp": now() + 600 }));
        let identity = auth_token(&*auth, &token).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("u-7"));

        let token = sign(&json!({ "sub": "alice", "exp": now() + 600 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "token has no uid claim"
        );
    }

    #[test]
    fn missing_or_unusable_user_claim_is_refused() {
        let auth = build(&inline("")).expect("valid options");
        let token = sign(&json!({ "exp": now() + 600 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "token has no sub claim"
        );
        let token = sign(&json!({ "sub": "", "exp": now() + 600 }));
        assert!(unauthorized_msg(auth_token(&*auth, &token)).contains("empty sub"));
        // jsonwebtoken itself refuses a `sub` that is not a string.
        let token = sign(&json!({ "sub": ["a"], "exp": now() + 600 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "invalid token"
        );

        let auth = build(&inline("user_claim = \"uid\"")).expect("valid options");
        for uid in [json!(["a"]), json!({ "a": 1 }), json!(true)] {
            let token = sign(&json!({ "uid": uid, "exp": now() + 600 }));
            assert!(unauthorized_msg(auth_token(&*auth, &token)).contains("not a string"));
        }
        let token = sign(&json!({ "uid": null, "exp": now() + 600 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "token has no uid claim"
        );
    }

    #[test]
    fn bad_signature_and_garbage_are_invalid() {
        let auth = build(&inline("")).expect("valid options");
        let claims = json!({ "sub": "alice", "exp": now() + 600 });
        let forged = sign_with(Algorithm::HS256, "another-secret", &claims);
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &forged)),
            "invalid token"
        );

        // A valid token with its signature cut off or altered.
        let good = sign(&claims);
        let (unsigned, _) = good.rsplit_once('.').expect("three parts");
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &format!("{unsigned}."))),
            "invalid token"
        );
        for garbage in ["abc", "a.b.c", "..."] {
            assert_eq!(
                unauthorized_msg(auth_token(&*auth, garbage)),
                "invalid token"
            );
        }
        // A payload that is not a JSON object.
        let array = sign(&json!(["sub", "alice"]));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &array)),
            "invalid token"
        );
    }

    #[test]
    fn missing_credentials() {
        let auth = build(&inline("")).expect("valid options");
        assert!(unauthorized_msg(auth_with(&*auth, None)).starts_with("missing credentials"));
        assert!(
            unauthorized_msg(auth_with(&*auth, Some("Basic Zm9vOmJhcg==")))
                .starts_with("missing credentials")
        );
    }

    #[test]
    fn expiry_is_required_and_checked_with_leeway() {
        let auth = build(&inline("")).expect("valid options");
        let expired = sign(&json!({ "sub": "alice", "exp": now() - 120 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &expired)),
            "token expired"
        );

        let no_exp = sign(&json!({ "sub": "alice" }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &no_exp)),
            "token has no exp claim"
        );
        let text_exp = sign(&json!({ "sub": "alice", "exp": "tomorrow" }));
        assert!(auth_token(&*auth, &text_exp).is_err());

        let lenient = build(&inline("leeway_secs = 300")).expect("valid options");
        assert!(auth_token(&*lenient, &expired).is_ok());
    }

    #[test]
    fn not_before_is_checked_when_present() {
        let auth = build(&inline("")).expect("valid options");
        let future = sign(&json!({ "sub": "alice", "exp": now() + 600, "nbf": now() + 300 }));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &future)),
            "token not yet valid"
        );
        let past = sign(&json!({ "sub": "alice", "exp": now() + 600, "nbf": now() - 10 }));
        assert!(auth_token(&*auth, &past).is_ok());
        let text = sign(&json!({ "sub": "alice", "exp": now() + 600, "nbf": "soon" }));
        assert_eq!(unauthorized_msg(auth_token(&*auth, &text)), "invalid token");

        let lenient = build(&inline("leeway_secs = 600")).expect("valid options");
        assert!(auth_token(&*lenient, &future).is_ok());
    }

    #[test]
    fn algorithms_are_restricted() {
        let claims = json!({ "sub": "alice", "exp": now() + 600 });
        let hs384 = sign_with(Algorithm::HS384, SECRET, &claims);
        let hs512 = sign_with(Algorithm::HS512, SECRET, &claims);

        let default = build(&inline("")).expect("valid options");
        assert!(auth_token(&*default, &hs384).is_ok());
        assert!(auth_token(&*default, &hs512).is_ok());

        let only256 = build(&inline("algorithms = [\"HS256\"]")).expect("valid options");
        assert!(auth_token(&*only256, &sign(&claims)).is_ok());
        assert_eq!(
            unauthorized_msg(auth_token(&*only256, &hs512)),
            "invalid token"
        );

        let only512 = build(&inline("algorithms = [\"HS512\", \"HS512\"]")).expect("valid");
        assert!(auth_token(&*only512, &hs512).is_ok());
        assert!(auth_token(&*only512, &hs384).is_err());
    }

    #[test]
    fn issuer_and_audience_are_required_when_set() {
        let auth = build(&inline("issuer = \"https://idp\"\naudience = \"wsgate\""))
            .expect("valid options");
        let exp = now() + 600;
        let good = sign(&json!({ "sub": "a", "exp": exp, "iss": "https://idp", "aud": "wsgate" }));
        assert!(auth_token(&*auth, &good).is_ok());
        let many_aud = sign(&json!({
            "sub": "a", "exp": exp, "iss": "https://idp", "aud": ["other", "wsgate"]
        }));
        assert!(auth_token(&*auth, &many_aud).is_ok());

        for claims in [
            json!({ "sub": "a", "exp": exp, "iss": "https://evil", "aud": "wsgate" }),
            json!({ "sub": "a", "exp": exp, "iss": "https://idp", "aud": "other" }),
            json!({ "sub": "a", "exp": exp, "aud": "wsgate" }),
            json!({ "sub": "a", "exp": exp, "iss": "https://idp" }),
        ] {
            assert_forbidden(auth_token(&*auth, &sign(&claims)));
        }
    }

    #[test]
    fn audience_is_ignored_when_not_configured() {
        let auth = build(&inline("")).expect("valid options");
        let token = sign(&json!({ "sub": "a", "exp": now() + 600, "aud": "anyone", "iss": "x" }));
        assert!(auth_token(&*auth, &token).is_ok());
    }

    #[test]
    fn secret_from_file_is_trimmed() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        write!(file, "{SECRET}\r\n\n").expect("write secret");
        file.flush().expect("flush");
        let mut options = Table::new();
        options.insert(
            "secret_file".to_string(),
            file.path().to_str().expect("UTF-8 path").into(),
        );
        let auth = build(&options).expect("valid options");
        let token = sign(&json!({ "sub": "alice", "exp": now() + 600 }));
        assert!(auth_token(&*auth, &token).is_ok());
    }

    #[test]
    fn secret_file_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let absent = dir.path().join("absent");
        let mut options = Table::new();
        options.insert(
            "secret_file".to_string(),
            absent.to_str().expect("UTF-8 path").into(),
        );
        let err = build_err(&options);
        assert_eq!(err.path.as_deref(), Some("secret_file"));
        assert!(err.message.contains("cannot read"), "{}", err.message);

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        options.insert(
            "secret_file".to_string(),
            empty.to_str().expect("UTF-8 path").into(),
        );
        let err = build_err(&options);
        assert!(err.message.contains("is empty"), "{}", err.message);
    }

    #[test]
    fn secret_from_env() {
        let var = env_name("OK");
        std::env::set_var(&var, SECRET);
        let auth = build(&table(&format!("secret_env = \"{var}\""))).expect("valid options");
        let token = sign(&json!({ "sub": "alice", "exp": now() + 600 }));
        assert!(auth_token(&*auth, &token).is_ok());
        std::env::remove_var(&var);
    }

    #[test]
    fn secret_env_errors_name_the_variable() {
        let var = env_name("MISSING");
        std::env::remove_var(&var);
        let err = build_err(&table(&format!("secret_env = \"{var}\"")));
        assert_eq!(err.path.as_deref(), Some("secret_env"));
        assert!(err.message.contains(&var), "{}", err.message);
        assert!(err.message.contains("not set"), "{}", err.message);

        let var = env_name("EMPTY");
        std::env::set_var(&var, "");
        let err = build_err(&table(&format!("secret_env = \"{var}\"")));
        assert!(err.message.contains("empty"), "{}", err.message);
        std::env::remove_var(&var);

        let err = build_err(&table("secret_env = \"\""));
        assert_eq!(err.path.as_deref(), Some("secret_env"));
    }

    #[test]
    fn exactly_one_secret_source() {
        let err = build_err(&Table::new());
        assert!(
            err.message.contains("secret is required"),
            "{}",
            err.message
        );

        let var = env_name("TWO");
        std::env::set_var(&var, SECRET);
        let err = build_err(&inline(&format!("secret_env = \"{var}\"")));
        assert!(err.message.contains("exclusive"), "{}", err.message);
        assert!(!format!("{err:?}").contains(SECRET));
        std::env::remove_var(&var);
    }

    #[test]
    fn bad_options_are_refused() {
        let err = build_err(&inline("user_clam = \"sub\""));
        assert!(err.message.contains("user_clam"), "{}", err.message);
        assert!(!err.message.contains(SECRET));

        let err = build_err(&inline("algorithms = [\"RS256\"]"));
        assert_eq!(err.path.as_deref(), Some("algorithms"));
        assert!(err.message.contains("RS256"), "{}", err.message);
        assert!(build_err(&inline("algorithms = [\"hs256\"]"))
            .message
            .contains("hs256"));
        assert!(build_err(&inline("algorithms = []"))
            .message
            .contains("at least one"));

        assert_eq!(
            build_err(&inline("leeway_secs = 86401")).path.as_deref(),
            Some("leeway_secs")
        );
        assert_eq!(
            build_err(&inline("leeway_secs = -1")).path.as_deref(),
            Some("leeway_secs")
        );
        assert_eq!(
            build_err(&inline("user_claim = \"\"")).path.as_deref(),
            Some("user_claim")
        );
        assert_eq!(
            build_err(&inline("issuer = \"\"")).path.as_deref(),
            Some("issuer")
        );
        assert_eq!(
            build_err(&inline("audience = \"\"")).path.as_deref(),
            Some("audience")
        );
        assert_eq!(
            build_err(&table("secret = \"\"")).path.as_deref(),
            Some("secret")
        );
    }

    #[test]
    fn wrongly_typed_secret_is_not_echoed() {
        let err = build_err(&table("secret = 918273645"));
        assert_eq!(err.path.as_deref(), Some("secret"));
        assert!(!format!("{err:?}").contains("918273645"), "{err:?}");
        let err = build_err(&table(&format!("secret = [\"{SECRET}\"]")));
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let auth = JwtAuth::from_options(&inline("issuer = \"https://idp\"")).expect("valid");
        let debug = format!("{auth:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains("https://idp"),
            "{debug}"
        );
    }
}
