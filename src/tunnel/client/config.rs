//! The frpc TOML subset `harp tunnel` accepts; any other key is refused by name so a config
//! that relies on an unsupported frpc feature fails loudly instead of half-working.

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

impl ClientConfig {
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
