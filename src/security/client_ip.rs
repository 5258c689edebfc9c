//! Client IP behind trusted proxies (contract §2.12).
//!
//! harp keeps the reference's rule (first `X-Forwarded-For` element, then `X-Real-IP`) because
//! AppAPI deployments rely on it; the weakness is documented in the README.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    if let Some(ip) = last_header(headers, "x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok())
    {
        return canonical(ip);
    }
    if let Some(ip) =
        last_header(headers, "x-real-ip").and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return canonical(ip);
    }
    peer
}

/// Contract §2.1: a repeated header's last occurrence wins.
fn last_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip("192.0.2.9".parse().unwrap(), &h, &trusted()).to_string(),
            "192.0.2.9"
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &[]).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn item38_first_forwarded_element_behind_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", " 1.2.3.4 , 10.0.0.5")]);
        let ip = client_ip("10.0.0.1".parse().unwrap(), &h, &trusted());
        assert_eq!(ip.to_string(), "1.2.3.4");
    }

    #[test]
    fn last_forwarded_header_line_wins() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted()).to_string(),
            "2.2.2.2"
        );
    }

    #[test]
    fn item39_garbage_forwarded_falls_back_to_real_ip() {
        let h = headers(&[("x-forwarded-for", "garbage"), ("x-real-ip", "5.6.7.8")]);
        let ip = client_ip("10.0.0.1".parse().unwrap(), &h, &trusted());
        assert_eq!(ip.to_string(), "5.6.7.8");
        // Neither header usable: the (trusted) peer itself.
        let h = headers(&[("x-real-ip", "nope")]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted()).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn mapped_v4_peer_matches_v4_network() {
        let peer: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(client_ip(peer, &h, &trusted()).to_string(), "9.9.9.9");
    }
}
