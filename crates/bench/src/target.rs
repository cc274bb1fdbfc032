//! Where the bench connects: URL parsing, the loopback-only rule, the
//! `topics` query parameter and the source addresses connections are
//! spread over.
//!
//! Nothing here touches the network except [`Target::resolve`], and that
//! only looks a name up when the target is not loopback (which needs
//! `--allow-remote`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Context};

/// A parsed `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// `wss://` or `https://`: TLS over the TCP connection (see
    /// [`crate::tls`]).
    pub tls: bool,
    /// The host without brackets: a name or an IP literal.
    pub host: String,
    pub port: u16,
    /// The request target: path and query, e.g. `/ws?topics=a`.
    pub path_and_query: String,
    /// The `Host` header value.
    pub host_header: String,
}

impl Target {
    /// Parses `url`, whose scheme must be `scheme` (`ws` or `http`) or its
    /// TLS form (`wss` or `https`).
    pub fn parse(url: &str, scheme: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        let secure = format!("{scheme}s");
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case(scheme) => false,
            Some(s) if s.eq_ignore_ascii_case(&secure) => true,
            _ => bail!("`{url}` must start with {scheme}:// or {secure}://"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}` has no host"))?;
        if authority.as_str().contains('@') {
            bail!("`{url}`: user info in the URL is not supported");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            bail!("`{url}` has no host");
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let path_and_query = if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query
        };
        Ok(Target {
            url: url.to_string(),
            tls,
            host_header: authority.as_str().to_string(),
            host,
            port,
            path_and_query,
        })
    }

    /// The IP the host names without a lookup: a literal, or `localhost`.
    fn literal_ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.host.parse().ok()
    }

    /// Whether the target is on this machine: `localhost`, an address in
    /// 127.0.0.0/8, or `::1`.
    pub fn is_loopback(&self) -> bool {
        match self.literal_ip() {
            Some(IpAddr::V4(ip)) => ip.is_loopback(),
            Some(IpAddr::V6(ip)) => ip == Ipv6Addr::LOCALHOST,
            None => false,
        }
    }

    /// Refuses a target that is not on this machine unless `allow_remote`.
    pub fn check_local(&self, option: &str, allow_remote: bool) -> anyhow::Result<()> {
        if allow_remote || self.is_loopback() {
            return Ok(());
        }
        bail!(
            "{option} `{}`: the host must be localhost, an address in 127.0.0.0/8 or ::1 \
             (pass --allow-remote to load-test another machine you are responsible for)",
            self.url
        )
    }

    /// The socket address to connect to. Looks the host up only when it is
    /// neither an IP literal nor `localhost`.
    pub async fn resolve(&self) -> anyhow::Result<SocketAddr> {
        if let Some(ip) = self.literal_ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve `{}`", self.host))?
            .next()
            .with_context(|| format!("`{}` has no address", self.host))
    }

    /// This URL with `topics=<topic>` in its query, unless the query already
    /// has a `topics` parameter.
    pub fn with_topic(mut self, topic: &str) -> Target {
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path_and_query.as_str(), None),
        };
        let has_topics = query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.split('=').next() == Some("topics"))
        });
        if !has_topics {
            self.path_and_query = match query {
                Some("") | None => format!("{path}?topics={topic}"),
                Some(q) => format!("{path}?{q}&topics={topic}"),
            };
        }
        self
    }
}

/// How many source addresses to use for `conns` connections by default:
/// one per 20,000, well under one address's ~28,000 ephemeral ports.
pub fn default_sources(conns: usize) -> usize {
    conns.div_ceil(20_000).max(1)
}

/// The local addresses connections are bound to, round robin: 127.0.0.1,
/// 127.0.0.2, ... for an IPv4 loopback target; `::1` for `::1`; none (the
/// kernel picks) for a remote target, where loopback sources cannot reach.
pub fn source_addresses(target: SocketAddr, count: usize) -> Vec<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (1..=count)
            .map(|i| {
                let [a, b] = u16::try_from(i).unwrap_or(u16::MAX).to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
            })
            .collect(),
        IpAddr::V6(ip) if ip == Ipv6Addr::LOCALHOST => vec![IpAddr::V6(ip)],
        _ => Vec::new(),
    }
}

/// Checks a topic name; the bench keeps to characters that need no
/// escaping in a query string or in JSON.
pub fn check_topic(topic: &str) -> anyhow::Result<()> {
    let ok = !topic.is_empty()
        && topic.len() <= 128
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("--topic `{topic}`: use 1 to 128 of A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::plan;

    #[test]
    fn parses_ws_and_http_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/ws/echo", "ws").expect("parse");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path_and_query, "/ws/echo");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::parse("ws://[::1]:9/ws?a=b", "ws").expect("parse");
        assert_eq!(t.host, "::1");
        assert_eq!(t.path_and_query, "/ws?a=b");
        assert_eq!(t.host_header, "[::1]:9");
        let t = Target::parse("http://localhost/api/publish", "http").expect("parse");
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
        let t = Target::parse("ws://localhost:1", "ws").expect("parse");
        assert_eq!(t.path_and_query, "/");
        assert!(Target::parse("http://127.0.0.1/ws", "ws").is_err());
        assert!(Target::parse("https://127.0.0.1/ws", "ws").is_err());
        assert!(Target::parse("wss://127.0.0.1/api", "http").is_err());
        assert!(!t.tls);
        let t = Target::parse("wss://127.0.0.1/ws", "ws").expect("wss");
        assert!(t.tls);
        assert_eq!((t.port, t.host_header.as_str()), (443, "127.0.0.1"));
        let t = Target::parse("WSS://localhost:8443/ws/echo", "ws").expect("wss");
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("localhost", 8443));
        let t = Target::parse("https://[::1]:9/api/publish", "http").expect("https");
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert!(Target::parse("not a url", "ws").is_err());
    }

    #[test]
    fn only_loopback_targets_are_local() {
        for ok in [
            "ws://localhost/ws",
            "ws://LOCALHOST:1/ws",
            "ws://127.0.0.1/ws",
            "ws://127.0.0.2:8080/ws",
            "ws://127.255.255.254/ws",
            "ws://[::1]:8080/ws",
        ] {
            let t = Target::parse(ok, "ws").expect(ok);
            assert!(t.is_loopback(), "{ok}");
            t.check_local("--url", false).expect(ok);
        }
        for bad in [
            "ws://10.0.0.1/ws",
            "ws://example.com/ws",
            "ws://192.168.1.1/ws",
            "ws://0.0.0.0/ws",
            "ws://[::2]/ws",
            "ws://localhost.example.com/ws",
            "ws://128.0.0.1/ws",
        ] {
            let t = Target::parse(bad, "ws").expect(bad);
            assert!(!t.is_loopback(), "{bad}");
            let e = t.check_local("--url", false).expect_err(bad).to_string();
            assert!(e.contains("--allow-remote"), "{e}");
            t.check_local("--url", true).expect(bad);
        }
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        for url in ["ws://10.0.0.1:8080/ws/echo", "ws://example.com/ws/echo"] {
            let e = plan(&["echo", "--url", url]).expect_err(url);
            assert!(format!("{e:#}").contains("--allow-remote"), "{e:#}");
            // Accepted when allowed; only parsing and checks run here, no
            // connection is made.
            plan(&["--allow-remote", "echo", "--url", url]).expect(url);
            plan(&["idle", "--url", url, "--allow-remote"]).expect(url);
        }
        for url in [
            "ws://localhost:1/ws/echo",
            "ws://127.0.0.2:1/x",
            "ws://[::1]:1/x",
        ] {
            plan(&["echo", "--url", url]).expect(url);
        }
        // The publish API is checked too.
        let e = plan(&["fanout", "--api", "http://10.0.0.1/api/publish"]).expect_err("api");
        assert!(format!("{e:#}").contains("--api"), "{e:#}");
        plan(&[
            "fanout",
            "--allow-remote",
            "--api",
            "http://example.com/api/publish",
        ])
        .expect("allowed");
    }

    #[test]
    fn topics_are_added_unless_present() {
        let t = |u: &str| Target::parse(u, "ws").expect(u).with_topic("bench");
        assert_eq!(t("ws://h/ws").path_and_query, "/ws?topics=bench");
        assert_eq!(t("ws://h/ws?").path_and_query, "/ws?topics=bench");
        assert_eq!(t("ws://h/ws?x=1").path_and_query, "/ws?x=1&topics=bench");
        assert_eq!(t("ws://h/ws?topics=a").path_and_query, "/ws?topics=a");
        assert_eq!(t("ws://h/ws?x&topics=a").path_and_query, "/ws?x&topics=a");
        assert_eq!(
            t("ws://h/ws?mytopics=a").path_and_query,
            "/ws?mytopics=a&topics=bench"
        );
    }

    #[test]
    fn sources_spread_over_loopback_addresses() {
        assert_eq!(default_sources(1), 1);
        assert_eq!(default_sources(20_000), 1);
        assert_eq!(default_sources(20_001), 2);
        assert_eq!(default_sources(45_000), 3);
        let v4: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let got = source_addresses(v4, 3);
        assert_eq!(
            got,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
                .map(|s| s.parse::<IpAddr>().expect("ip"))
                .to_vec()
        );
        let v6: SocketAddr = "[::1]:80".parse().expect("addr");
        assert_eq!(
            source_addresses(v6, 3),
            vec!["::1".parse::<IpAddr>().expect("ip")]
        );
        let remote: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert!(source_addresses(remote, 3).is_empty());
    }

    #[test]
    fn topic_names_are_checked() {
        check_topic("bench.a-b_1").expect("ok");
        for bad in ["", "a b", "a&b", "a\"b", "ä"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
    }
}
