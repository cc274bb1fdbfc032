//! TLS for `wss://` targets (and an `https://` publish API): rustls with the
//! ring provider, chosen explicitly, never a process-wide default.
//!
//! What to trust is always said on the command line: `--ca FILE` (PEM CA
//! certificates) or `--insecure` (any certificate; the handshake signatures
//! are still checked, so the session is at least with the holder of the
//! key the server showed). There are no system roots on purpose: a bench
//! talks to a server its user set up, and a run that silently trusted the
//! machine's roots would measure the wrong server without a word.
//!
//! Session resumption is off: every handshake the bench counts is a full
//! one, as a crowd of distinct clients would make.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::target::Target;
use super::Common;

/// The ALPN protocol offered: the upgrade is an HTTP/1.1 request.
const ALPN: &[u8] = b"http/1.1";

/// How a TLS target is reached: the client configuration and the name the
/// server's certificate must carry (also sent as SNI unless an IP).
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// What the bench trusts.
enum Trust<'a> {
    /// The CA certificates in this PEM file.
    Ca(&'a Path),
    /// Any certificate (`--insecure`).
    Any,
}

impl Tls {
    /// The TLS set-up `target` needs: `None` for `ws://` and `http://`, and
    /// an error for a TLS target when neither `--ca` nor `--insecure` says
    /// what to trust. `option` names the URL's option in messages.
    pub fn for_target(
        target: &Target,
        option: &str,
        common: &Common,
    ) -> anyhow::Result<Option<Tls>> {
        if !target.tls {
            return Ok(None);
        }
        let trust = match (&common.ca, common.insecure) {
            (Some(path), _) => Trust::Ca(path),
            (None, true) => Trust::Any,
            (None, false) => bail!(
                "{option} `{}` is TLS: pass --ca FILE (the PEM CA certificate(s) that \
                 signed the server's certificate) or --insecure (accept any certificate); \
                 the bench uses no system roots",
                target.url
            ),
        };
        let server_name = ServerName::try_from(target.host.clone()).with_context(|| {
            format!(
                "{option} `{}`: `{}` cannot be a TLS server name",
                target.url, target.host
            )
        })?;
        let config = client_config(&trust)?;
        Ok(Some(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }

    /// The TLS handshake over a connected socket.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

/// The ring provider, explicitly (never the process default).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(trust: &Trust<'_>) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the ring provider supports no TLS version")?;
    let mut config = match trust {
        Trust::Ca(path) => builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth(),
        Trust::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The CA certificates of a PEM file; at least one.
fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let shown = path.display();
    let pem =
        std::fs::read(path).with_context(|| format!("--ca {}: cannot read the file", shown))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("--ca {}: bad PEM", shown))?;
        roots
            .add(cert)
            .with_context(|| format!("--ca {}: not a usable CA certificate", shown))?;
    }
    if roots.is_empty() {
        bail!("--ca {}: no CERTIFICATE section in the file", shown);
    }
    Ok(roots)
}

/// `--insecure`: any certificate chain for any name is accepted, but the
/// handshake's signatures are verified with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
