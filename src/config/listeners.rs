//! The listeners in force: `[[server.listeners]]`, or the one `listen`
//! address serving everything over plain HTTP; and their checks.

use std::fmt;

use super::schema::{ListenerConfig, ServerConfig, Service, TlsConfig};

/// The name of the listener `listen` makes when `listeners` is empty.
pub const MAIN: &str = "main";

/// The most characters in a listener's `name` (systemd's limit for a
/// `FileDescriptorName=` is 255).
const MAX_NAME: usize = 64;

/// The TLS versions `min_version` may name.
pub const TLS_VERSIONS: [&str; 2] = ["1.2", "1.3"];

/// The listeners to run, in file order, each with its name filled in.
pub fn effective(server: &ServerConfig) -> Vec<ListenerConfig> {
    if server.listeners.is_empty() {
        return vec![ListenerConfig {
            name: MAIN.into(),
            address: server.listen,
            serve: Service::all(),
            tls: None,
            proxy_protocol: false,
        }];
    }
    server
        .listeners
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if l.name.is_empty() {
                l.name = l.address.to_string();
            }
            l
        })
        .collect()
}

/// Problems with `[[server.listeners]]`, as (key path, message).
pub fn check(server: &ServerConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let named = effective(server);
    for (i, l) in server.listeners.iter().enumerate() {
        let at = format!("server.listeners[{i}]");
        if !l.name.is_empty() && !valid_name(&l.name) {
            out.push((
                format!("{at}.name"),
                format!(
                    "must be 1 to {MAX_NAME} letters, digits, `-`, `_` or `.` (it may name a systemd socket)"
                ),
            ));
        }
        // Port 0 (any free port) may be given more than once.
        if let Some(j) = server.listeners[..i]
            .iter()
            .position(|o| o.address == l.address && l.address.port() != 0)
        {
            out.push((
                format!("{at}.address"),
                format!(
                    "{} is already the address of server.listeners[{j}]",
                    l.address
                ),
            ));
        }
        // (A name taken from a repeated address was reported as the address.)
        let repeated = !l.name.is_empty() || l.address.port() == 0;
        if let Some(j) = named[..i]
            .iter()
            .position(|o| o.name == named[i].name)
            .filter(|_| repeated)
        {
            out.push((
                format!("{at}.name"),
                format!("`{}` already names server.listeners[{j}]", named[i].name),
            ));
        }
        if l.serve.is_empty() {
            out.push((
                format!("{at}.serve"),
                format!("must name at least one of: {}", service_names()),
            ));
        }
        if l.proxy_protocol && server.trusted_proxies.is_empty() {
            out.push((
                format!("{at}.proxy_protocol"),
                "needs server.trusted_proxies: the addresses allowed to send the PROXY header"
                    .into(),
            ));
        }
        if let Some(tls) = &l.tls {
            out.extend(
                check_tls(tls)
                    .into_iter()
                    .map(|(key, m)| (format!("{at}.tls{key}"), m)),
            );
        }
    }
    out
}

/// Problems with one `tls` table, as (key suffix, message).
fn check_tls(tls: &TlsConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match (&tls.cert_file, &tls.key_file, tls.certs.is_empty()) {
        (Some(_), Some(_), true) | (None, None, false) => {}
        (Some(_), Some(_), false) => out.push((
            ".certs".into(),
            "give either cert_file and key_file, or certs, not both".into(),
        )),
        (None, None, true) => out.push((
            String::new(),
            "needs cert_file and key_file (or certs = [{ cert_file, key_file }, ...])".into(),
        )),
        (Some(_), None, _) => out.push((".cert_file".into(), "needs a key_file".into())),
        (None, Some(_), _) => out.push((".key_file".into(), "needs a cert_file".into())),
    }
    if !TLS_VERSIONS.contains(&tls.min_version.as_str()) {
        out.push((
            ".min_version".into(),
            format!("must be one of: {}", TLS_VERSIONS.join(", ")),
        ));
    }
    out
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn service_names() -> String {
    Service::ALL.map(Service::name).join(", ")
}

/// What a listener serves, as a set that is cheap to test per request.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Services(u8);

impl Services {
    pub fn of(list: &[Service]) -> Self {
        Services(list.iter().fold(0, |bits, s| bits | Self::bit(*s)))
    }

    pub fn everything() -> Self {
        Self::of(&Service::ALL)
    }

    pub fn contains(self, s: Service) -> bool {
        self.0 & Self::bit(s) != 0
    }

    fn bit(s: Service) -> u8 {
        1 << (s as u8)
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Service::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Service::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Services({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn listener(address: &str, serve: &[Service]) -> ListenerConfig {
        ListenerConfig {
            name: String::new(),
            address: address.parse::<SocketAddr>().expect("address"),
            serve: serve.to_vec(),
            tls: None,
            proxy_protocol: false,
        }
    }

    fn paths(server: &ServerConfig) -> Vec<String> {
        check(server).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn without_listeners_listen_serves_everything() {
        let server = ServerConfig::default();
        let l = effective(&server);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, MAIN);
        assert_eq!(l[0].address, server.listen);
        assert_eq!(Services::of(&l[0].serve), Services::everything());
        assert!(check(&server).is_empty());
    }

    #[test]
    fn listeners_are_named_by_their_address_by_default() {
        let server = ServerConfig {
            listeners: vec![
                listener("127.0.0.1:1", &[Service::Ws]),
                ListenerConfig {
                    name: "internal".into(),
                    ..listener("127.0.0.1:2", &[Service::Metrics])
                },
            ],
            ..ServerConfig::default()
        };
        let names: Vec<String> = effective(&server).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["127.0.0.1:1", "internal"]);
        assert!(check(&server).is_empty());
    }

    #[test]
    fn duplicates_empty_serve_and_bad_names_are_refused() {
        let server = ServerConfig {
            listeners: vec![
                ListenerConfig {
                    name: "a".into(),
                    ..listener("127.0.0.1:1", &[Service::Ws])
                },
                ListenerConfig {
                    name: "a".into(),
                    ..listener("127.0.0.1:1", &[])
                },
                ListenerConfig {
                    name: "no:colons".into(),
                    ..listener("127.0.0.1:3", &[Service::Ws])
                },
            ],
            ..ServerConfig::default()
        };
        assert_eq!(
            paths(&server),
            [
                "server.listeners[1].address",
                "server.listeners[1].name",
                "server.listeners[1].serve",
                "server.listeners[2].name",
            ]
        );
    }

    #[test]
    fn proxy_protocol_needs_trusted_proxies() {
        let mut server = ServerConfig {
            listeners: vec![ListenerConfig {
                proxy_protocol: true,
                ..listener("127.0.0.1:1", &[Service::Ws])
            }],
            ..ServerConfig::default()
        };
        assert_eq!(paths(&server), ["server.listeners[0].proxy_protocol"]);
        server.trusted_proxies = vec![super::super::schema::IpNetwork(
            "10.0.0.0/8".parse().expect("net"),
        )];
        assert!(check(&server).is_empty());
    }

    #[test]
    fn tls_needs_one_certificate_form_and_a_known_version() {
        let tls = |cert: Option<&str>, key: Option<&str>, certs: usize, v: &str| TlsConfig {
            cert_file: cert.map(Into::into),
            key_file: key.map(Into::into),
            certs: (0..certs)
                .map(|_| super::super::schema::CertFiles {
                    cert_file: "c".into(),
                    key_file: "k".into(),
                })
                .collect(),
            min_version: v.into(),
        };
        let suffixes =
            |t: TlsConfig| -> Vec<String> { check_tls(&t).into_iter().map(|(k, _)| k).collect() };
        assert!(suffixes(tls(Some("c"), Some("k"), 0, "1.2")).is_empty());
        assert!(suffixes(tls(None, None, 2, "1.3")).is_empty());
        assert_eq!(suffixes(tls(Some("c"), Some("k"), 1, "1.2")), [".certs"]);
        assert_eq!(suffixes(tls(None, None, 0, "1.2")), [""]);
        assert_eq!(suffixes(tls(Some("c"), None, 0, "1.2")), [".cert_file"]);
        assert_eq!(suffixes(tls(None, Some("k"), 0, "1.2")), [".key_file"]);
        assert_eq!(
            suffixes(tls(Some("c"), Some("k"), 0, "1.1")),
            [".min_version"]
        );
    }

    #[test]
    fn services_test_membership() {
        let s = Services::of(&[Service::Metrics, Service::Api]);
        assert!(s.contains(Service::Metrics) && s.contains(Service::Api));
        assert!(!s.contains(Service::Ws) && !s.contains(Service::Health));
        assert_eq!(s.to_string(), "metrics,api");
    }
}
