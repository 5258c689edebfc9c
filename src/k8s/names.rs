//! Pure conversions from AppAPI's Docker-style request fields to Kubernetes values (contract §4.8).

use std::net::IpAddr;

/// Kubernetes' limit for a DNS-1123 label (names of Deployments, Services, PVCs).
const MAX_NAME_LEN: usize = 63;
/// What an input with no usable character becomes.
const FALLBACK_NAME: &str = "exapp";
const BYTES_PER_MEBIBYTE: u64 = 1024 * 1024;
const NANO_CPUS_PER_MILLICORE: u64 = 1_000_000;

/// Docker name → DNS-1123 label: lower-case, every character outside `[a-z0-9]` → `-`, runs of
/// `-` collapsed, `-` trimmed at both ends, empty → `exapp`, cut to 63 and trimmed again.
pub(crate) fn sanitize_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_LEN * 4));
    for c in raw.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        return FALLBACK_NAME.to_string();
    }
    // Only ASCII remains, so byte slicing is on character boundaries.
    let cut = &trimmed[..trimmed.len().min(MAX_NAME_LEN)];
    cut.trim_end_matches('-').to_string()
}

/// One pod `hostAliases` entry: every hostname that maps to `ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostAlias {
    pub(crate) ip: IpAddr,
    pub(crate) hostnames: Vec<String>,
}

/// `host:ip,host2:ip2` (each split at its last `:`) grouped by IP, in first-seen order.
pub(crate) fn host_aliases(raw: &str) -> Result<Vec<HostAlias>, String> {
    let mut out: Vec<HostAlias> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, ip) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("'{entry}' is not host:ip"))?;
        let host = host.trim();
        if host.is_empty() {
            return Err(format!("'{entry}' has an empty host name"));
        }
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("'{entry}': '{ip}' is not an IP address"))?;
        match out.iter_mut().find(|a| a.ip == ip) {
            Some(alias) => {
                if !alias.hostnames.iter().any(|h| h == host) {
                    alias.hostnames.push(host.to_string());
                }
            }
            None => out.push(HostAlias {
                ip,
                hostnames: vec![host.to_string()],
            }),
        }
    }
    Ok(out)
}

/// Docker's memory limit in bytes → a Kubernetes quantity in whole `Mi`, rounded up so the pod
/// never gets less than asked; 0 means "no limit" and yields `None`.
pub(crate) fn memory_to_mebibytes(bytes: u64) -> Option<String> {
    (bytes > 0).then(|| format!("{}Mi", bytes.div_ceil(BYTES_PER_MEBIBYTE)))
}

/// Docker's `NanoCPUs` → millicores, rounded up, at least 1; 0 means "no limit" → `None`.
pub(crate) fn nano_cpus_to_millicores(nano: u64) -> Option<String> {
    (nano > 0).then(|| format!("{}m", nano.div_ceil(NANO_CPUS_PER_MILLICORE).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns1123_labels() {
        assert_eq!(sanitize_name("nc_app_context_chat"), "nc-app-context-chat");
        assert_eq!(sanitize_name("NC_App__Foo!!bar"), "nc-app-foo-bar");
        assert_eq!(sanitize_name("__lead-and-trail__"), "lead-and-trail");
        assert_eq!(sanitize_name("___"), "exapp");
        assert_eq!(sanitize_name(""), "exapp");
        assert_eq!(sanitize_name("Ünïcode.app"), "n-code-app");
    }

    #[test]
    fn long_names_are_cut_to_63_without_a_trailing_dash() {
        let raw = format!("{}_tail", "a".repeat(62));
        let name = sanitize_name(&raw);
        assert_eq!(name, "a".repeat(62));
        let name = sanitize_name(&"b".repeat(200));
        assert_eq!(name.len(), 63);
    }

    #[test]
    fn host_aliases_group_by_ip_and_split_at_the_last_colon() {
        let got = host_aliases("nc.local:10.0.0.5, cloud:10.0.0.5,db:10.0.0.6,nc.local:10.0.0.5")
            .unwrap();
        assert_eq!(
            got,
            vec![
                HostAlias {
                    ip: "10.0.0.5".parse().unwrap(),
                    hostnames: vec!["nc.local".into(), "cloud".into()],
                },
                HostAlias {
                    ip: "10.0.0.6".parse().unwrap(),
                    hostnames: vec!["db".into()],
                },
            ]
        );
        assert!(host_aliases("").unwrap().is_empty());
        assert!(host_aliases("nohost").is_err());
        assert!(host_aliases(":10.0.0.1").is_err());
        assert!(host_aliases("h:not-an-ip").is_err());
    }

    #[test]
    fn resources_round_up() {
        assert_eq!(memory_to_mebibytes(0), None);
        assert_eq!(memory_to_mebibytes(1).as_deref(), Some("1Mi"));
        assert_eq!(
            memory_to_mebibytes(512 * 1024 * 1024).as_deref(),
            Some("512Mi")
        );
        assert_eq!(
            memory_to_mebibytes(512 * 1024 * 1024 + 1).as_deref(),
            Some("513Mi")
        );
        assert_eq!(nano_cpus_to_millicores(0), None);
        assert_eq!(nano_cpus_to_millicores(1).as_deref(), Some("1m"));
        assert_eq!(
            nano_cpus_to_millicores(500_000_000).as_deref(),
            Some("500m")
        );
        assert_eq!(
            nano_cpus_to_millicores(1_500_000_001).as_deref(),
            Some("1501m")
        );
    }
}
