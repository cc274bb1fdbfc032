//! TLS listeners against real TLS clients trusting a test CA made here:
//! wss echo and pub/sub, certificates replaced on disk (and a broken
//! replacement refused), several certificates chosen by server name, plain
//! HTTP on the TLS port, a stalled handshake, certificate expiry in
//! /metrics and in `wsgate check`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{http_to, metric_at, wait_metric_at_least, Daemon, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const KEY: &str = "tls-test-key";

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsgate test CA");
        let cert = params.self_signed(&key).expect("CA cert");
        Ca { cert, key }
    }

    /// A certificate for `names` with this serial, valid until
    /// `not_after` (y, m, d), written as `<stem>.crt` and `<stem>.key` in
    /// `dir` (each file replaced by a rename, as certbot does).
    fn issue_until(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        serial: u64,
        not_after: (i32, u8, u8),
    ) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        replace(&dir.join(format!("{stem}.crt")), &cert.pem());
        replace(&dir.join(format!("{stem}.key")), &key.serialize_pem());
    }

    fn issue(&self, dir: &Path, stem: &str, names: &[&str], serial: u64) {
        self.issue_until(dir, stem, names, serial, (2099, 1, 1));
    }

    /// A client config that trusts this CA only.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A daemon with a TLS listener serving a certificate for `localhost`
/// (`<certs>/site.crt`, `site.key`) made by a CA of its own.
struct Site {
    ca: Ca,
    certs: tempfile::TempDir,
    daemon: Daemon,
    public: SocketAddr,
    internal: SocketAddr,
}

impl Site {
    async fn start(serial: u64) -> Site {
        let ca = Ca::new();
        let certs = tempfile::tempdir().expect("tempdir");
        ca.issue(certs.path(), "site", &["localhost"], serial);
        let daemon = Daemon::start(&config(certs.path(), &one_cert(certs.path(), "site"))).await;
        let public = daemon.listener("public").await;
        let internal = daemon.listener("internal").await;
        Site {
            ca,
            certs,
            daemon,
            public,
            internal,
        }
    }
}

/// One TLS listener for everything but the API and metrics, and a plain
/// internal one for those.
fn config(dir: &Path, tls: &str) -> String {
    let _ = dir;
    format!(
        r#"
[server]
handshake_timeout = "1s"

[api]
keys = ["{KEY}"]

[[server.listeners]]
name = "public"
address = "127.0.0.1:0"
serve = ["ws", "health"]
tls = {tls}

[[server.listeners]]
name = "internal"
address = "127.0.0.1:0"
serve = ["metrics", "api"]
"#
    )
}

fn one_cert(dir: &Path, stem: &str) -> String {
    format!(
        r#"{{ cert_file = "{0}/{stem}.crt", key_file = "{0}/{stem}.key" }}"#,
        dir.display()
    )
}

/// A TLS connection to `addr` with this server name.
async fn tls_connect(
    client: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("server name");
    tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
}

/// The serial number of the certificate a TLS connection was shown.
fn serial(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    use x509_cert::der::Decode;
    let certs = tls.get_ref().1.peer_certificates().expect("a certificate");
    let cert = x509_cert::Certificate::from_der(certs[0].as_ref()).expect("parse");
    let bytes = cert.tbs_certificate.serial_number.as_bytes().to_vec();
    // DER may put a 0 in front of a serial whose top bit is set.
    bytes.into_iter().skip_while(|b| *b == 0).collect()
}

fn serial_of(n: u64) -> Vec<u8> {
    n.to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect()
}

async fn wss(
    client: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> (Wss, Vec<u8>) {
    let tls = tls_connect(client, addr, name)
        .await
        .expect("TLS handshake");
    let shown = serial(&tls);
    let url = format!("wss://{name}:{}{path}", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("upgrade");
    (ws, shown)
}

async fn echo(ws: &mut Wss, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(got, Message::text(text));
}

#[tokio::test]
async fn wss_echo_and_pubsub_work_and_a_renewed_certificate_serves_new_handshakes() {
    let Site {
        ca,
        certs,
        daemon: d,
        public,
        internal,
    } = Site::start(1001).await;
    let client = ca.client();

    let (mut old, shown) = wss(client.clone(), public, "localhost", "/ws/echo").await;
    assert_eq!(shown, serial_of(1001));
    echo(&mut old, "over tls").await;

    let (mut sub, _) = wss(client.clone(), public, "localhost", "/ws?topics=news").await;
    let body = r#"{"topic":"news","data":{"tls":true}}"#;
    let auth = format!("Bearer {KEY}");
    let resp = http_to(
        internal,
        "POST",
        "/api/publish",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let msg = recv_type_tls(&mut sub, "message").await;
    assert_eq!(msg["data"]["tls"], true);

    // Renewed in place (as certbot does): new handshakes get the new
    // certificate, the open connection goes on.
    ca.issue(certs.path(), "site", &["localhost"], 1002);
    wait_metric_at_least(internal, r#"wsgate_config_reloads_total{result="ok"}"#, 1.0).await;
    let (mut new, shown) = wss(client.clone(), public, "localhost", "/ws/echo").await;
    assert_eq!(shown, serial_of(1002));
    echo(&mut new, "new certificate").await;
    echo(&mut old, "still here").await;

    // A broken replacement (a key of another certificate): refused, and
    // the last good certificate goes on serving.
    let other = tempfile::tempdir().expect("tempdir");
    ca.issue(other.path(), "other", &["localhost"], 1003);
    let wrong_key = std::fs::read_to_string(other.path().join("other.key")).expect("key");
    // (A renewal that replaced the two files one after the other may
    // have had a reload refused between them already.)
    let errors = r#"wsgate_config_reloads_total{result="error"}"#;
    let before = metric_at(internal, errors).await;
    replace(&certs.path().join("site.key"), &wrong_key);
    wait_metric_at_least(internal, errors, before + 1.0).await;
    let status = d.admin(serde_json::json!({"cmd": "stats"})).await;
    let error = status["last_reload"]["error"].to_string();
    assert!(
        error.contains("site.key") && error.contains("does not match"),
        "{status}"
    );
    assert!(!error.contains("PRIVATE KEY"), "no key material: {error}");
    let (mut after, shown) = wss(client, public, "localhost", "/ws/echo").await;
    assert_eq!(shown, serial_of(1002));
    echo(&mut after, "old pair kept").await;
    echo(&mut old, "untouched").await;

    let expiry = metric_at(
        internal,
        r#"wsgate_tls_certificate_expiry_seconds{listener="public",name="localhost"}"#,
    )
    .await;
    // 2099-01-01T00:00:00Z
    assert_eq!(expiry, 4_070_908_800.0);
}

/// `recv_type` for a wss connection.
async fn recv_type_tls(ws: &mut Wss, kind: &str) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("not an error");
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn the_server_name_chooses_the_certificate_and_an_unknown_one_gets_the_first() {
    let ca = Ca::new();
    let certs = tempfile::tempdir().expect("tempdir");
    ca.issue(certs.path(), "a", &["a.test"], 11);
    ca.issue(certs.path(), "b", &["b.test", "*.b.test"], 12);
    let tls = format!(
        r#"{{ certs = [{{ cert_file = "{0}/a.crt", key_file = "{0}/a.key" }}, {{ cert_file = "{0}/b.crt", key_file = "{0}/b.key" }}] }}"#,
        certs.path().display()
    );
    let d = Daemon::start(&config(certs.path(), &tls)).await;
    let public = d.listener("public").await;
    let client = ca.client();
    let shown = |name: &'static str| {
        let client = client.clone();
        async move { serial(&tls_connect(client, public, name).await.expect("handshake")) }
    };
    assert_eq!(shown("a.test").await, serial_of(11));
    assert_eq!(shown("b.test").await, serial_of(12));
    assert_eq!(shown("www.b.test").await, serial_of(12), "wildcard");
    // An unknown name gets the default certificate (which the client then
    // refuses: it is not for that name).
    let err = tls_connect(client, public, "c.test")
        .await
        .expect_err("not valid for c.test");
    assert!(err.to_string().contains("certificate"), "{err}");
    // A client that takes any certificate sees the first one for an
    // unknown name; the daemon counts the fallback, the refused handshake
    // above included.
    let any = tls_connect(accept_any(), public, "c.test")
        .await
        .expect("handshake");
    assert_eq!(serial(&any), serial_of(11));
    let internal = d.listener("internal").await;
    // Counted before the connection is answered or closed.
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_tls_sni_fallbacks_total{listener="public"}"#
        )
        .await,
        2.0
    );
}

/// A client config that takes any certificate (signatures are still
/// checked).
fn accept_any() -> Arc<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn plain_http_on_the_tls_port_and_a_stalled_handshake_are_closed_and_counted() {
    let Site {
        ca: _ca,
        certs: _certs,
        daemon: d,
        public,
        internal,
    } = Site::start(7).await;

    let mut plain = TcpStream::connect(public).await.expect("connect");
    plain
        .write_all(
            b"GET /healthz HTTP/1.1
Host: x

",
        )
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut out))
        .await
        .expect("closed in time");
    assert!(out.is_empty(), "no answer in plain HTTP: {out:?}");
    // Counted before the connection is answered or closed.
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_tls_handshake_failures_total{listener="public",reason="plain_http"}"#
        )
        .await,
        1.0
    );

    // The first byte of a handshake record, then nothing: dropped at
    // handshake_timeout (1 s here).
    let started = std::time::Instant::now();
    let mut stalled = TcpStream::connect(public).await.expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut out))
        .await
        .expect("dropped in time");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Counted before the connection is answered or closed.
    assert_eq!(
        metric_at(
            internal,
            r#"wsgate_tls_handshake_failures_total{listener="public",reason="timeout"}"#
        )
        .await,
        1.0
    );
    d.wait_log(&["listening on", "listener=public", "tls"])
        .await;
}

#[test]
fn check_refuses_a_missing_or_mismatched_pair_and_warns_of_a_near_expiry() {
    let ca = Ca::new();
    let certs = tempfile::tempdir().expect("tempdir");
    let run = |tls: &str| {
        let path = certs.path().join("wsgate.toml");
        std::fs::write(
            &path,
            format!("[[server.listeners]]\naddress = \"127.0.0.1:9443\"\ntls = {tls}\n"),
        )
        .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .expect("wsgate check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, err) = run(&one_cert(certs.path(), "absent"));
    assert!(!ok);
    assert!(
        err.contains("server.listeners[0].tls") && err.contains("absent.crt"),
        "{err}"
    );

    ca.issue(certs.path(), "a", &["a.test"], 1);
    ca.issue(certs.path(), "b", &["b.test"], 2);
    let crossed = format!(
        r#"{{ cert_file = "{0}/a.crt", key_file = "{0}/b.key" }}"#,
        certs.path().display()
    );
    let (ok, err) = run(&crossed);
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    // Valid for a few more days: accepted, with a warning.
    let soon = days_from_now(5);
    ca.issue_until(certs.path(), "soon", &["soon.test"], 3, soon);
    let (ok, err) = run(&one_cert(certs.path(), "soon"));
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("soon.test") && err.contains("expires"),
        "{err}"
    );
}

/// The civil date `days` from now (UTC).
fn days_from_now(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // Howard Hinnant's days-to-civil.
    let z = now / 86_400 + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// A client config limited to TLS 1.2.
fn tls12_client(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_exchange_messages_larger_than_a_record() {
    let Site {
        ca,
        certs: _certs,
        daemon: _d,
        public,
        internal: _internal,
    } = Site::start(5).await;
    // Three records' worth each way, and small ones between.
    let big = "x".repeat(3 * 16_384 + 100);
    let clients = [
        (ca.client(), rustls::ProtocolVersion::TLSv1_3),
        (tls12_client(&ca), rustls::ProtocolVersion::TLSv1_2),
    ];
    for (client, version) in clients {
        let (mut ws, _) = wss(client, public, "localhost", "/ws/echo").await;
        assert_eq!(ws.get_ref().get_ref().1.protocol_version(), Some(version));
        echo(&mut ws, "small").await;
        echo(&mut ws, &big).await;
        echo(&mut ws, "after").await;
        ws.close(None).await.expect("close");
    }
}

#[tokio::test]
async fn a_client_key_update_ends_the_connection() {
    let Site {
        ca,
        certs: _certs,
        daemon: _d,
        public,
        internal,
    } = Site::start(6).await;
    let (mut ws, _) = wss(ca.client(), public, "localhost", "/ws/echo").await;
    echo(&mut ws, "before").await;
    ws.get_mut()
        .get_mut()
        .1
        .refresh_traffic_keys()
        .expect("key update");
    let _ = ws.send(Message::text("after the key update")).await;
    let next = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("an end in time");
    assert!(
        !matches!(next, Some(Ok(Message::Text(_)))),
        "no echo after a key update: {next:?}"
    );
    // Ended as a lost connection (no close frame can follow a broken
    // record stream).
    wait_metric_at_least(internal, r#"wsgate_closes_total{code="1006"}"#, 1.0).await;
}
