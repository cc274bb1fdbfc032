//! The client address behind a connection: the TCP peer, or what trusted
//! proxies say in `X-Forwarded-For`.

use std::net::IpAddr;

use crate::config::schema::IpNetwork;

/// The client address: the TCP peer, or, when the peer is a trusted proxy,
/// the right-most address in `X-Forwarded-For` that is not one.
pub fn client_ip(peer: IpAddr, headers: &hyper::HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.0.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed hop ends what can be believed.
            Err(_) => break,
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
}
