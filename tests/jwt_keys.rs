//! The `jwt` authenticator with public keys, against the real daemon: a
//! JWKS served by an in-test HTTP server (RSA and EC keys, rotation, the
//! server going down), `wsgate check` on an unreachable `jwks_url`, and a
//! PEM public key (algorithm confusion, `iss` / `aud`).
//!
//! The RSA key pairs are the test-only ones of plugins/auth-jwt/testdata;
//! EC keys are generated here.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/auth-jwt/testdata")
        .join(name)
}

fn read_testdata(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("test key")
}

fn rsa_private(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_testdata(name)).expect("RSA key")
}

/// base64url without padding.
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

/// A test RSA public key as a JWK with this kid.
fn rsa_jwk(file: &str, kid: &str) -> Value {
    let mut jwk: Value = serde_json::from_slice(&read_testdata(file)).expect("JWK");
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk
}

/// A generated EC P-256 key: its signing key and its JWK with this kid.
fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("signing");
    let raw = pair.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
    });
    (signing, jwk)
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": get_current_timestamp() + 600 })
}

/// What the JWKS server answers.
#[derive(Clone)]
enum Answer {
    Keys(Vec<Value>),
    Status(u16),
}

/// An HTTP/1.1 JWKS server on 127.0.0.1:0, on a thread and runtime of its
/// own; it answers every request with the current [`Answer`] and counts
/// them.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(answer: Answer) -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
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
                        r.fetch_add(1, Ordering::SeqCst);
                        let answer = a.lock().expect("answer").clone();
                        let (status, body) = match answer {
                            Answer::Keys(keys) => (200, json!({ "keys": keys }).to_string()),
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
        self.requests.load(Ordering::SeqCst)
    }
}

/// A pub/sub route at `/ws` behind the jwt instance `j` with `options`.
fn jwt_config(options: &str) -> String {
    format!(
        "[auth.j]\nplugin = \"jwt\"\n{options}\n\n\
         [[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\nauth = \"j\"\n"
    )
}

/// Connects with this token; the welcome's user.
async fn user_of(d: &Daemon, token: &str) -> Value {
    let bearer = format!("Bearer {token}");
    let mut ws = d
        .try_connect("/ws", &[("Authorization", &bearer)])
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
    let welcome = recv_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    welcome["user"].clone()
}

async fn refusal(d: &Daemon, token: &str) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    d.refused("/ws", &[("Authorization", &bearer)]).await
}

const OK: &str = "wsgate_jwt_jwks_refreshes_total{result=\"ok\"}";
const ERROR: &str = "wsgate_jwt_jwks_refreshes_total{result=\"error\"}";
const KEYS: &str = "wsgate_jwt_jwks_keys";

#[tokio::test]
async fn jwks_keys_rotation_and_an_outage() {
    let (ec, ec_jwk) = ec_key("ec-1");
    let server = JwksServer::start(Answer::Keys(vec![
        rsa_jwk("rsa-public.jwk.json", "rsa-1"),
        ec_jwk.clone(),
    ]));
    let d = Daemon::start(&jwt_config(&format!(
        "jwks_url = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
         jwks_refresh = \"1s\"\njwks_min_refresh = \"200ms\"\n",
        server.url
    )))
    .await;
    // Every series exists from the start; the first fetch was at load.
    assert!(d.metric(OK).await >= 1.0);
    assert_eq!(d.metric(KEYS).await, 2.0);
    let metrics = d.http("GET", "/metrics", &[], "").await.body;
    assert!(metrics.contains(ERROR), "{metrics}");

    // A token of each key; the user is the claim's.
    let rsa_1 = rsa_private("rsa-private.pem");
    let rs = token(Algorithm::RS256, Some("rsa-1"), &rsa_1, &claims("carol"));
    assert_eq!(user_of(&d, &rs).await, "carol");
    let es = token(Algorithm::ES256, Some("ec-1"), &ec, &claims("dave"));
    assert_eq!(user_of(&d, &es).await, "dave");
    let es_no_kid = token(Algorithm::ES256, None, &ec, &claims("erin"));
    assert_eq!(user_of(&d, &es_no_kid).await, "erin");

    // Rotation: a new kid is fetched at once on its first token.
    let rsa_2 = rsa_private("rsa2-private.pem");
    let new = token(Algorithm::RS256, Some("rsa-2"), &rsa_2, &claims("frank"));
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.set(Answer::Keys(vec![
        rsa_jwk("rsa-public.jwk.json", "rsa-1"),
        rsa_jwk("rsa2-public.jwk.json", "rsa-2"),
        ec_jwk.clone(),
    ]));
    assert_eq!(user_of(&d, &new).await, "frank");
    d.wait_metric(KEYS, 3.0).await;

    // The old kid is removed: after a refresh it is refused.
    server.set(Answer::Keys(vec![
        rsa_jwk("rsa2-public.jwk.json", "rsa-2"),
        ec_jwk,
    ]));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let bearer = format!("Bearer {rs}");
        match d.try_connect("/ws", &[("Authorization", &bearer)]).await {
            Ok(_) => {}
            Err((status, body)) => {
                assert_eq!(status, 401, "{body}");
                assert!(body.contains("unknown signing key"), "{body}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the removed kid is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.wait_metric(KEYS, 2.0).await;

    // The JWKS server fails: the last good set is kept, the errors counted.
    server.set(Answer::Status(503));
    wait_metric_at_least(d.addr, ERROR, 1.0).await;
    assert_eq!(user_of(&d, &new).await, "frank");
    assert_eq!(user_of(&d, &es).await, "dave");
    assert_eq!(d.metric(KEYS).await, 2.0);
    d.wait_log(&["cannot refresh the JWKS", "503"]).await;

    // Made-up kids do not make the daemon hammer the server.
    let before = server.requests();
    for n in 0..20 {
        let kid = format!("made-up-{n}");
        let (status, body) = refusal(
            &d,
            &token(Algorithm::RS256, Some(&kid), &rsa_1, &claims("x")),
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    // The periodic refresh retries every second; unknown kids add at most
    // one fetch per 200 ms.
    assert!(
        server.requests() - before <= 12,
        "{} fetches",
        server.requests() - before
    );

    // No token in the logs.
    let logs = d.logs();
    for t in [&rs, &es, &new] {
        assert!(!logs.contains(t.as_str()), "token in logs:\n{logs}");
    }
}

#[test]
fn check_reports_an_unreachable_jwks_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wsgate.toml");
    std::fs::write(
        &path,
        jwt_config(&format!(
            "jwks_url = \"http://{addr}/jwks.json\"\nalgorithms = [\"RS256\"]\n\
             jwks_timeout = \"2s\"\n"
        )),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run wsgate check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("jwks_url"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");

    // A reachable one passes, and the effective config shows the options.
    let server = JwksServer::start(Answer::Keys(vec![rsa_jwk("rsa-public.jwk.json", "k")]));
    std::fs::write(
        &path,
        jwt_config(&format!(
            "jwks_url = \"{}\"\nalgorithms = [\"RS256\"]\njwks_refresh = \"10m\"\n",
            server.url
        )),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run wsgate check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&server.url), "{stdout}");
    assert!(stdout.contains("10m"), "{stdout}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn pem_key_refuses_alg_confusion_and_checks_iss_and_aud() {
    let public = testdata("rsa-public.pem");
    let d = Daemon::start(&jwt_config(&format!(
        "public_key_file = {}\nalgorithms = [\"RS256\"]\n\
         issuer = \"https://idp.test\"\naudience = \"wsgate\"\n",
        toml::Value::from(public.to_str().expect("UTF-8 path"))
    )))
    .await;
    let exp = get_current_timestamp() + 600;
    let good_claims =
        json!({ "sub": "gina", "exp": exp, "iss": "https://idp.test", "aud": "wsgate" });
    let rsa = rsa_private("rsa-private.pem");
    assert_eq!(
        user_of(&d, &token(Algorithm::RS256, None, &rsa, &good_claims)).await,
        "gina"
    );

    // HS256 with the public key's PEM as the HMAC secret.
    let confused = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&read_testdata("rsa-public.pem")),
        &good_claims,
    );
    let (status, body) = refusal(&d, &confused).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid token"), "{body}");

    // Genuine tokens for another issuer or audience.
    for claims in [
        json!({ "sub": "gina", "exp": exp, "iss": "https://evil.test", "aud": "wsgate" }),
        json!({ "sub": "gina", "exp": exp, "iss": "https://idp.test", "aud": "other" }),
        json!({ "sub": "gina", "exp": exp, "aud": "wsgate" }),
    ] {
        let (status, body) = refusal(&d, &token(Algorithm::RS256, None, &rsa, &claims)).await;
        assert_eq!(status, 403, "{claims}: {body}");
    }
    // Another key's signature.
    let forged = token(
        Algorithm::RS256,
        None,
        &rsa_private("rsa2-private.pem"),
        &good_claims,
    );
    let (status, _) = refusal(&d, &forged).await;
    assert_eq!(status, 401);
}
