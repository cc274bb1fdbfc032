//! The authenticator's unit tests: HMAC (the original ones), public keys
//! from PEM files, and a JWKS from an in-test HTTP server.

use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;
use serde_json::Value;
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

fn auth_with(auth: &dyn Authenticator, authorization: Option<&str>) -> Result<Identity, Rejection> {
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
    let auth =
        build(&inline("issuer = \"https://idp\"\naudience = \"wsgate\"")).expect("valid options");
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

// ---------------------------------------------------------------------------
// Leeway (a duration since public keys came; 30 s by default).

#[test]
fn default_leeway_is_thirty_seconds() {
    let auth = build(&inline("")).expect("valid options");
    let just_expired = sign(&json!({ "sub": "alice", "exp": now() - 10 }));
    assert!(auth_token(&*auth, &just_expired).is_ok());
    let long_expired = sign(&json!({ "sub": "alice", "exp": now() - 60 }));
    assert_eq!(
        unauthorized_msg(auth_token(&*auth, &long_expired)),
        "token expired"
    );

    let strict = build(&inline("leeway = \"0s\"")).expect("valid options");
    assert_eq!(
        unauthorized_msg(auth_token(&*strict, &just_expired)),
        "token expired"
    );
    let lenient = build(&inline("leeway = \"2m\"")).expect("valid options");
    assert!(auth_token(&*lenient, &long_expired).is_ok());
    // The deprecated form still works.
    let old = build(&inline("leeway_secs = 0")).expect("valid options");
    assert!(auth_token(&*old, &just_expired).is_err());
}

#[test]
fn leeway_errors() {
    let err = build_err(&inline("leeway = \"30s\"\nleeway_secs = 30"));
    assert_eq!(err.path.as_deref(), Some("leeway_secs"));
    assert!(err.message.contains("deprecated"), "{}", err.message);
    assert_eq!(
        build_err(&inline("leeway = \"25h\"")).path.as_deref(),
        Some("leeway")
    );
    assert!(build_err(&inline("leeway = \"1500ms\""))
        .message
        .contains("whole number"));
    assert_eq!(
        build_err(&inline("leeway = \"soon\"")).path.as_deref(),
        Some("leeway")
    );
}

// ---------------------------------------------------------------------------
// Public keys from a PEM file.

/// The test RSA key pairs (testdata/README.md: test-only, not secret).
fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn read_testdata(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("test key")
}

fn toml_path(path: &std::path::Path) -> String {
    toml::Value::from(path.to_str().expect("UTF-8 path")).to_string()
}

/// Options with `public_key_file` set to `path`, plus `extra`.
fn pem_options(path: &std::path::Path, extra: &str) -> Table {
    table(&format!("public_key_file = {}\n{extra}", toml_path(path)))
}

fn sign_key(header: Header, key: &EncodingKey, claims: &Value) -> String {
    encode(&header, claims, key).expect("sign test token")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_testdata("rsa-private.pem")).expect("RSA key")
}

fn claims() -> Value {
    json!({ "sub": "alice", "exp": now() + 600 })
}

/// A generated EC or Ed25519 key pair: (signing key, public PEM, raw
/// public key).
fn generated(alg: &'static rcgen::SignatureAlgorithm) -> (EncodingKey, String, Vec<u8>) {
    let pair = rcgen::KeyPair::generate_for(alg).expect("generate key");
    let private = pair.serialize_pem();
    let signing = if std::ptr::eq(alg, &rcgen::PKCS_ED25519) {
        EncodingKey::from_ed_pem(private.as_bytes())
    } else {
        EncodingKey::from_ec_pem(private.as_bytes())
    }
    .expect("signing key");
    (
        signing,
        pair.public_key_pem(),
        pair.public_key_raw().to_vec(),
    )
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file.flush().expect("flush");
    file
}

/// base64url without padding (for hand-made tokens and JWKs).
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[test]
fn rsa_tokens_verify_with_a_pem_public_key() {
    for file in ["rsa-public.pem", "rsa-public-pkcs1.pem"] {
        let auth = build(&pem_options(
            &testdata(file),
            "algorithms = [\"RS256\", \"PS256\", \"RS512\"]",
        ))
        .expect("valid options");
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
            let token = sign_key(Header::new(alg), &rsa_key(), &claims());
            let identity = auth_token(&*auth, &token).expect("accepted");
            assert_eq!(identity.user.as_deref(), Some("alice"), "{file} {alg:?}");
        }
        // Another key's signature.
        let other = EncodingKey::from_rsa_pem(&read_testdata("rsa2-private.pem")).expect("key");
        let forged = sign_key(Header::new(Algorithm::RS256), &other, &claims());
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &forged)),
            "invalid token"
        );
    }
}

#[test]
fn ec_and_ed25519_tokens_verify_with_pem_public_keys() {
    for (key_alg, alg) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256),
        (&rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384),
        (&rcgen::PKCS_ED25519, Algorithm::EdDSA),
    ] {
        let (signing, public, _) = generated(key_alg);
        let file = write_temp(&public);
        let name = options::algorithm_name(alg);
        let auth = build(&pem_options(
            file.path(),
            &format!("algorithms = [\"{name}\"]"),
        ))
        .expect("valid options");
        let token = sign_key(Header::new(alg), &signing, &claims());
        let identity = auth_token(&*auth, &token).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("alice"), "{name}");

        let (stranger, _, _) = generated(key_alg);
        let forged = sign_key(Header::new(alg), &stranger, &claims());
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &forged)),
            "invalid token",
            "{name}"
        );
    }
}

#[test]
fn several_pem_blocks_in_one_file() {
    let (ec, ec_public, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa_public = String::from_utf8(read_testdata("rsa-public.pem")).expect("PEM");
    let rsa2_public = String::from_utf8(read_testdata("rsa2-public.pem")).expect("PEM");
    let file = write_temp(&format!(
        "the issuer's keys\n{rsa_public}\n{ec_public}comment\n{rsa2_public}"
    ));
    let auth = build(&pem_options(
        file.path(),
        "algorithms = [\"RS256\", \"ES256\"]",
    ))
    .expect("valid options");
    let rsa2 = EncodingKey::from_rsa_pem(&read_testdata("rsa2-private.pem")).expect("key");
    for (alg, key) in [
        (Algorithm::RS256, &rsa_key()),
        (Algorithm::RS256, &rsa2),
        (Algorithm::ES256, &ec),
    ] {
        // A kid is ignored: PEM keys have none.
        let mut header = Header::new(alg);
        header.kid = Some("whatever".to_string());
        assert!(auth_token(&*auth, &sign_key(header, key, &claims())).is_ok());
    }
}

#[test]
fn hmac_with_the_public_key_as_secret_is_refused() {
    // The classic confusion: HS256 "signed" with the RSA public key's PEM.
    let auth = build(&pem_options(
        &testdata("rsa-public.pem"),
        "algorithms = [\"RS256\"]",
    ))
    .expect("valid options");
    let public = read_testdata("rsa-public.pem");
    let confused = sign_key(
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(&public),
        &claims(),
    );
    assert_eq!(
        unauthorized_msg(auth_token(&*auth, &confused)),
        "invalid token"
    );
}

#[test]
fn alg_none_and_algorithms_not_listed_are_refused() {
    let auth = build(&pem_options(
        &testdata("rsa-public.pem"),
        "algorithms = [\"RS256\"]",
    ))
    .expect("valid options");
    let payload = b64(claims().to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let token = format!("{}.{payload}.", b64(header.as_bytes()));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "invalid token",
            "{header}"
        );
        let token = format!("{}.{payload}.c2ln", b64(header.as_bytes()));
        assert_eq!(
            unauthorized_msg(auth_token(&*auth, &token)),
            "invalid token"
        );
    }
    // A genuine PS256 signature, but only RS256 is configured.
    let ps256 = sign_key(Header::new(Algorithm::PS256), &rsa_key(), &claims());
    assert_eq!(
        unauthorized_msg(auth_token(&*auth, &ps256)),
        "invalid token"
    );
    // The secret instance refuses none too.
    let hmac = build(&inline("")).expect("valid options");
    let token = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
    assert_eq!(
        unauthorized_msg(auth_token(&*hmac, &token)),
        "invalid token"
    );
}

#[test]
fn ec_curves_are_not_mixed() {
    // A P-384 key never verifies ES256, even if its signature would.
    let (p384, public, _) = generated(&rcgen::PKCS_ECDSA_P384_SHA384);
    let file = write_temp(&public);
    let err = build_err(&pem_options(file.path(), "algorithms = [\"ES256\"]"));
    assert_eq!(err.path.as_deref(), Some("public_key_file"));
    assert!(err.message.contains("EC P-384"), "{}", err.message);

    let auth = build(&pem_options(
        file.path(),
        "algorithms = [\"ES256\", \"ES384\"]",
    ))
    .expect("valid options");
    assert!(auth_token(
        &*auth,
        &sign_key(Header::new(Algorithm::ES384), &p384, &claims())
    )
    .is_ok());
    let (p256, _, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let es256 = sign_key(Header::new(Algorithm::ES256), &p256, &claims());
    assert_eq!(unauthorized_msg(auth_token(&*auth, &es256)), UNKNOWN_KEY);
}

#[test]
fn public_key_config_errors() {
    let rsa = testdata("rsa-public.pem");

    // HS* with public keys, and no algorithms at all.
    let err = build_err(&pem_options(&rsa, "algorithms = [\"RS256\", \"HS256\"]"));
    assert_eq!(err.path.as_deref(), Some("algorithms"));
    assert!(err.message.contains("HS256"), "{}", err.message);
    let err = build_err(&pem_options(&rsa, ""));
    assert_eq!(err.path.as_deref(), Some("algorithms"));
    assert!(err.message.contains("required"), "{}", err.message);
    let err = build_err(&table("jwks_url = \"http://127.0.0.1:9/jwks\""));
    assert_eq!(err.path.as_deref(), Some("algorithms"));

    // Two key sources.
    for extra in [
        format!("public_key_file = {}", toml_path(&rsa)),
        "jwks_url = \"http://127.0.0.1:9/jwks\"".to_string(),
    ] {
        let err = build_err(&inline(&format!("{extra}\nalgorithms = [\"RS256\"]")));
        assert!(err.message.contains("exclusive"), "{}", err.message);
        assert!(!format!("{err:?}").contains(SECRET));
    }
    let err = build_err(&pem_options(
        &rsa,
        "jwks_url = \"http://127.0.0.1:9/jwks\"\nalgorithms = [\"RS256\"]",
    ));
    assert!(err.message.contains("exclusive"), "{}", err.message);

    // An https:// JWKS needs ca_file; JWKS options need jwks_url.
    let err = build_err(&table(
        "jwks_url = \"https://idp.example/jwks\"\nalgorithms = [\"RS256\"]",
    ));
    assert_eq!(err.path.as_deref(), Some("jwks_url"));
    assert!(err.message.contains("ca_file"), "{}", err.message);
    for key in [
        "ca_file = \"/x\"",
        "jwks_refresh = \"1m\"",
        "jwks_timeout = \"1s\"",
        "jwks_min_refresh = \"1s\"",
        "jwks_max_bytes = 10",
    ] {
        let err = build_err(&pem_options(
            &rsa,
            &format!("algorithms = [\"RS256\"]\n{key}"),
        ));
        assert!(
            err.message.contains("only used with jwks_url"),
            "{key}: {err:?}"
        );
    }
    for (extra, at) in [
        ("jwks_refresh = \"100ms\"", "jwks_refresh"),
        (
            "jwks_refresh = \"1m\"\njwks_min_refresh = \"2m\"",
            "jwks_min_refresh",
        ),
        ("jwks_timeout = \"0s\"", "jwks_timeout"),
        ("jwks_timeout = \"2m\"", "jwks_timeout"),
        ("jwks_max_bytes = 0", "jwks_max_bytes"),
        ("jwks_refresh = \"often\"", "jwks_refresh"),
    ] {
        let err = build_err(&table(&format!(
            "jwks_url = \"http://127.0.0.1:9/jwks\"\nalgorithms = [\"RS256\"]\n{extra}"
        )));
        assert_eq!(err.path.as_deref(), Some(at), "{extra}: {err:?}");
    }

    // Keys the file cannot give.
    let private = build_err(&pem_options(
        &testdata("rsa-private.pem"),
        "algorithms = [\"RS256\"]",
    ));
    assert_eq!(private.path.as_deref(), Some("public_key_file"));
    assert!(
        private.message.contains("private key"),
        "{}",
        private.message
    );
    assert!(!private.message.contains("MII"), "{}", private.message);
    let err = build_err(&pem_options(&rsa, "algorithms = [\"ES256\"]"));
    assert!(err.message.contains("RSA key"), "{}", err.message);
    let empty = write_temp("no keys here\n");
    assert!(
        build_err(&pem_options(empty.path(), "algorithms = [\"RS256\"]"))
            .message
            .contains("no PEM block")
    );
    let broken = write_temp("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    assert!(
        build_err(&pem_options(broken.path(), "algorithms = [\"RS256\"]"))
            .message
            .contains("not a supported public key")
    );
    let cut = write_temp("-----BEGIN PUBLIC KEY-----\nAAAA\n");
    assert!(
        build_err(&pem_options(cut.path(), "algorithms = [\"RS256\"]"))
            .message
            .contains("-----END")
    );
    let absent = build_err(&pem_options(
        &testdata("absent.pem"),
        "algorithms = [\"RS256\"]",
    ));
    assert!(absent.message.contains("cannot read"), "{}", absent.message);
}

#[test]
fn debug_shows_public_keys_but_not_their_bytes() {
    let auth = JwtAuth::from_options(&pem_options(
        &testdata("rsa-public.pem"),
        "algorithms = [\"RS256\"]",
    ))
    .expect("valid");
    let debug = format!("{auth:?}");
    assert!(debug.contains("RSA") && debug.contains("RS256"), "{debug}");
    assert!(!debug.contains("MII"), "{debug}");
}

// ---------------------------------------------------------------------------
// A JWKS from an in-test HTTP server.

/// What the in-test JWKS server answers.
#[derive(Clone)]
enum Answer {
    Json(String),
    Status(u16),
}

/// A tiny HTTP/1.1 server on its own thread and runtime (so that `build`,
/// which blocks while it fetches, can run anywhere): it answers every
/// request with the current [`Answer`] and counts them.
struct JwksServer {
    url: String,
    answer: Arc<std::sync::Mutex<Answer>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start(answer: Answer) -> JwksServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let answer = Arc::new(std::sync::Mutex::new(answer));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, r) = (Arc::clone(&answer), Arc::clone(&requests));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((mut socket, _)) = listener.accept().await {
                    let (a, r) = (Arc::clone(&a), Arc::clone(&r));
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let answer = a.lock().expect("answer").clone();
                        let (status, body) = match answer {
                            Answer::Json(body) => (200, body),
                            Answer::Status(status) => (status, String::new()),
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                }
            });
        });
        JwksServer {
            url,
            answer,
            requests,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The test RSA public key as a JWK, with `extra` members (e.g. a kid).
fn rsa_jwk(file: &str, extra: Value) -> Value {
    let mut jwk: Value = serde_json::from_slice(&read_testdata(file)).expect("JWK test data");
    if let (Some(jwk), Value::Object(extra)) = (jwk.as_object_mut(), extra) {
        jwk.extend(extra);
    }
    jwk
}

/// A generated EC P-256 key as a JWK.
fn ec_jwk(raw: &[u8], kid: &str) -> Value {
    json!({ "kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]), "kid": kid })
}

fn jwks(keys: &[Value]) -> Answer {
    Answer::Json(json!({ "keys": keys }).to_string())
}

fn jwks_options(server: &JwksServer, extra: &str) -> Table {
    table(&format!(
        "jwks_url = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n{extra}",
        server.url
    ))
}

fn with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    header
}

async fn auth_async(auth: &dyn Authenticator, token: &str) -> Result<Identity, Rejection> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    let request = UpgradeRequest {
        path: "/ws",
        query: None,
        headers: &headers,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        secure: false,
        conn_id: None,
    };
    auth.authenticate(&request).await
}

async fn user_of(auth: &dyn Authenticator, token: &str) -> String {
    let identity = auth_async(auth, token).await.expect("accepted");
    identity.user.as_deref().unwrap_or("").to_string()
}

async fn refused_with(auth: &dyn Authenticator, token: &str) -> String {
    unauthorized_msg(auth_async(auth, token).await)
}

#[tokio::test]
async fn jwks_keys_by_kid_and_without() {
    let (ec, _, raw) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let server = JwksServer::start(jwks(&[
        rsa_jwk(
            "rsa-public.jwk.json",
            json!({ "kid": "r1", "alg": "RS256", "use": "sig" }),
        ),
        ec_jwk(&raw, "e1"),
        // Skipped: an encryption key, a symmetric one, an unknown kind.
        rsa_jwk(
            "rsa2-public.jwk.json",
            json!({ "kid": "enc", "use": "enc" }),
        ),
        json!({ "kty": "oct", "k": b64(b"secret"), "kid": "oct" }),
        json!({ "kty": "XYZ", "kid": "odd" }),
    ]));
    let auth = build(&jwks_options(&server, "")).expect("valid options");
    assert_eq!(server.requests(), 1);

    let rs = sign_key(with_kid(Algorithm::RS256, "r1"), &rsa_key(), &claims());
    assert_eq!(user_of(&*auth, &rs).await, "alice");
    let es = sign_key(with_kid(Algorithm::ES256, "e1"), &ec, &claims());
    assert_eq!(user_of(&*auth, &es).await, "alice");
    let no_kid = sign_key(Header::new(Algorithm::ES256), &ec, &claims());
    assert_eq!(user_of(&*auth, &no_kid).await, "alice");

    // The kid of a key of another kind.
    let wrong = sign_key(with_kid(Algorithm::ES256, "r1"), &ec, &claims());
    assert_eq!(refused_with(&*auth, &wrong).await, "invalid token");
    // The encryption key is not a signature key.
    let rsa2 = EncodingKey::from_rsa_pem(&read_testdata("rsa2-private.pem")).expect("key");
    let enc = sign_key(with_kid(Algorithm::RS256, "enc"), &rsa2, &claims());
    assert_eq!(refused_with(&*auth, &enc).await, UNKNOWN_KEY);
    // A JWK with alg RS256 does not verify PS256 (but the kid is known).
    let auth_ps = build(&table(&format!(
        "jwks_url = \"{}\"\nalgorithms = [\"RS256\", \"PS256\"]",
        server.url
    )))
    .expect("valid options");
    let ps = sign_key(with_kid(Algorithm::PS256, "r1"), &rsa_key(), &claims());
    assert_eq!(refused_with(&*auth_ps, &ps).await, "invalid token");
}

#[tokio::test]
async fn jwks_rotation_unknown_kid_and_removed_kid() {
    let server = JwksServer::start(jwks(&[rsa_jwk(
        "rsa-public.jwk.json",
        json!({ "kid": "old" }),
    )]));
    let auth = build(&jwks_options(
        &server,
        "jwks_refresh = \"1s\"\njwks_min_refresh = \"200ms\"",
    ))
    .expect("valid options");
    let old = sign_key(with_kid(Algorithm::RS256, "old"), &rsa_key(), &claims());
    assert_eq!(user_of(&*auth, &old).await, "alice");

    // A new key: an unknown kid makes it fetch at once (once the least
    // interval is over).
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.set(jwks(&[
        rsa_jwk("rsa-public.jwk.json", json!({ "kid": "old" })),
        rsa_jwk("rsa2-public.jwk.json", json!({ "kid": "new" })),
    ]));
    let rsa2 = EncodingKey::from_rsa_pem(&read_testdata("rsa2-private.pem")).expect("key");
    let new = sign_key(with_kid(Algorithm::RS256, "new"), &rsa2, &claims());
    let before = server.requests();
    assert_eq!(user_of(&*auth, &new).await, "alice");
    assert_eq!(server.requests(), before + 1);

    // Made-up kids right after do not fetch again.
    let made_up = sign_key(with_kid(Algorithm::RS256, "nope"), &rsa_key(), &claims());
    assert_eq!(refused_with(&*auth, &made_up).await, UNKNOWN_KEY);
    assert_eq!(refused_with(&*auth, &made_up).await, UNKNOWN_KEY);
    assert_eq!(server.requests(), before + 1);

    // The old key goes; the periodic refresh (every 1s) notices.
    server.set(jwks(&[rsa_jwk(
        "rsa2-public.jwk.json",
        json!({ "kid": "new" }),
    )]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match auth_async(&*auth, &old).await {
            Err(Rejection::Unauthorized(m)) if m == UNKNOWN_KEY => break,
            Ok(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "the old kid is still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(user_of(&*auth, &new).await, "alice");

    // The server fails: the last good set is kept.
    server.set(Answer::Status(503));
    let failed = server.requests();
    while server.requests() < failed + 2 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no refresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(user_of(&*auth, &new).await, "alice");
    // So is a document that is no use.
    server.set(Answer::Json("{\"keys\": []}".to_string()));
    // Two fetches of it: the first was taken (or refused) before the second.
    let useless = server.requests();
    while server.requests() < useless + 2 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "no refresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(user_of(&*auth, &new).await, "alice");
}

#[test]
fn jwks_load_errors_say_why() {
    // Unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let err = build_err(&table(&format!(
        "jwks_url = \"http://{addr}/jwks\"\nalgorithms = [\"RS256\"]"
    )));
    assert_eq!(err.path.as_deref(), Some("jwks_url"));
    assert!(err.message.contains("unreachable"), "{}", err.message);

    for (answer, why) in [
        (Answer::Status(404), "404"),
        (Answer::Json("{not json".to_string()), "invalid JSON"),
        (Answer::Json("{\"k\": 1}".to_string()), "not a JWK set"),
        (
            jwks(&[json!({ "kty": "oct", "k": "c2VjcmV0" })]),
            "no usable key",
        ),
    ] {
        let server = JwksServer::start(answer);
        let err = build_err(&jwks_options(&server, ""));
        assert_eq!(err.path.as_deref(), Some("jwks_url"));
        assert!(err.message.contains(why), "{why}: {}", err.message);
    }
    // ES256 only, but the set has only an RSA key.
    let server = JwksServer::start(jwks(&[rsa_jwk("rsa-public.jwk.json", json!({}))]));
    let err = build_err(&table(&format!(
        "jwks_url = \"{}\"\nalgorithms = [\"ES256\"]",
        server.url
    )));
    assert!(err.message.contains("no usable key"), "{}", err.message);

    let server = JwksServer::start(jwks(&[rsa_jwk("rsa-public.jwk.json", json!({}))]));
    let err = build_err(&jwks_options(&server, "jwks_max_bytes = 10"));
    assert!(err.message.contains("over 10 bytes"), "{}", err.message);
}

#[test]
fn jwks_cache_serves_reloads() {
    let server = JwksServer::start(jwks(&[rsa_jwk(
        "rsa-public.jwk.json",
        json!({ "kid": "k" }),
    )]));
    let first = build(&jwks_options(&server, "")).expect("valid options");
    assert_eq!(server.requests(), 1);
    // A reload within jwks_refresh: no fetch.
    let second = build(&jwks_options(&server, "")).expect("valid options");
    assert_eq!(server.requests(), 1);
    drop(first);
    // A reload after jwks_refresh that cannot fetch: the cached set.
    server.set(Answer::Status(500));
    let third = build(&jwks_options(
        &server,
        "jwks_refresh = \"1s\"\njwks_min_refresh = \"1s\"",
    ));
    // The cached set is younger than 1s, unless the machine is slow.
    assert!(third.is_ok());
    std::thread::sleep(Duration::from_millis(1100));
    let fourth = build(&jwks_options(
        &server,
        "jwks_refresh = \"1s\"\njwks_min_refresh = \"1s\"",
    ))
    .expect("the cached set");
    assert!(server.requests() >= 2);
    let token = sign_key(with_kid(Algorithm::RS256, "k"), &rsa_key(), &claims());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for auth in [&second, &fourth] {
        assert_eq!(runtime.block_on(user_of(&**auth, &token)), "alice");
    }
}
