//! `host:port` bind strings: IPv4 literals, hostnames (resolved when binding) and `[v6]:port`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAddr {
    pub host: String,
    pub port: u16,
}

impl BindAddr {
    pub fn parse(value: &str) -> Result<BindAddr, String> {
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{value}' has an unclosed '['"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("'{value}' needs a port after ']'"))?;
            (host, port)
        } else {
            let (host, port) = value
                .rsplit_once(':')
                .ok_or_else(|| format!("'{value}' is not host:port"))?;
            if host.contains(':') {
                return Err(format!("'{value}': write IPv6 addresses as [addr]:port"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(format!("'{value}' has no host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("'{value}' has an invalid port '{port}'"))?;
        Ok(BindAddr {
            host: host.to_string(),
            port,
        })
    }

    /// The address clients on this machine should dial (`0.0.0.0` → `127.0.0.1`).
    pub fn local_dial_host(&self) -> &str {
        match self.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            h => h,
        }
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ipv4_hostname_and_bracketed_v6() {
        assert_eq!(BindAddr::parse("0.0.0.0:8780").unwrap().port, 8780);
        assert_eq!(
            BindAddr::parse("appapi-harp:8780").unwrap().host,
            "appapi-harp"
        );
        let v6 = BindAddr::parse("[::1]:8782").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8782));
        assert_eq!(v6.to_string(), "[::1]:8782");
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "8780",
            ":8780",
            "host:",
            "host:99999",
            "::1:80",
            "[::1]8780",
            "[::1",
        ] {
            assert!(BindAddr::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
