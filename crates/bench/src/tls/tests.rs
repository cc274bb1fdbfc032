//! `wss://` end to end: certificates made with rcgen in a temporary
//! directory, a tokio-rustls + hyper + fastwebsockets echo server on a
//! thread of its own (so that `crate::run`, which builds its own runtime,
//! can drive it too), and the bench's dialer against it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use fastwebsockets::{upgrade, OpCode, WebSocketError};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::Tls;
use crate::client::{Dialer, Incoming};
use crate::publisher::Publisher;
use crate::target::Target;
use crate::tests::{parse, plan, try_parse};

/// A CA: its certificate and key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    Ca { cert, key }
}

/// Two unrelated CAs in PEM files, and a server configuration whose
/// certificate (for `localhost` and 127.0.0.1) the first one signed.
struct Pki {
    _dir: TempDir,
    /// The CA that signed the server's certificate.
    ca: String,
    /// A CA that did not.
    other_ca: String,
    /// A file with no certificate in it.
    not_pem: String,
    server: Arc<ServerConfig>,
}

fn pki() -> Pki {
    let ca = new_ca("wsgate bench test CA");
    let other = new_ca("another CA");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("leaf key");
    let leaf = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("leaf certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("UTF-8 path").to_string()
    };
    let ca_path = write("ca.pem", ca.cert.pem());
    let other_path = write("other-ca.pem", other.cert.pem());
    let not_pem = write("not.pem", "hello\n".to_string());
    let mut server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki {
        _dir: dir,
        ca: ca_path,
        other_ca: other_path,
        not_pem,
        server: Arc::new(server),
    }
}

/// Starts a wss echo server (`/ws/echo`, and `POST /api/publish` answering
/// `{"delivered":0}`) on a thread of its own; it lives as long as the test
/// process.
fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let acceptor = TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends it here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(handle))
                        .with_upgrades()
                        .await;
                });
            }
        });
    });
    addr
}

async fn handle(
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/api/publish" {
        return Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"delivered\":0}",
        ))));
    }
    Ok(match upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            tokio::spawn(async move {
                let _ = echo(fut).await;
            });
            resp.map(|_| Full::default())
        }
        Err(_) => {
            let mut resp = Response::new(Full::default());
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            resp
        }
    })
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return ws.flush().await,
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(frame).await?;
                ws.flush().await?;
            }
            _ => {}
        }
    }
}

/// One connection through the bench's dialer with these common options:
/// a round trip, then a clean close.
async fn round_trip(options: &[&str], url: &str) -> anyhow::Result<()> {
    let mut args = options.to_vec();
    args.push("echo");
    let common = parse(&args).common;
    let target = Target::parse(url, "ws")?;
    let tls = Tls::for_target(&target, "--url", &common)?;
    let addr = target.resolve().await?;
    let dialer = Dialer::new(&target, addr, Vec::new(), tls);
    let mut conn = dialer.connect(0).await?;
    for i in 0..3u8 {
        let payload = [b'w', b's', b's', i];
        conn.send(OpCode::Binary, &payload).await?;
        match conn
            .recv_until(Instant::now() + Duration::from_secs(1))
            .await?
        {
            Incoming::Binary(b) if b[..] == payload => {}
            other => bail!("round trip {i}: {other:?}"),
        }
    }
    conn.close().await;
    Ok(())
}

#[tokio::test]
async fn wss_echo_with_the_signing_ca() {
    let pki = pki();
    let addr = serve(pki.server.clone());
    let port = addr.port();
    round_trip(
        &["--ca", &pki.ca],
        &format!("wss://127.0.0.1:{port}/ws/echo"),
    )
    .await
    .expect("by IP");
    // A name: sent as SNI and matched against the certificate.
    round_trip(
        &["--ca", &pki.ca],
        &format!("wss://localhost:{port}/ws/echo"),
    )
    .await
    .expect("by name");
}

#[tokio::test]
async fn another_ca_is_a_certificate_error() {
    let pki = pki();
    let addr = serve(pki.server.clone());
    let url = format!("wss://127.0.0.1:{}/ws/echo", addr.port());
    let e = round_trip(&["--ca", &pki.other_ca], &url)
        .await
        .expect_err("an unknown issuer was trusted");
    let e = format!("{e:#}");
    assert!(e.contains("TLS handshake"), "{e}");
    assert!(e.contains("certificate"), "{e}");
    // --insecure accepts the same server.
    round_trip(&["--insecure"], &url).await.expect("--insecure");
}

#[tokio::test]
async fn the_publisher_speaks_https() {
    let pki = pki();
    let addr = serve(pki.server.clone());
    let common = parse(&["--ca", &pki.ca, "fanout"]).common;
    let api = Target::parse(
        &format!("https://localhost:{}/api/publish", addr.port()),
        "http",
    )
    .expect("api");
    let tls = Tls::for_target(&api, "--api", &common).expect("tls");
    let mut publisher = Publisher::connect(&api, addr, None, tls)
        .await
        .expect("connect");
    for _ in 0..2 {
        assert_eq!(
            publisher.publish("{}".to_string()).await.expect("publish"),
            0
        );
    }
}

/// Whole runs, as `wsgate bench` makes them: every mode dials through the
/// same [`Dialer`], so echo (round trips) and idle (many handshakes at once,
/// held, closed) cover the TLS path of all of them.
#[test]
fn echo_and_idle_runs_over_wss() {
    let pki = pki();
    let addr = serve(pki.server.clone());
    let url = format!("wss://127.0.0.1:{}/ws/echo", addr.port());
    let echo = [
        "--ca",
        &pki.ca,
        "-q",
        "--max-time",
        "10",
        "echo",
        "--url",
        &url,
        "--conns",
        "4",
        "--msgs",
        "50",
        "--size",
        "100",
    ];
    crate::run(parse(&echo)).expect("echo over wss");
    let idle = [
        "-q",
        "--insecure",
        "--max-time",
        "10",
        "idle",
        "--url",
        &url,
        "--conns",
        "20",
        "--concurrency",
        "10",
        "--hold",
        "0.1",
    ];
    crate::run(parse(&idle)).expect("idle over wss");
}

#[test]
fn what_to_trust_is_checked_up_front() {
    let pki = pki();
    let e = plan(&["echo", "--url", "wss://127.0.0.1:1/ws/echo"]).expect_err("no trust");
    let e = format!("{e:#}");
    assert!(e.contains("--ca") && e.contains("--insecure"), "{e}");
    assert!(e.contains("no system roots"), "{e}");
    let e = plan(&[
        "fanout",
        "--insecure",
        "--api",
        "https://127.0.0.1:1/api/publish",
    ])
    .map(drop);
    e.expect("an https API with --insecure");
    let e = plan(&["fanout", "--api", "https://127.0.0.1:1/api/publish"]).expect_err("api");
    assert!(format!("{e:#}").contains("--api"), "{e:#}");
    // Plain targets ignore the TLS options.
    plan(&["--ca", &pki.ca, "echo", "--url", "ws://127.0.0.1:1/ws/echo"]).expect("ws");
    plan(&["echo", "--insecure", "--url", "ws://127.0.0.1:1/ws/echo"]).expect("ws");
    // Bad CA files.
    let wss = "wss://127.0.0.1:1/ws/echo";
    let e = plan(&["echo", "--url", wss, "--ca", &pki.not_pem]).expect_err("not PEM");
    assert!(format!("{e:#}").contains("no CERTIFICATE"), "{e:#}");
    let e = plan(&["echo", "--url", wss, "--ca", "/nonexistent/ca.pem"]).expect_err("missing");
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    plan(&["echo", "--url", wss, "--ca", &pki.ca]).expect("--ca");
    // One or the other.
    assert!(try_parse(&["echo", "--url", wss, "--ca", &pki.ca, "--insecure"]).is_err());
}
