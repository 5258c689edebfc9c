//! `HP_TRUSTED_PROXY_IPS` parsing (contract §1.5): tolerant of quotes from compose files and of
//! host bits, strict about everything else, with rate-limited messages so a long bad list does not
//! flood the start-up log.

use ipnet::IpNet;
use std::net::IpAddr;

const QUOTES: &[char] = &['\'', '"', '“', '”', '‘', '’'];
const MESSAGES_PER_KIND: usize = 5;

/// The parsed list plus what should be said about it at start-up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TrustedProxies {
    pub(crate) networks: Vec<IpNet>,
    pub warnings: Vec<String>,
    pub invalid: Vec<String>,
}

pub fn parse_trusted_proxies(raw: &str) -> TrustedProxies {
    let mut out = TrustedProxies::default();
    let (mut quoted, mut masked, mut invalid) = (Vec::new(), Vec::new(), Vec::new());
    for item in raw.split(',') {
        let trimmed = item.trim();
        let unquoted = trimmed.trim_matches(QUOTES).trim();
        if unquoted.is_empty() {
            continue;
        }
        if unquoted != trimmed {
            quoted.push(unquoted.to_string());
        }
        match parse_network(unquoted) {
            Some((net, false)) => out.networks.push(net),
            Some((net, true)) => {
                masked.push(format!("{unquoted} -> {net}"));
                out.networks.push(net);
            }
            None => invalid.push(unquoted.to_string()),
        }
    }
    summarise(
        &mut out.warnings,
        "removed quotes from trusted proxy entry",
        &quoted,
    );
    summarise(
        &mut out.warnings,
        "masked host bits of trusted proxy entry",
        &masked,
    );
    summarise(
        &mut out.warnings,
        "ignoring invalid trusted proxy entry",
        &invalid,
    );
    if !raw.trim().is_empty() && out.networks.is_empty() {
        out.warnings.push(
            "HP_TRUSTED_PROXY_IPS has no valid entry: header-based client IP detection is disabled"
                .to_string(),
        );
    }
    out.invalid = invalid;
    out
}

/// Returns the network and whether host bits had to be masked off.
fn parse_network(s: &str) -> Option<(IpNet, bool)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((IpNet::from(ip), false));
    }
    let net: IpNet = s.parse().ok()?;
    let truncated = net.trunc();
    Some((truncated, truncated != net))
}

fn summarise(warnings: &mut Vec<String>, what: &str, items: &[String]) {
    for item in items.iter().take(MESSAGES_PER_KIND) {
        warnings.push(format!("{what}: {item}"));
    }
    if items.len() > MESSAGES_PER_KIND {
        warnings.push(format!(
            "{what}: {} more entries",
            items.len() - MESSAGES_PER_KIND
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(raw: &str) -> Vec<String> {
        parse_trusted_proxies(raw)
            .networks
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn contract_example_with_quotes_host_bits_and_garbage() {
        let parsed = parse_trusted_proxies("\"10.0.0.0/8, 192.168.1.7/24, bogus\"");
        let got: Vec<String> = parsed.networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(got, vec!["10.0.0.0/8", "192.168.1.0/24"]);
        assert_eq!(parsed.invalid, vec!["bogus"]);
        assert!(parsed
            .warnings
            .iter()
            .any(|w| w.contains("masked host bits")));
    }

    #[test]
    fn bare_addresses_are_single_hosts() {
        assert_eq!(nets("172.17.0.1, ::1"), vec!["172.17.0.1/32", "::1/128"]);
    }

    #[test]
    fn typographic_quotes_and_empty_items() {
        assert_eq!(
            nets("‘10.1.0.0/16’, ,“fd00::/8”"),
            vec!["10.1.0.0/16", "fd00::/8"]
        );
    }

    #[test]
    fn all_invalid_disables_detection() {
        let parsed = parse_trusted_proxies("nope");
        assert!(parsed.networks.is_empty());
        assert!(parsed.warnings.iter().any(|w| w.contains("disabled")));
    }

    #[test]
    fn empty_means_none_and_silent() {
        let parsed = parse_trusted_proxies("");
        assert!(parsed.networks.is_empty() && parsed.warnings.is_empty());
    }

    #[test]
    fn messages_are_capped() {
        let raw = (0..9)
            .map(|i| format!("bad{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let parsed = parse_trusted_proxies(&raw);
        let invalid_msgs = parsed
            .warnings
            .iter()
            .filter(|w| w.contains("invalid"))
            .count();
        assert_eq!(
            invalid_msgs, 6,
            "5 messages and one summary: {:?}",
            parsed.warnings
        );
    }
}
