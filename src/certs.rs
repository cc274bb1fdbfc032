//! TLS certificates: read from PEM files and checked (the key must match
//! the certificate), described (names, serial, expiry), chosen by the
//! client's server name; and the rustls server config of a listener.
//!
//! Certificates are loaded with the rest of the config, so a reload reads
//! them again and a bad pair refuses the whole reload with its reason,
//! while the running config (and its certificates) goes on serving. A
//! listener's acceptor is part of the settings: the settings swap is the
//! atomic swap of its certificates, and connections already open keep the
//! session they made.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::Decode;

/// Why a certificate or its key cannot be used. No variant carries key
/// material: only paths and reasons.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: a certificate does not parse: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: no PEM private key in it (PKCS#8, RSA or EC)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("unknown TLS version `{0}` (one of: 1.2, 1.3)")]
    Version(String),
}

/// A certificate with its key, ready to serve.
#[derive(Clone)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    /// The DNS names it is valid for (subjectAltName, else the subject's
    /// common name), lower-case.
    pub names: Vec<String>,
    /// The serial number, in hex.
    pub serial: String,
    pub not_after: SystemTime,
    pub cert_file: PathBuf,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("names", &self.names)
            .field("serial", &self.serial)
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// The name it is shown by: its first name.
    pub fn name(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    /// Seconds from `now` until it expires (negative once expired).
    pub fn seconds_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Seconds since the Unix epoch at which it expires.
    pub fn expiry_unix(&self) -> u64 {
        self.not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn matches(&self, server_name: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, server_name))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a certificate (the leaf, then its chain) and its key, and checks
/// that they belong together.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Certificate, CertError> {
    let pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert_file.to_path_buf(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    };
    let described = describe(leaf).map_err(|reason| CertError::BadCertificate {
        path: cert_file.to_path_buf(),
        reason,
    })?;

    let pem = read(key_file)?;
    // The pem error would name the section it could not read; say only
    // that there is no usable key, whatever the file holds.
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| CertError::NoKey {
        path: key_file.to_path_buf(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| CertError::BadKey {
            path: key_file.to_path_buf(),
            reason: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
    })?;
    Ok(Certificate {
        key: Arc::new(key),
        names: described.names,
        serial: described.serial,
        not_after: described.not_after,
        cert_file: cert_file.to_path_buf(),
    })
}

struct Described {
    names: Vec<String>,
    serial: String,
    not_after: SystemTime,
}

/// The names, serial and expiry of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<Described, String> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let tbs = &cert.tbs_certificate;
    let serial = tbs
        .serial_number
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let not_after = UNIX_EPOCH + tbs.validity.not_after.to_unix_duration();
    let mut names = Vec::new();
    use x509_cert::der::oid::AssociatedOid;
    let san = SubjectAltName::OID;
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != san {
            continue;
        }
        let alt = SubjectAltName::from_der(ext.extn_value.as_bytes()).map_err(|e| e.to_string())?;
        for name in alt.0 {
            if let GeneralName::DnsName(dns) = name {
                names.push(dns.as_str().to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        // No subjectAltName: the subject's common name, as older
        // certificates have it.
        let subject = tbs.subject.to_string();
        names.extend(
            subject
                .split(',')
                .filter_map(|part| part.trim().strip_prefix("CN="))
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(Described {
        names,
        serial,
        not_after,
    })
}

/// Whether a certificate name (`example.com`, `*.example.com`) covers a
/// server name: exactly, or by a wildcard for one leftmost label.
fn name_matches(pattern: &str, server_name: &str) -> bool {
    let server_name = server_name.trim_end_matches('.');
    if pattern.eq_ignore_ascii_case(server_name) {
        return true;
    }
    match (pattern.strip_prefix("*."), server_name.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

/// A listener's certificates: the one whose names cover the client's
/// server name (SNI), else the first.
#[derive(Debug)]
pub struct ByServerName {
    certs: Vec<Certificate>,
}

impl ByServerName {
    /// `None` for an empty list.
    pub fn new(certs: Vec<Certificate>) -> Option<Self> {
        (!certs.is_empty()).then_some(ByServerName { certs })
    }

    pub fn certificates(&self) -> &[Certificate] {
        &self.certs
    }

    /// The certificate for a server name (`None`: no SNI).
    pub fn choose(&self, server_name: Option<&str>) -> &Certificate {
        server_name
            .and_then(|n| self.certs.iter().find(|c| c.matches(n)))
            .unwrap_or(&self.certs[0])
    }
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.choose(hello.server_name()).key))
    }
}

/// The rustls config of a TLS listener: the ring provider (set here, never
/// as a process default), TLS 1.2 and 1.3 or 1.3 only, ALPN `http/1.1`.
pub fn server_config(
    certs: Arc<ByServerName>,
    min_version: &str,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        "1.2" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => return Err(CertError::Version(other.to_string())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| CertError::Version(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Within this of its expiry a certificate is warned about (`wsgate
/// check`, every load).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("example.com", "EXAMPLE.com"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("example.com", "example.com."));
    }
}
