//! The client address behind a connection: the TCP peer, or what trusted
//! proxies say in `X-Forwarded-For`.

use std::net::IpAddr;

use crate::config::schema::IpNetwork;

/// Whether an address is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNetwork]) -> bool {
    trusted.iter().any(|n| n.0.contains(&ip))
}

/// The client address: the TCP peer, or, when the peer is a trusted proxy,
/// the right-most address in `X-Forwarded-For` that is not one.
pub fn client_ip(peer: IpAddr, headers: &hyper::HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(*ip, trusted);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // A header value that is not visible ASCII is one malformed entry.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(v) => v.split(',').map(|hop| Some(hop.trim())).collect(),
            Err(_) => vec![None],
        })
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.and_then(|h| h.parse::<IpAddr>().ok()) {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed hop ends what can be believed.
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNetwork> {
        list.iter()
            .map(|s| IpNetwork(s.parse().expect("cidr")))
            .collect()
    }

    fn headers(xff: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("header"));
        h
    }

    #[test]
    fn untrusted_peers_cannot_claim_another_address() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        let ip = client_ip(peer, &headers("1.2.3.4"), &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, peer);
    }

    #[test]
    fn trusted_proxy_chain_yields_the_first_untrusted_hop() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let ip = client_ip(
            peer,
            &headers("6.6.6.6, 1.2.3.4, 10.0.0.2"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn garbage_hops_stop_the_walk() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let ip = client_ip(peer, &headers("1.2.3.4, nonsense"), &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, peer);
    }

    #[test]
    fn a_header_that_is_not_ascii_stops_the_walk_like_any_malformed_hop() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut h = headers("1.2.3.4");
        h.append(
            "x-forwarded-for",
            hyper::header::HeaderValue::from_bytes(b"10.0.0.3\xff").expect("obs-text"),
        );
        h.append("x-forwarded-for", "10.0.0.2".parse().expect("header"));
        // Before, the value was skipped and the walk went on to 1.2.3.4.
        let ip = client_ip(peer, &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().expect("ip"));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// An entry as a proxy (or a client) may write it.
        #[derive(Debug, Clone)]
        enum Hop {
            Ip(IpAddr, &'static str),
            Garbage(String),
        }

        fn address() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                // Inside and outside the trusted networks below.
                (0u8..4).prop_map(|d| IpAddr::from([10, 0, 0, d])),
                (0u8..4).prop_map(|d| IpAddr::from([203, 0, 113, d])),
                (0u16..4).prop_map(|d| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, d])),
                (0u16..4).prop_map(|d| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, d])),
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u16; 8]>().prop_map(IpAddr::from),
            ]
        }

        fn hop() -> impl Strategy<Value = Hop> {
            prop_oneof![
                4 => (address(), prop::sample::select(vec!["", " ", "  ", "\t"]))
                    .prop_map(|(ip, pad)| Hop::Ip(ip, pad)),
                1 => prop_oneof![
                    Just("unknown".to_string()),
                    Just(String::new()),
                    Just("1.2.3.4:80".to_string()),
                    Just("[::1]".to_string()),
                    Just("10.0.0.1/8".to_string()),
                    "[ -~]{0,12}",
                ]
                .prop_map(Hop::Garbage),
            ]
        }

        fn write(hops: &[Hop]) -> String {
            hops.iter()
                .map(|h| match h {
                    Hop::Ip(ip, pad) => format!("{pad}{ip}{pad}"),
                    Hop::Garbage(g) => g.clone(),
                })
                .collect::<Vec<_>>()
                .join(",")
        }

        fn trusted() -> Vec<IpNetwork> {
            nets(&["10.0.0.0/8", "fd00::/8"])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The client is the peer or an address the headers list; it
            /// is the peer when the peer is not trusted; and it is the
            /// entry the documented walk (right to left over trusted
            /// entries, stopping at a malformed one) ends on.
            #[test]
            fn the_client_is_the_peer_or_the_entry_the_walk_ends_on(
                peer in address(),
                values in prop::collection::vec(prop::collection::vec(hop(), 0..5), 0..4),
                raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
            ) {
                let trusted = trusted();
                let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.0.contains(ip));
                let mut h = hyper::HeaderMap::new();
                // The entries in order; `None` is a malformed one.
                let mut entries: Vec<Option<IpAddr>> = Vec::new();
                for value in &values {
                    let text = write(value);
                    let Ok(v) = hyper::header::HeaderValue::from_str(&text) else { continue };
                    h.append("x-forwarded-for", v);
                    entries.extend(text.split(',').map(|e| e.trim().parse().ok()));
                }
                if let Some(bytes) = raw {
                    if let Ok(v) = hyper::header::HeaderValue::from_bytes(&bytes) {
                        match v.to_str() {
                            Ok(text) => entries.extend(text.split(',').map(|e| e.trim().parse().ok())),
                            Err(_) => entries.push(None),
                        }
                        h.append("x-forwarded-for", v);
                    }
                }
                let got = client_ip(peer, &h, &trusted);

                let listed = entries.iter().flatten().any(|ip| *ip == got);
                prop_assert!(got == peer || listed, "{got} is neither the peer nor listed");
                if !is_trusted(&peer) {
                    prop_assert_eq!(got, peer);
                } else {
                    let mut expected = peer;
                    for entry in entries.iter().rev() {
                        let Some(ip) = entry else { break };
                        expected = *ip;
                        if !is_trusted(ip) {
                            break;
                        }
                    }
                    prop_assert_eq!(got, expected);
                }
            }
        }
    }
}
