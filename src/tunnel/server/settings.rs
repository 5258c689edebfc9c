//! The FRP server's effective settings: HaRP's generated `frps.toml` semantics (contract
//! §1.10) from the environment, or — when the admin mounted one — a user-supplied frps.toml
//! (contract §1.8, checklist 22) read *instead*, with frps's own defaults for absent keys.
//! Keys harp cannot honour are logged and ignored rather than stopping the proxy.

use super::policy::{HARP_ALLOW, MAX_PORTS_PER_CLIENT};
use crate::config::BindAddr;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates are required and verified against this CA when set.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrpSettings {
    pub bind: BindAddr,
    pub tls: Option<TlsFiles>,
    /// Plaintext clients are closed at the first byte.
    pub force_tls: bool,
    /// Empty = every port allowed (frps default).
    pub(crate) allow_ports: Vec<RangeInclusive<u16>>,
    /// 0 = unlimited (frps default).
    pub max_ports_per_client: usize,
    pub(crate) proxy_bind_addr: IpAddr,
    /// frp's `auth.token`: privilege key and stream-encryption password (HaRP: empty).
    pub(crate) auth_token: String,
    /// The user file these came from, if any.
    pub source: Option<PathBuf>,
}

impl FrpSettings {
    /// HaRP's generated configuration: listen on `bind`, with TLS from the certificates in
    /// `frp_certs` (`None`: TLS disabled, HP_FRP_DISABLE_TLS).
    pub fn harp_defaults(bind: BindAddr, frp_certs: Option<&Path>) -> FrpSettings {
        FrpSettings {
            bind,
            tls: frp_certs.map(|dir| TlsFiles {
                cert: dir.join("server.crt"),
                key: dir.join("server.key"),
                ca: Some(dir.join("ca.crt")),
            }),
            force_tls: frp_certs.is_some(),
            allow_ports: HARP_ALLOW.to_vec(),
            max_ports_per_client: MAX_PORTS_PER_CLIENT,
            proxy_bind_addr: IpAddr::from([127, 0, 0, 1]),
            auth_token: String::new(),
            source: None,
        }
    }

    /// The user file at `path` when it exists, else `harp_defaults`.
    pub fn load(path: &Path, harp_defaults: FrpSettings) -> Result<FrpSettings, SettingsError> {
        if !path.is_file() {
            return Ok(harp_defaults);
        }
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let s = Self::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        tracing::warn!(path = %path.display(), "using the user-supplied frps.toml instead of HaRP's FRP server settings");
        Ok(FrpSettings {
            source: Some(path.to_path_buf()),
            ..s
        })
    }

    pub fn parse(text: &str) -> Result<FrpSettings, String> {
        let mut t: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut ignored = Vec::new();
        let host = take_str(&mut t, "bindAddr")?.unwrap_or_else(|| "0.0.0.0".into());
        let port = match t.remove("bindPort") {
            None => 7000,
            Some(v) => v
                .as_integer()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("bindPort must be a port number")?,
        };
        let proxy_bind_addr = match take_str(&mut t, "proxyBindAddr")? {
            Some(a) => a
                .parse()
                .map_err(|_| format!("proxyBindAddr {a:?} is not an IP address"))?,
            None => host.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        };
        let max_ports_per_client = match t.remove("maxPortsPerClient") {
            None => 0,
            Some(v) => v
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("maxPortsPerClient must be a non-negative integer")?,
        };
        let allow_ports = match t.remove("allowPorts") {
            None => Vec::new(),
            Some(v) => parse_ranges(&v)?,
        };
        let mut auth_token = String::new();
        if let Some(toml::Value::Table(mut auth)) = t.remove("auth") {
            if let Some(tok) = auth.remove("token") {
                auth_token = tok
                    .as_str()
                    .ok_or("auth.token must be a string")?
                    .to_string();
            }
            match auth.remove("method").as_ref().and_then(|m| m.as_str()) {
                None | Some("token") => {}
                Some(other) => {
                    return Err(format!(
                        "auth.method {other:?} is not supported (only token)"
                    ))
                }
            }
            ignored.extend(auth.keys().map(|k| format!("auth.{k}")));
        }
        let (mut tls, mut force_tls) = (None, false);
        if let Some(toml::Value::Table(mut transport)) = t.remove("transport") {
            if let Some(toml::Value::Table(mut tt)) = transport.remove("tls") {
                force_tls = tt
                    .remove("force")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let get = |tt: &mut toml::Table, k: &str| -> Result<Option<PathBuf>, String> {
                    Ok(take_str(tt, k)?.map(PathBuf::from))
                };
                let cert = get(&mut tt, "certFile")?;
                let key = get(&mut tt, "keyFile")?;
                let ca = get(&mut tt, "trustedCaFile")?;
                match (cert, key) {
                    (Some(cert), Some(key)) => tls = Some(TlsFiles { cert, key, ca: ca.clone() }),
                    (None, None) if ca.is_none() => {}
                    _ => {
                        return Err("transport.tls needs certFile and keyFile (harp does not generate a throwaway server certificate)".into())
                    }
                }
                // frps forces TLS implicitly once client certificates are verified.
                force_tls |= ca.is_some();
                ignored.extend(tt.keys().map(|k| format!("transport.tls.{k}")));
            }
            ignored.extend(transport.keys().map(|k| format!("transport.{k}")));
        }
        // The login check runs in-process (contract decision 2); logging goes to harp's log.
        t.remove("httpPlugins");
        t.remove("log");
        ignored.extend(t.keys().cloned());
        if !ignored.is_empty() {
            tracing::warn!(
                "frps.toml keys not supported by harp and ignored: {}",
                ignored.join(", ")
            );
        }
        if force_tls && tls.is_none() {
            return Err(
                "transport.tls.force = true needs transport.tls.certFile and keyFile".into(),
            );
        }
        Ok(FrpSettings {
            bind: BindAddr { host, port },
            tls,
            force_tls,
            allow_ports,
            max_ports_per_client,
            proxy_bind_addr,
            auth_token,
            source: None,
        })
    }
}

fn take_str(t: &mut toml::Table, key: &str) -> Result<Option<String>, String> {
    match t.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn parse_ranges(v: &toml::Value) -> Result<Vec<RangeInclusive<u16>>, String> {
    let bad = || "allowPorts entries must be { start = N, end = M } or { single = N }".to_string();
    let port = |v: Option<&toml::Value>| -> Option<u16> {
        v?.as_integer().and_then(|n| u16::try_from(n).ok())
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            let e = e.as_table().ok_or_else(bad)?;
            if let Some(single) = port(e.get("single")) {
                return Ok(single..=single);
            }
            match (port(e.get("start")), port(e.get("end"))) {
                (Some(a), Some(b)) if a <= b => Ok(a..=b),
                _ => Err(bad()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harp_generated_frps_toml_round_trips_to_harp_defaults() {
        let s = FrpSettings::parse(
            r#"
bindAddr = "0.0.0.0"
bindPort = 8782
proxyBindAddr = "127.0.0.1"
transport.tls.force = true
transport.tls.certFile = "/certs/frp/server.crt"
transport.tls.keyFile = "/certs/frp/server.key"
transport.tls.trustedCaFile = "/certs/frp/ca.crt"
maxPortsPerClient = 1
allowPorts = [ { start = 23000, end = 23999 }, { start = 24000, end = 24099 } ]
log.to = "/run/harp/frps.log"
log.level = "info"
log.maxDays = 3
[[httpPlugins]]
name = "harp-login"
addr = "127.0.0.1:8200"
path = "/frp_handler"
ops = ["Login"]
"#,
        )
        .unwrap();
        assert_eq!(
            s.bind,
            BindAddr {
                host: "0.0.0.0".into(),
                port: 8782
            }
        );
        assert!(s.force_tls);
        assert_eq!(s.tls.unwrap().ca, Some(PathBuf::from("/certs/frp/ca.crt")));
        assert_eq!(s.allow_ports, vec![23000..=23999, 24000..=24099]);
        assert_eq!(s.max_ports_per_client, 1);
        assert_eq!(s.proxy_bind_addr, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn harp_defaults_follow_the_tls_switch_and_a_missing_file_keeps_them() {
        let bind = BindAddr {
            host: "0.0.0.0".into(),
            port: 8782,
        };
        let with_tls = FrpSettings::harp_defaults(bind.clone(), Some(Path::new("/c/frp")));
        assert!(with_tls.force_tls);
        assert_eq!(
            with_tls.tls.as_ref().unwrap().ca,
            Some("/c/frp/ca.crt".into())
        );
        let plain = FrpSettings::harp_defaults(bind, None);
        assert_eq!((plain.tls.is_none(), plain.force_tls), (true, false));
        let kept = FrpSettings::load(Path::new("/nonexistent/frps.toml"), plain.clone()).unwrap();
        assert_eq!(kept, plain);
    }

    #[test]
    fn frps_defaults_and_errors() {
        let s = FrpSettings::parse("auth.token = \"s3cret\"\nwebServer.port = 7500\n").unwrap();
        assert_eq!(s.bind.port, 7000);
        assert_eq!(
            (s.tls, s.force_tls, s.max_ports_per_client),
            (None, false, 0)
        );
        assert!(s.allow_ports.is_empty());
        assert_eq!(s.auth_token, "s3cret");
        assert!(FrpSettings::parse("bindPort = 70000").is_err());
        assert!(FrpSettings::parse("transport.tls.force = true").is_err());
        assert!(FrpSettings::parse("allowPorts = [ { start = 5, end = 1 } ]").is_err());
        assert!(FrpSettings::parse("auth.method = \"oidc\"").is_err());
        assert!(FrpSettings::parse("not toml [").is_err());
    }
}
