//! TLS certificates: read from PEM files and checked (the key must match
//! the certificate), described (names, serial, expiry), chosen by the
//! client's server name; and the rustls server config of a listener.
//!
//! A listener's certificate for a server name (SNI) is the first whose
//! names hold it exactly, else the first whose wildcard covers it, else
//! the listener's first certificate ([`ByServerName::covers`] tells the
//! last case, which the listener counts).
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
use rustls::InconsistentKeys;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::asn1::{
    BmpString, Ia5StringRef, ObjectIdentifier, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::{Any, Decode, Tag, Tagged};

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
    /// common names), lower-case.
    pub names: Vec<String>,
    /// The serial number in lower-case hex, without DER's leading zero
    /// byte (`-` before the magnitude of a negative one): what `openssl
    /// x509 -serial` shows, which is the same in upper case.
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

    /// How well its names cover a server name: the best of them.
    fn covers(&self, server_name: &str) -> Option<Match> {
        self.names
            .iter()
            .filter_map(|n| name_match(n, server_name))
            .min()
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
            reason: pem_reason(&e),
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
    check_keys(key.keys_match(), cert_file, key_file)?;
    Ok(Certificate {
        key: Arc::new(key),
        names: described.names,
        serial: described.serial,
        not_after: described.not_after,
        cert_file: cert_file.to_path_buf(),
    })
}

/// What a PEM file's syntax error says, without the lines it quotes (a
/// line of a private key section could be one).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(reason) => format!("bad base64 in a PEM section: {reason}"),
        pem::Error::SectionTooLarge => "a PEM section is too large".to_string(),
        _ => "the PEM does not parse".to_string(),
    }
}

/// The outcome of [`CertifiedKey::keys_match`]: a key that cannot tell
/// its public key (`Unknown`) is accepted, as rustls's own
/// `with_single_cert` does; any other error is the certificate's.
fn check_keys(
    matched: Result<(), rustls::Error>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<(), CertError> {
    match matched {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(CertError::Mismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            })
        }
        Err(e) => Err(CertError::BadCertificate {
            path: cert_file.to_path_buf(),
            reason: e.to_string(),
        }),
    }
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
    let serial = serial_hex(tbs.serial_number.as_bytes());
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
        // No subjectAltName: the subject's common names, as older
        // certificates have them.
        names.extend(common_names(&tbs.subject));
    }
    Ok(Described {
        names,
        serial,
        not_after,
    })
}

/// commonName (2.5.4.3).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The commonName values of a subject, in its order, lower-case; those
/// that are not a string (or are empty) are left out.
fn common_names(subject: &x509_cert::name::Name) -> Vec<String> {
    subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == COMMON_NAME)
        .filter_map(|atv| directory_string(&atv.value))
        .filter(|name| !name.is_empty())
        .map(|name| name.to_ascii_lowercase())
        .collect()
}

/// A DirectoryString (UTF8String, PrintableString, IA5String,
/// TeletexString as ASCII, BMPString) as text.
fn directory_string(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::Utf8String => value
            .decode_as::<Utf8StringRef<'_>>()
            .ok()
            .map(|s| s.to_string()),
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef<'_>>()
            .ok()
            .map(|s| s.to_string()),
        Tag::Ia5String => value
            .decode_as::<Ia5StringRef<'_>>()
            .ok()
            .map(|s| s.to_string()),
        Tag::TeletexString => value
            .decode_as::<TeletexStringRef<'_>>()
            .ok()
            .map(|s| s.to_string()),
        Tag::BmpString => value.decode_as::<BmpString>().ok().map(|s| s.to_string()),
        _ => None,
    }
}

/// The hex of a DER INTEGER's two's-complement bytes as `openssl x509
/// -serial` shows it (in lower case): the magnitude without leading zero
/// bytes (but at least one byte), `-` first if it is negative.
fn serial_hex(bytes: &[u8]) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude: Vec<u8> = if negative {
        // Two's complement: invert, then add one from the right.
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let digits: String = magnitude
        .get(start..)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match (negative, digits.is_empty()) {
        (_, true) => "00".to_string(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits,
    }
}

/// How a certificate name covers a server name; the better first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Exact,
    Wildcard,
}

/// Whether a certificate name (`example.com`, `*.example.com`) covers a
/// server name: exactly, or by a wildcard for one leftmost label.
fn name_match(pattern: &str, server_name: &str) -> Option<Match> {
    let server_name = server_name.trim_end_matches('.');
    if pattern.eq_ignore_ascii_case(server_name) {
        return Some(Match::Exact);
    }
    match (pattern.strip_prefix("*."), server_name.split_once('.')) {
        (Some(suffix), Some((label, rest)))
            if !label.is_empty() && rest.eq_ignore_ascii_case(suffix) =>
        {
            Some(Match::Wildcard)
        }
        _ => None,
    }
}

/// A listener's certificates: for the client's server name (SNI) the
/// first that holds it exactly, else the first whose wildcard covers it,
/// else the first of all.
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
            .and_then(|n| self.covering(n))
            .unwrap_or_else(|| self.default_cert())
    }

    /// Whether a certificate covers this server name.
    pub fn covers(&self, server_name: &str) -> bool {
        self.covering(server_name).is_some()
    }

    /// The best certificate for a server name: exact before wildcard, then
    /// in order.
    fn covering(&self, server_name: &str) -> Option<&Certificate> {
        let mut best: Option<(Match, &Certificate)> = None;
        for cert in &self.certs {
            match (cert.covers(server_name), best) {
                (Some(Match::Exact), _) => return Some(cert),
                (Some(m), None) => best = Some((m, cert)),
                _ => {}
            }
        }
        best.map(|(_, cert)| cert)
    }

    fn default_cert(&self) -> &Certificate {
        // `new` refuses an empty list.
        &self.certs[0]
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
    // After the upgrade, a TLS 1.3 connection's records are framed by the
    // connection's own I/O with the session's keys (conn::records).
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

/// Within this of its expiry a certificate is warned about (`wsgate
/// check`, every load).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, DnValue, IsCa, KeyPair};
    use rustls_pki_types::ServerName;

    /// A test CA.
    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wsgate test ca");
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    /// A certificate and its key in PEM files.
    struct Pair {
        cert_file: PathBuf,
        key_file: PathBuf,
        cert_der: Vec<u8>,
        key_pem: String,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A leaf signed by `ca`, in `<stem>.crt` (leaf then CA) and `<stem>.key`.
    fn pair(dir: &Path, ca: &Ca, stem: &str, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &ca.cert, &ca.key)
            .expect("leaf cert");
        let chain = format!("{}{}", cert.pem(), ca.cert.pem());
        let key_pem = key.serialize_pem();
        Pair {
            cert_file: write(dir, &format!("{stem}.crt"), &chain),
            key_file: write(dir, &format!("{stem}.key"), &key_pem),
            cert_der: cert.der().to_vec(),
            key_pem,
        }
    }

    fn names_pair(dir: &Path, ca: &Ca, stem: &str, names: &[&str]) -> Pair {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        pair(
            dir,
            ca,
            stem,
            CertificateParams::new(names).expect("params"),
        )
    }

    fn loaded(p: &Pair) -> Certificate {
        load(&p.cert_file, &p.key_file).expect("load")
    }

    /// Neither form of the error shows the key.
    fn assert_no_key(err: &CertError, key_pem: &str) {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
            for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "{text} shows the key");
            }
        }
    }

    #[test]
    fn a_good_pair_loads_with_its_names_serial_and_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let mut params = CertificateParams::new(vec![
            "API.example.com".to_string(),
            "*.example.com".to_string(),
        ])
        .expect("params");
        // The top bit set: DER pads it with a zero byte.
        params.serial_number = Some(vec![0x8f, 0x01, 0x02, 0x03].into());
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let p = pair(dir.path(), &ca, "good", params);
        let cert = loaded(&p);
        assert_eq!(cert.names, ["api.example.com", "*.example.com"]);
        assert_eq!(cert.name(), "api.example.com");
        assert_eq!(cert.serial, "8f010203");
        let expiry = rcgen::date_time_ymd(2031, 5, 17).unix_timestamp();
        assert_eq!(i64::try_from(cert.expiry_unix()).expect("expiry"), expiry);
        assert_eq!(cert.cert_file, p.cert_file);
        assert_eq!(cert.key.cert.len(), 2, "the leaf and its chain");
        assert_eq!(cert.key.cert[0].as_ref(), p.cert_der.as_slice());
        let debug = format!("{cert:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn serials_are_hex_as_openssl_shows_them() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x01, 0xab]), "01ab");
        assert_eq!(serial_hex(&[0x7f]), "7f");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
        assert_eq!(serial_hex(&[0xff]), "-01");
        assert_eq!(serial_hex(&[0x80]), "-80");
        assert_eq!(serial_hex(&[0xff, 0x7f]), "-81");
        assert_eq!(serial_hex(&[0xfe, 0x00]), "-0200");
    }

    #[test]
    fn without_subject_alt_name_the_common_name_is_read_from_the_subject() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let subject = |cn: DnValue| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Acme, Inc. CN=evil.example");
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, "ops+CN=worse.example");
            params
        };
        let printable = DnValue::PrintableString(
            rcgen::PrintableString::try_from("Legacy.Example.com").expect("printable"),
        );
        let p = pair(dir.path(), &ca, "printable", subject(printable));
        assert_eq!(loaded(&p).names, ["legacy.example.com"]);

        let utf8 = DnValue::Utf8String("old, odd.example.com".to_string());
        let p = pair(dir.path(), &ca, "utf8", subject(utf8));
        assert_eq!(loaded(&p).names, ["old, odd.example.com"]);

        let bmp = DnValue::BmpString(rcgen::BmpString::try_from("bmp.example.com").expect("bmp"));
        let p = pair(dir.path(), &ca, "bmp", subject(bmp));
        assert_eq!(loaded(&p).names, ["bmp.example.com"]);

        let ia5 = DnValue::Ia5String(rcgen::Ia5String::try_from("ia5.example.com").expect("ia5"));
        let p = pair(dir.path(), &ca, "ia5", subject(ia5));
        assert_eq!(loaded(&p).names, ["ia5.example.com"]);

        // A subjectAltName wins over the common name.
        let mut params =
            CertificateParams::new(vec!["san.example.com".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "cn.example.com");
        let p = pair(dir.path(), &ca, "san", params);
        assert_eq!(loaded(&p).names, ["san.example.com"]);
    }

    #[test]
    fn an_exact_name_wins_over_a_wildcard_whatever_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let wild = loaded(&names_pair(dir.path(), &ca, "wild", &["*.example.com"]));
        let api = loaded(&names_pair(dir.path(), &ca, "api", &["api.example.com"]));
        let other = loaded(&names_pair(dir.path(), &ca, "other", &["other.test"]));
        let chosen = |set: &ByServerName, name: Option<&str>| set.choose(name).cert_file.clone();

        let set = ByServerName::new(vec![wild.clone(), api.clone(), other.clone()]).expect("set");
        assert_eq!(chosen(&set, Some("api.example.com")), api.cert_file);
        assert_eq!(chosen(&set, Some("API.example.com.")), api.cert_file);
        assert_eq!(chosen(&set, Some("www.example.com")), wild.cert_file);
        assert_eq!(chosen(&set, Some("other.test")), other.cert_file);
        assert_eq!(chosen(&set, Some("nothing.test")), wild.cert_file);
        assert_eq!(chosen(&set, None), wild.cert_file);

        let set = ByServerName::new(vec![other.clone(), api.clone(), wild.clone()]).expect("set");
        assert_eq!(chosen(&set, Some("api.example.com")), api.cert_file);
        assert_eq!(chosen(&set, Some("www.example.com")), wild.cert_file);
        assert_eq!(chosen(&set, Some("nothing.test")), other.cert_file);
        assert_eq!(chosen(&set, None), other.cert_file);
        assert!(set.covers("api.example.com") && set.covers("www.example.com"));
        assert!(!set.covers("nothing.test"));

        assert!(ByServerName::new(Vec::new()).is_none());
    }

    #[test]
    fn load_errors_name_the_file_and_never_show_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = ca();
        let a = names_pair(d, &ca, "a", &["a.example.com"]);
        let b = names_pair(d, &ca, "b", &["b.example.com"]);
        let cert_pem = std::fs::read_to_string(&a.cert_file).expect("read");
        let keys = format!("{}{}", a.key_pem, b.key_pem);
        let check = |err: CertError| {
            assert_no_key(&err, &keys);
            err
        };

        // The key of another pair.
        let err = check(load(&a.cert_file, &b.key_file).expect_err("mismatch"));
        assert!(
            matches!(&err, CertError::Mismatch { cert, key } if *cert == a.cert_file && *key == b.key_file),
            "{err:?}"
        );

        // Missing files.
        let missing = d.join("missing.crt");
        let err = check(load(&missing, &a.key_file).expect_err("missing cert"));
        assert!(
            matches!(&err, CertError::Read { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.crt"), "{err}");
        let missing = d.join("missing.key");
        let err = check(load(&a.cert_file, &missing).expect_err("missing key"));
        assert!(
            matches!(&err, CertError::Read { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.key"), "{err}");

        // No certificate: an empty file, a file holding only a key.
        let empty = write(d, "empty.crt", "");
        let err = check(load(&empty, &a.key_file).expect_err("empty"));
        assert!(
            matches!(&err, CertError::NoCertificate { path } if *path == empty),
            "{err:?}"
        );
        assert!(err.to_string().contains("empty.crt"), "{err}");
        let only_key = write(d, "only-key.crt", &a.key_pem);
        let err = check(load(&only_key, &a.key_file).expect_err("only a key"));
        assert!(
            matches!(&err, CertError::NoCertificate { path } if *path == only_key),
            "{err:?}"
        );

        // A key file holding only a certificate.
        let only_cert = write(d, "only-cert.key", &cert_pem);
        let err = check(load(&a.cert_file, &only_cert).expect_err("only a cert"));
        assert!(
            matches!(&err, CertError::NoKey { path } if *path == only_cert),
            "{err:?}"
        );
        assert!(err.to_string().contains("only-cert.key"), "{err}");

        // Garbage: not base64, base64 of no DER, text with no PEM at all.
        let garbage =
            "-----BEGIN CERTIFICATE-----\nthis is not base64 !!!\n-----END CERTIFICATE-----\n";
        let not_b64 = write(d, "not-base64.crt", garbage);
        let err = check(load(&not_b64, &a.key_file).expect_err("not base64"));
        assert!(
            matches!(&err, CertError::BadCertificate { path, .. } if *path == not_b64),
            "{err:?}"
        );
        assert!(err.to_string().contains("not-base64.crt"), "{err}");
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let not_der = write(d, "not-der.crt", garbage);
        let err = check(load(&not_der, &a.key_file).expect_err("not DER"));
        assert!(
            matches!(&err, CertError::BadCertificate { path, .. } if *path == not_der),
            "{err:?}"
        );
        assert!(err.to_string().contains("not-der.crt"), "{err}");
        let text = write(d, "text.crt", "hello, world\n");
        let err = check(load(&text, &a.key_file).expect_err("no PEM"));
        assert!(
            matches!(&err, CertError::NoCertificate { path } if *path == text),
            "{err:?}"
        );

        // A key section cut short in the cert file: the PEM error would
        // quote its END line.
        let cut = a.key_pem.lines().take(2).collect::<Vec<_>>().join("\n");
        let cut = write(d, "cut.crt", &format!("{cert_pem}{cut}\n"));
        let err = check(load(&cut, &a.key_file).expect_err("cut"));
        assert!(
            matches!(&err, CertError::BadCertificate { path, .. } if *path == cut),
            "{err:?}"
        );

        // A key that no provider reads.
        let bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let bad_key = write(d, "bad.key", bad_key);
        let err = check(load(&a.cert_file, &bad_key).expect_err("bad key"));
        assert!(
            matches!(&err, CertError::BadKey { path, .. } if *path == bad_key),
            "{err:?}"
        );
    }

    /// A signing key that cannot tell its public key.
    #[derive(Debug)]
    struct NoPublicKey(Arc<dyn rustls::sign::SigningKey>);

    impl rustls::sign::SigningKey for NoPublicKey {
        fn choose_scheme(
            &self,
            offered: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            self.0.choose_scheme(offered)
        }

        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            self.0.algorithm()
        }
    }

    #[test]
    fn only_a_key_mismatch_is_a_mismatch() {
        let (c, k) = (Path::new("c.crt"), Path::new("k.key"));
        let unknown = rustls::Error::InconsistentKeys(InconsistentKeys::Unknown);
        assert!(check_keys(Err(unknown), c, k).is_ok());
        assert!(check_keys(Ok(()), c, k).is_ok());
        let mismatch = rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch);
        assert!(matches!(
            check_keys(Err(mismatch), c, k),
            Err(CertError::Mismatch { .. })
        ));
        let other = rustls::Error::NoCertificatesPresented;
        let reason_of_other = other.to_string();
        match check_keys(Err(other), c, k) {
            Err(CertError::BadCertificate { path, reason }) => {
                assert_eq!(path, c);
                assert_eq!(reason, reason_of_other);
            }
            other => panic!("{other:?}"),
        }

        // A key that cannot tell its public key: what keys_match says.
        let dir = tempfile::tempdir().expect("tempdir");
        let p = names_pair(dir.path(), &ca(), "a", &["a.example.com"]);
        let cert = loaded(&p);
        let blind = CertifiedKey::new(
            cert.key.cert.clone(),
            Arc::new(NoPublicKey(Arc::clone(&cert.key.key))),
        );
        assert!(matches!(
            blind.keys_match(),
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown))
        ));
        assert!(check_keys(blind.keys_match(), c, k).is_ok());
    }

    /// What a client saw of a handshake.
    struct Seen {
        alpn: Option<Vec<u8>>,
        version: Option<rustls::ProtocolVersion>,
        leaf: Option<Vec<u8>>,
    }

    fn client(ca: &Ca, version: &'static rustls::SupportedProtocolVersion) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    /// One handshake over loopback; the server's outcome is awaited too.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: rustls::ClientConfig,
        name: &str,
    ) -> std::io::Result<Seen> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            acceptor.accept(tcp).await.map(drop)
        });
        let name = ServerName::try_from(name.to_string()).expect("server name");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let connect = connector.connect(name, tcp);
        let outcome = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .expect("client in time");
        let seen = outcome.map(|tls| {
            let (_, conn) = tls.get_ref();
            let seen = Seen {
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                version: conn.protocol_version(),
                leaf: conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec()),
            };
            (seen, tls)
        });
        let _server = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server in time")
            .expect("server task");
        seen.map(|(seen, _tls)| seen)
    }

    #[tokio::test]
    async fn min_version_1_3_refuses_a_tls_1_2_client_and_1_2_accepts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let p = names_pair(dir.path(), &ca, "api", &["api.example.com"]);
        let set = Arc::new(ByServerName::new(vec![loaded(&p)]).expect("set"));

        let strict = server_config(Arc::clone(&set), "1.3").expect("1.3");
        let refused = handshake(
            strict,
            client(&ca, &rustls::version::TLS12),
            "api.example.com",
        )
        .await;
        assert!(
            refused.is_err(),
            "a TLS 1.2 client got through a 1.3 listener"
        );

        let lenient = server_config(Arc::clone(&set), "1.2").expect("1.2");
        let seen = handshake(
            Arc::clone(&lenient),
            client(&ca, &rustls::version::TLS12),
            "api.example.com",
        )
        .await
        .expect("TLS 1.2 handshake");
        assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(seen.leaf.as_deref(), Some(p.cert_der.as_slice()));

        let seen = handshake(
            lenient,
            client(&ca, &rustls::version::TLS13),
            "api.example.com",
        )
        .await
        .expect("TLS 1.3 handshake");
        assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));

        for bad in ["1.1", "1.0", "", "TLS1.3"] {
            assert!(
                matches!(server_config(Arc::clone(&set), bad), Err(CertError::Version(v)) if v == bad),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn handshakes_get_the_certificate_for_their_name_or_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let wild = names_pair(dir.path(), &ca, "wild", &["*.example.com"]);
        let api = names_pair(dir.path(), &ca, "api", &["api.example.com"]);
        let set = Arc::new(ByServerName::new(vec![loaded(&wild), loaded(&api)]).expect("set"));
        let config = server_config(Arc::clone(&set), "1.2").expect("config");
        let tls13 = || client(&ca, &rustls::version::TLS13);

        // An exact name, whatever the order: the second certificate.
        let seen = handshake(Arc::clone(&config), tls13(), "api.example.com")
            .await
            .expect("api");
        assert_eq!(seen.leaf.as_deref(), Some(api.cert_der.as_slice()));
        // A wildcard.
        let seen = handshake(Arc::clone(&config), tls13(), "www.example.com")
            .await
            .expect("www");
        assert_eq!(seen.leaf.as_deref(), Some(wild.cert_der.as_slice()));

        // No server name sent: the first.
        let mut no_sni = tls13();
        no_sni.enable_sni = false;
        let seen = handshake(Arc::clone(&config), no_sni, "api.example.com")
            .await
            .expect("no SNI");
        assert_eq!(seen.leaf.as_deref(), Some(wild.cert_der.as_slice()));

        // A name nothing covers: the first, which the client refuses.
        assert!(!set.covers("other.test") && !set.covers("example.com"));
        let refused = handshake(Arc::clone(&config), tls13(), "other.test").await;
        assert!(refused.is_err());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert_eq!(name_match("example.com", "EXAMPLE.com"), Some(Match::Exact));
        assert_eq!(
            name_match("*.example.com", "a.example.com"),
            Some(Match::Wildcard)
        );
        assert_eq!(name_match("*.example.com", "example.com"), None);
        assert_eq!(name_match("*.example.com", "a.b.example.com"), None);
        assert_eq!(name_match("*.example.com", ".example.com"), None);
        assert_eq!(
            name_match("example.com", "example.com."),
            Some(Match::Exact)
        );
    }
}
