//! The frpc TOML subset `harp tunnel` accepts; any other key is refused by name so a config
//! that relies on an unsupported frpc feature fails loudly instead of half-working.
//!
//! [`ClientConfig::from_env`] builds the same configuration from an ExApp container's
//! environment (`harp tunnel --from-env`, contract §5.2), replacing the frpc.toml that HaRP's
//! ExApp `start.sh` writes.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    server_addr: Option<String>,
    server_port: Option<u16>,
    login_fail_exit: Option<bool>,
    #[serde(default)]
    transport: RawTransport,
    #[serde(default)]
    metadatas: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    log: RawLog,
    #[serde(default)]
    proxies: Vec<RawProxy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTransport {
    #[serde(default)]
    tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTls {
    enable: Option<bool>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    server_name: Option<String>,
}

/// Accepted for compatibility with configs written for frpc; harp logs to stderr.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[allow(dead_code)]
    level: Option<String>,
    #[allow(dead_code)]
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProxy {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    remote_port: u16,
    #[serde(rename = "localIP")]
    local_ip: Option<String>,
    local_port: Option<u16>,
    plugin: Option<RawPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPlugin {
    #[serde(rename = "type")]
    kind: String,
    unix_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Tcp(String, u16),
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub name: String,
    pub remote_port: u16,
    pub local: Local,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub(crate) cert_key: Option<(PathBuf, PathBuf)>,
    pub(crate) server_name: String,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) server_addr: String,
    pub(crate) server_port: u16,
    /// frpc's default is true: a failed first login ends the client.
    pub(crate) login_fail_exit: bool,
    pub tls: Option<TlsFiles>,
    pub token: Option<String>,
    pub proxies: Vec<ProxyConfig>,
}

/// Where an ExApp listens when AppAPI runs it behind HaRP (contract §5.2).
pub const EXAPP_SOCKET: &str = "/tmp/exapp.sock";
/// The FRP certificates AppAPI's `install_certificates` copies into an ExApp container.
pub const EXAPP_FRP_CERTS_DIR: &str = "/certs/frp";
/// Optional: where the app listens instead of [`EXAPP_SOCKET`] (`host:port` or a socket path),
/// for ExApps that cannot listen on a unix socket. Not set by AppAPI; an image sets it.
pub const LOCAL_TARGET_VAR: &str = "HP_TUNNEL_LOCAL";

impl ClientConfig {
    /// The configuration HaRP's ExApp `start.sh` writes for frpc (contract §5.2), from the
    /// variables AppAPI puts into the container: server `HP_FRP_ADDRESS:HP_FRP_PORT`, token
    /// `HP_SHARED_KEY`, one `tcp` proxy named `APP_ID` on remote port `APP_PORT` to
    /// [`EXAPP_SOCKET`], `loginFailExit = false`, and TLS with `<frp_certs>/{ca.crt,client.crt,
    /// client.key}` and server name `harp.nc` when `frp_certs` is given (the caller passes
    /// [`EXAPP_FRP_CERTS_DIR`] when it exists). `var` reads one variable; tests feed a map.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        frp_certs: Option<&Path>,
    ) -> Result<ClientConfig, String> {
        let required = |name: &str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} is not set"))
        };
        let port = |name: &str| {
            let v = required(name)?;
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{name} is not a port number: {v:?}"))
        };
        let token = required("HP_SHARED_KEY")?;
        let address = required("HP_FRP_ADDRESS")?;
        // AppAPI passes the host part of the daemon's `frp_address`; an IPv6 host may keep
        // its brackets, which a socket address lookup does not want.
        let server_addr = address
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(&address)
            .to_string();
        let server_port = port("HP_FRP_PORT")?;
        let name = required("APP_ID")?;
        let remote_port = port("APP_PORT")?;
        let local = match var(LOCAL_TARGET_VAR).filter(|v| !v.is_empty()) {
            None => Local::Unix(EXAPP_SOCKET.into()),
            Some(v) if v.starts_with('/') => Local::Unix(v.into()),
            Some(v) => {
                let (host, p) = v.rsplit_once(':').ok_or_else(|| {
                    format!("{LOCAL_TARGET_VAR} must be host:port or a socket path: {v:?}")
                })?;
                let p = p.parse::<u16>().map_err(|_| {
                    format!("{LOCAL_TARGET_VAR} must be host:port or a socket path: {v:?}")
                })?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Local::Tcp(host.to_string(), p)
            }
        };
        let tls = frp_certs.map(|dir| TlsFiles {
            ca: dir.join("ca.crt"),
            cert_key: Some((dir.join("client.crt"), dir.join("client.key"))),
            server_name: crate::certs::SERVER_NAME.to_string(),
        });
        Ok(ClientConfig {
            server_addr,
            server_port,
            login_fail_exit: false,
            tls,
            token: Some(token),
            proxies: vec![ProxyConfig {
                name,
                remote_port,
                local,
            }],
        })
    }

    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<ClientConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let server_addr = raw.server_addr.unwrap_or_else(|| "0.0.0.0".into());
        let tls = if raw.transport.tls.enable.unwrap_or(true) {
            let t = raw.transport.tls;
            let ca = t.trusted_ca_file.ok_or(
                "transport.tls.trustedCaFile is required when TLS is on (harp tunnel always verifies the server)",
            )?;
            let cert_key = match (t.cert_file, t.key_file) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err("transport.tls.certFile and keyFile must be set together".into()),
            };
            Some(TlsFiles {
                ca,
                cert_key,
                server_name: t.server_name.unwrap_or_else(|| server_addr.clone()),
            })
        } else {
            None
        };
        let mut proxies = Vec::new();
        for p in raw.proxies {
            if p.kind != "tcp" {
                return Err(format!(
                    "proxy {}: only type = \"tcp\" is supported",
                    p.name
                ));
            }
            let local = match p.plugin {
                Some(pl) if pl.kind == "unix_domain_socket" => Local::Unix(pl.unix_path),
                Some(pl) => {
                    return Err(format!(
                        "proxy {}: unsupported plugin type {}",
                        p.name, pl.kind
                    ))
                }
                None => Local::Tcp(
                    p.local_ip.unwrap_or_else(|| "127.0.0.1".into()),
                    p.local_port.ok_or(format!(
                        "proxy {}: localPort or a plugin is required",
                        p.name
                    ))?,
                ),
            };
            proxies.push(ProxyConfig {
                name: p.name,
                remote_port: p.remote_port,
                local,
            });
        }
        Ok(ClientConfig {
            server_addr,
            server_port: raw.server_port.unwrap_or(7000),
            login_fail_exit: raw.login_fail_exit.unwrap_or(true),
            tls,
            token: raw.metadatas.get("token").cloned(),
            proxies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exapp_config_parses() {
        let c = ClientConfig::parse(
            r#"
serverAddr = "harp"
serverPort = 8782
loginFailExit = false
transport.tls.enable = true
transport.tls.certFile = "/certs/frp/client.crt"
transport.tls.keyFile = "/certs/frp/client.key"
transport.tls.trustedCaFile = "/certs/frp/ca.crt"
transport.tls.serverName = "harp.nc"
metadatas.token = "k"
[[proxies]]
name = "app"
type = "tcp"
remotePort = 23000
[proxies.plugin]
type = "unix_domain_socket"
unixPath = "/tmp/exapp.sock"
[[proxies]]
name = "web"
type = "tcp"
localIP = "127.0.0.1"
localPort = 8080
remotePort = 23001
"#,
        )
        .unwrap();
        assert_eq!(c.server_port, 8782);
        assert!(!c.login_fail_exit);
        assert_eq!(c.token.as_deref(), Some("k"));
        assert_eq!(c.tls.unwrap().server_name, "harp.nc");
        assert_eq!(c.proxies[0].local, Local::Unix("/tmp/exapp.sock".into()));
        assert_eq!(c.proxies[1].local, Local::Tcp("127.0.0.1".into(), 8080));
    }

    fn exapp_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("HP_SHARED_KEY", "the-key"),
            ("HP_FRP_ADDRESS", "appapi-harp"),
            ("HP_FRP_PORT", "8782"),
            ("APP_ID", "my_app"),
            ("APP_PORT", "23017"),
            ("APP_HOST", "127.0.0.1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    fn from_map(
        env: &BTreeMap<String, String>,
        certs: Option<&Path>,
    ) -> Result<ClientConfig, String> {
        ClientConfig::from_env(|k| env.get(k).cloned(), certs)
    }

    #[test]
    fn exapp_env_with_certs_is_start_sh_frpc_config() {
        let certs = Path::new("/certs/frp");
        let c = from_map(&exapp_env(&[]), Some(certs)).unwrap();
        assert_eq!(c.server_addr, "appapi-harp");
        assert_eq!(c.server_port, 8782);
        assert!(!c.login_fail_exit, "start.sh writes loginFailExit = false");
        assert_eq!(c.token.as_deref(), Some("the-key"));
        let tls = c.tls.expect("TLS when /certs/frp exists");
        assert_eq!(tls.ca, certs.join("ca.crt"));
        assert_eq!(
            tls.cert_key,
            Some((certs.join("client.crt"), certs.join("client.key")))
        );
        assert_eq!(tls.server_name, "harp.nc");
        assert_eq!(c.proxies.len(), 1);
        assert_eq!(c.proxies[0].name, "my_app");
        assert_eq!(c.proxies[0].remote_port, 23017);
        assert_eq!(c.proxies[0].local, Local::Unix("/tmp/exapp.sock".into()));
    }

    #[test]
    fn exapp_env_without_certs_is_plain_tcp() {
        let c = from_map(&exapp_env(&[]), None).unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn exapp_env_local_target_override() {
        let c = from_map(&exapp_env(&[("HP_TUNNEL_LOCAL", "127.0.0.1:8080")]), None).unwrap();
        assert_eq!(c.proxies[0].local, Local::Tcp("127.0.0.1".into(), 8080));
        let c = from_map(&exapp_env(&[("HP_TUNNEL_LOCAL", "/run/app.sock")]), None).unwrap();
        assert_eq!(c.proxies[0].local, Local::Unix("/run/app.sock".into()));
        let c = from_map(&exapp_env(&[("HP_TUNNEL_LOCAL", "[::1]:9000")]), None).unwrap();
        assert_eq!(c.proxies[0].local, Local::Tcp("::1".into(), 9000));
        let e = from_map(&exapp_env(&[("HP_TUNNEL_LOCAL", "nonsense")]), None).unwrap_err();
        assert!(e.contains("HP_TUNNEL_LOCAL"), "{e}");
    }

    #[test]
    fn exapp_env_ipv6_frp_address_loses_its_brackets() {
        let c = from_map(&exapp_env(&[("HP_FRP_ADDRESS", "[fd00::5]")]), None).unwrap();
        assert_eq!(c.server_addr, "fd00::5");
    }

    #[test]
    fn exapp_env_missing_or_bad_values_are_named() {
        for name in [
            "HP_SHARED_KEY",
            "HP_FRP_ADDRESS",
            "HP_FRP_PORT",
            "APP_ID",
            "APP_PORT",
        ] {
            let mut env = exapp_env(&[]);
            env.remove(name);
            let e = from_map(&env, None).unwrap_err();
            assert_eq!(e, format!("{name} is not set"));
            let e = from_map(&exapp_env(&[(name, "")]), None).unwrap_err();
            assert_eq!(e, format!("{name} is not set"));
        }
        for (name, bad) in [
            ("HP_FRP_PORT", "87a2"),
            ("APP_PORT", "0"),
            ("APP_PORT", "70000"),
        ] {
            let e = from_map(&exapp_env(&[(name, bad)]), None).unwrap_err();
            assert!(
                e.starts_with(&format!("{name} is not a port number")),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = ClientConfig::parse(
            "serverAddr = \"x\"\ntransport.tls.enable = false\nwebServer.port = 7400\n",
        )
        .unwrap_err();
        assert!(e.contains("webServer"), "{e}");
        let e = ClientConfig::parse("transport.tcpMux = false\ntransport.tls.enable = false\n")
            .unwrap_err();
        assert!(e.contains("tcpMux"), "{e}");
        let e = ClientConfig::parse("serverAddr = \"x\"\n").unwrap_err();
        assert!(e.contains("trustedCaFile"), "{e}");
    }
}
