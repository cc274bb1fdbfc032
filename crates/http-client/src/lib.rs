//! The HTTP/1 client of the plugins that call out (the `forward`
//! authenticator asks an app, `jwt` fetches a JWKS): hyper's pooled legacy
//! client over `http://` or `https://` (rustls with the ring provider, the
//! daemon's only one, trusting the certificates of a `ca_file`).
//!
//! Every exchange is bounded: in time (the caller's timeout covers connect,
//! request and the whole answer) and in size (an answer over `max_body`
//! bytes is an error, never buffered whole).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The TLS library of [`trust`]'s configs.
pub use rustls;

/// What wsgate tells the servers it calls it is.
pub const USER_AGENT: &str = concat!("wsgate/", env!("CARGO_PKG_VERSION"));

/// The keep-alive pool of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Idle connections kept per host.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

/// Why an exchange gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot be reached: {0}")]
    Unreachable(String),
    #[error("the answer is over {0} bytes")]
    TooLarge(usize),
}

/// A pooled client. Building it dials nothing and spawns nothing; the
/// first request does, on the runtime it runs on.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `http://` URLs and, with `tls`, for `https://` ones
    /// (without, an `https://` request fails: [`check_url`] refuses such a
    /// URL when the config is loaded).
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, pool: Pool) -> Self {
        let mut tls = tls.map_or_else(no_roots, |c| (*c).clone());
        // The connector sets ALPN itself (http/1.1) and refuses a config
        // that already has some.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(pool.max_idle)
            .pool_idle_timeout(pool.idle_timeout)
            .build(connector);
        Self { inner }
    }

    /// Sends `request` and reads the whole answer, all within `timeout`;
    /// an answer body over `max_body` bytes is [`Error::TooLarge`].
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response<Bytes>, Error> {
        tokio::time::timeout(timeout, self.exchange(request, max_body))
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response<Bytes>, Error> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| Error::Unreachable(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        // Read whole (within the limit) so that the connection can serve
        // the next request.
        let body = match Limited::new(body, max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Error::TooLarge(max_body))
            }
            Err(e) => return Err(Error::Unreachable(format!("answer cut off: {e}"))),
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// A TLS client config that trusts the certificates of `ca_file` (PEM),
/// with the ring provider and ALPN http/1.1.
pub fn trust(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let shown = ca_file.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown}: no certificate in it"));
    }
    let mut config = config_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn config_builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
}

/// A config that trusts nothing, for a client that only speaks `http://`.
fn no_roots() -> rustls::ClientConfig {
    match config_builder() {
        Ok(b) => b
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        // The ring provider always supports the default versions.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// An endpoint from a plugin's options: its URL, checked by [`check_url`]
/// and without user info (a credential goes in a `*_env` option), and, with
/// a `ca_file`, the TLS config that trusts it. An error names its option
/// (`url_key` or `ca_file`).
pub fn endpoint(
    url: &str,
    url_key: &'static str,
    ca_file: Option<&Path>,
) -> Result<Endpoint, (&'static str, String)> {
    let tls = ca_file.map(trust).transpose().map_err(|e| ("ca_file", e))?;
    let uri = check_url(url, tls.is_some()).map_err(|e| (url_key, e))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err((
            url_key,
            "must not carry user info (use key_env for a credential)".to_string(),
        ));
    }
    Ok(Endpoint { uri, tls })
}

/// A checked endpoint: see [`endpoint`].
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: Uri,
    /// With a `ca_file`: the TLS config that trusts its certificates.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Checks a URL from the config: `http://` or `https://` with a host, and
/// `https://` only when a `ca_file` is given (`has_ca`).
pub fn check_url(url: &str, has_ca: bool) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}): `{url}`"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("must start with http:// or https://: `{url}`")),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("has no host: `{url}`"));
    }
    if https && !has_ca {
        return Err(
            "an https:// URL needs ca_file, the PEM certificates to trust (the system's \
             bundle is usually /etc/ssl/certs/ca-certificates.crt)"
                .to_string(),
        );
    }
    Ok(uri)
}

/// Runs `future` to its end on a runtime of its own, in a thread of its
/// own: for a fetch while the config is loaded, which happens with or
/// without the daemon's runtime (at start, in `wsgate check`, in a reload).
pub fn run_apart<T, F>(future: F) -> Result<T, String>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name("wsgate-fetch".to_string())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(future))
                .map_err(|e| format!("cannot start a runtime: {e}"))
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    thread
        .join()
        .map_err(|_| "the fetch thread panicked".to_string())?
}

/// An error with its causes (hyper's own text says little: "client error
/// (Connect)").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const POOL: Pool = Pool {
        max_idle: 1,
        idle_timeout: Duration::from_secs(5),
    };

    /// A one-shot HTTP server that answers `answer` to the first request.
    async fn serve_once(answer: &'static [u8]) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer).await;
            // Held open: the client must not wait for the close.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }

    fn get(addr: std::net::SocketAddr) -> Request<Full<Bytes>> {
        Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .expect("request")
    }

    #[tokio::test]
    async fn reads_a_whole_answer() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let client = Client::new(None, POOL);
        let answer = client
            .send(get(addr), Duration::from_secs(2), 64)
            .await
            .expect("answer");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.body().as_ref(), b"hello");
    }

    #[tokio::test]
    async fn a_long_answer_is_too_large() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789").await;
        let client = Client::new(None, POOL);
        let err = client
            .send(get(addr), Duration::from_secs(2), 4)
            .await
            .expect_err("over the limit");
        assert_eq!(err, Error::TooLarge(4));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let addr = serve_once(b"").await;
        let client = Client::new(None, POOL);
        let timeout = Duration::from_millis(200);
        let err = client
            .send(get(addr), timeout, 64)
            .await
            .expect_err("no answer");
        assert_eq!(err, Error::Timeout(timeout));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = Client::new(None, POOL);
        match client.send(get(addr), Duration::from_secs(2), 64).await {
            Err(Error::Unreachable(text)) => assert!(text.contains("onnect"), "{text}"),
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[test]
    fn a_config_with_alpn_is_taken() {
        let mut config = no_roots();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let _client = Client::new(Some(Arc::new(config)), POOL);
    }

    #[test]
    fn endpoints_name_the_option_at_fault() {
        assert!(endpoint("http://a/x", "url", None).is_ok());
        assert_eq!(
            endpoint("http://u:p@a/x", "url", None).map(|_| ()),
            Err((
                "url",
                "must not carry user info (use key_env for a credential)".to_string()
            ))
        );
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert_eq!(
            endpoint("https://a/x", "url", Some(missing))
                .err()
                .map(|e| e.0),
            Some("ca_file")
        );
        assert_eq!(
            endpoint("https://a/x", "jwks_url", None).err().map(|e| e.0),
            Some("jwks_url")
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:8000/auth", false).is_ok());
        assert!(check_url("https://idp.example/jwks", true).is_ok());
        assert!(check_url("https://idp.example/jwks", false)
            .expect_err("no ca")
            .contains("ca_file"));
        assert!(check_url("ftp://x/", true)
            .expect_err("scheme")
            .contains("http://"));
        assert!(check_url("not a url", true).is_err());
        assert!(check_url("/relative", true).is_err());
    }

    #[test]
    fn run_apart_works_inside_and_outside_a_runtime() {
        assert_eq!(run_apart(async { 7 }), Ok(7));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(runtime.block_on(async { run_apart(async { 8 }) }), Ok(8));
    }

    #[test]
    fn trust_needs_certificates() {
        let dir = std::env::temp_dir().join(format!("wsgate-http-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(trust(&empty).expect_err("empty").contains("no certificate"));
        assert!(trust(&dir.join("absent.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
