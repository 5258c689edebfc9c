//! Configuration: the HP_*/NC_* environment read once into a typed, validated [`Config`].
//!
//! Owns every rule of contract §1.2–§1.7 (defaults, quote stripping, key resolution, time syntax,
//! trusted proxies, log levels). Nothing else in harp reads the environment. This module does no
//! network I/O; it reads the shared-key file and nothing more.

mod address;
mod time;
mod trusted;

pub use address::BindAddr;
pub(crate) use time::format_haproxy_time;
pub use time::parse_haproxy_time;
pub use trusted::parse_trusted_proxies;

use crate::security::SharedKey;
use ipnet::IpNet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// More worker threads than this only adds memory; no machine harp runs on needs them.
const MAX_WORKERS: usize = 256;

/// A refused configuration value: names the variable, never prints a secret.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// Log verbosity of `HP_LOG_LEVEL` (contract §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Line format of every log line (`HP_LOG_FORMAT`): text by default, or one JSON object a line
/// for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The timeouts of contract §6.1. `tunnel == None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub client: Duration,
    pub server: Duration,
    pub tunnel: Option<Duration>,
}

/// Every setting harp runs with. Built once by [`Config::from_env`].
#[derive(Debug, Clone)]
pub struct Config {
    pub shared_key: SharedKey,
    /// `NC_INSTANCE_URL` normalised per contract §3.1 (no trailing `/`, no `/index.php`).
    pub(crate) nextcloud_base: String,
    pub exapps_addr: BindAddr,
    pub exapps_https_addr: BindAddr,
    pub frp_addr: BindAddr,
    pub(crate) frp_disable_tls: bool,
    /// Checked only when certificates are generated (contract §1.2), so kept raw here.
    pub(crate) frp_cert_validity_days_raw: String,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// `HP_METRICS_ADDRESS`: where `/metrics` is served; `None` (the default) serves nothing.
    pub metrics_addr: Option<BindAddr>,
    pub verbose_start: bool,
    pub(crate) session_lifetime: Duration,
    /// `HP_BASIC_AUTH_CACHE`: cache Authorization-only user-info answers (improvement over §2.6).
    pub(crate) basic_auth_cache: bool,
    pub(crate) blacklist_window: Duration,
    pub(crate) blacklist_count: u32,
    pub timeouts: Timeouts,
    pub(crate) max_connections: usize,
    /// Worker threads, each with its own runtime, listening socket and upstream pool.
    pub workers: usize,
    pub certs_dir: PathBuf,
    /// `HP_CONFIG_DIR`, a contract variable (§1.3): parsed, validated and shown by `harp check`
    /// so a deployment that sets it keeps working, but nothing in harp reads it yet.
    pub(crate) config_dir: PathBuf,
    /// A user-supplied frps.toml that replaces HaRP's FRP server settings when it exists.
    pub(crate) frps_config: PathBuf,
    pub docker_socket: PathBuf,
    /// Loopback listener relaying to the local engine (documented `curl 127.0.0.1:24000/_ping`).
    /// Not an environment variable: always `127.0.0.1:24000`; tests set port 0 so parallel
    /// instances do not compete for it.
    pub local_engine_listen: std::net::SocketAddr,
    /// `HP_DATA_DIR`, a contract variable (§1.3): where `store` persists the ban list (empty
    /// means the default; an unusable directory means bans in memory only).
    pub(crate) data_dir: PathBuf,
    /// `HP_AUDIT_ROTATE_BYTES`: size at which `audit.log` is rotated.
    pub(crate) audit_rotate_bytes: u64,
    /// `HP_K8S_*` (contract §4.9), parsed and validated here so a bad value stops start-up.
    pub(crate) k8s: crate::k8s::K8sSettings,
    /// Messages about tolerated oddities, logged once logging is up.
    pub warnings: Vec<String>,
}

/// One row of the variable table: used by `--help`, `harp check` and the README test.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const VARIABLES: &[VarDoc] = &[
    VarDoc {
        name: "HP_SHARED_KEY",
        default: "(none)",
        meaning: "shared secret of AppAPI, ExApps and FRP clients; printable ASCII, no \" or \\",
    },
    VarDoc {
        name: "HP_SHARED_KEY_FILE",
        default: "(none)",
        meaning:
            "file holding the shared key (trailing newlines removed); exclusive with HP_SHARED_KEY",
    },
    VarDoc {
        name: "NC_INSTANCE_URL",
        default: "(none, required)",
        meaning: "Nextcloud base URL used for exapp-meta and user-info calls",
    },
    VarDoc {
        name: "HP_EXAPPS_ADDRESS",
        default: "0.0.0.0:8780",
        meaning: "HTTP listener for /exapps/ (host:port, hostname:port or [v6]:port)",
    },
    VarDoc {
        name: "HP_EXAPPS_HTTPS_ADDRESS",
        default: "0.0.0.0:8781",
        meaning: "HTTPS listener, enabled only when <certs>/cert.pem exists",
    },
    VarDoc {
        name: "HP_FRP_ADDRESS",
        default: "0.0.0.0:8782",
        meaning: "FRP tunnel server listener",
    },
    VarDoc {
        name: "HP_FRP_DISABLE_TLS",
        default: "false",
        meaning: "exactly `true` turns off FRP mutual TLS",
    },
    VarDoc {
        name: "HP_FRP_CERT_VALIDITY_DAYS",
        default: "5000",
        meaning: "validity of generated FRP certificates (checked only when generating)",
    },
    VarDoc {
        name: "HP_TRUSTED_PROXY_IPS",
        default: "(empty)",
        meaning: "comma-separated IPs/CIDRs whose X-Forwarded-For / X-Real-IP are believed",
    },
    VarDoc {
        name: "HP_LOG_LEVEL",
        default: "warning",
        meaning:
            "debug, info, warning or error (any case); info adds one access-log line per request",
    },
    VarDoc {
        name: "HP_LOG_FORMAT",
        default: "text",
        meaning: "text or json (one JSON object per line, same fields); unknown values use text",
    },
    VarDoc {
        name: "HP_METRICS_ADDRESS",
        default: "(empty: off)",
        meaning: "host:port serving Prometheus metrics at /metrics; empty serves nothing",
    },
    VarDoc {
        name: "HP_VERBOSE_START",
        default: "1",
        meaning: "1 prints the effective configuration (secrets masked) at start",
    },
    VarDoc {
        name: "HP_SESSION_LIFETIME",
        default: "3",
        meaning: "seconds (0-10, fractions allowed) a Nextcloud session answer is cached",
    },
    VarDoc {
        name: "HP_BASIC_AUTH_CACHE",
        default: "true",
        meaning: "false asks Nextcloud on every Basic-auth request instead of caching known users for HP_SESSION_LIFETIME",
    },
    VarDoc {
        name: "HP_BLACKLIST_WINDOW",
        default: "300",
        meaning: "seconds of the brute-force sliding window",
    },
    VarDoc {
        name: "HP_BLACKLIST_COUNT",
        default: "10",
        meaning: "failures within the window that ban an IP",
    },
    VarDoc {
        name: "HP_TIMEOUT_CONNECT",
        default: "30s",
        meaning: "upstream connect timeout (HAProxy syntax: bare number = ms)",
    },
    VarDoc {
        name: "HP_TIMEOUT_CLIENT",
        default: "30s",
        meaning: "client inactivity: sending a request head or body, or reading a response",
    },
    VarDoc {
        name: "HP_TIMEOUT_SERVER",
        default: "1800s",
        meaning: "time to wait for the upstream's response and between response chunks",
    },
    VarDoc {
        name: "HP_TIMEOUT_TUNNEL",
        default: "= HP_TIMEOUT_SERVER",
        meaning: "idle timeout of upgraded (WebSocket) connections; 0 = unlimited",
    },
    VarDoc {
        name: "HP_MAX_CONNECTIONS",
        default: "8192",
        meaning: "concurrent client connections; more wait in the accept queue",
    },
    VarDoc {
        name: "HP_WORKERS",
        default: "number of CPUs",
        meaning: "worker threads serving requests (each with its own socket and upstream pool)",
    },
    VarDoc {
        name: "HP_CERTS_DIR",
        default: "/certs",
        meaning: "holds cert.pem (HTTPS) and frp/ (tunnel certificates)",
    },
    VarDoc {
        name: "HP_CONFIG_DIR",
        default: "/run/harp",
        meaning: "directory for generated runtime files",
    },
    VarDoc {
        name: "HP_FRPS_CONFIG",
        default: "/frps.toml",
        meaning: "user-supplied frps.toml used instead of HaRP's FRP server settings when present",
    },
    VarDoc {
        name: "HP_DOCKER_SOCKET",
        default: "/var/run/docker.sock",
        meaning: "local Docker Engine socket (docker-engine-port 24000)",
    },
    VarDoc {
        name: "HP_DATA_DIR",
        default: "/var/lib/harp",
        meaning: "persisted state: the ban list (bans.log), so bans survive a restart, and the audit log (audit/); empty or unwritable: bans in memory only, no audit log, one warning each",
    },
    VarDoc {
        name: "HP_AUDIT_ROTATE_BYTES",
        default: "10485760",
        meaning: "size in bytes (at least 4096) at which the audit log is rotated; 5 rotated files are kept",
    },
    VarDoc {
        name: "HP_SPOA_ADDRESS",
        default: "127.0.0.1:9600",
        meaning: "accepted for compatibility and ignored (no SPOE agent)",
    },
    VarDoc {
        name: "HP_WATCHDOG_ENABLED, HP_WATCHDOG_INTERVAL, HP_WATCHDOG_FAILS, HP_WAIT_*",
        default: "(reference defaults)",
        meaning: "accepted for compatibility; a single process needs no external watchdog",
    },
    VarDoc {
        name: "HP_K8S_ENABLED, HP_K8S_NAMESPACE, HP_K8S_API_SERVER, HP_K8S_CA_FILE, HP_K8S_BEARER_TOKEN, HP_K8S_BEARER_TOKEN_FILE, HP_K8S_VERIFY_SSL, HP_K8S_STORAGE_CLASS, HP_K8S_DEFAULT_STORAGE_SIZE, HP_K8S_HOST_ALIASES, HP_K8S_STARTUP_TIMEOUT, HP_K8S_IMAGE_PULL_TIMEOUT",
        default: "(contract §4.9; README: Kubernetes)",
        meaning: "the Kubernetes backend (AppAPI's /k8s/exapp/* calls): off unless HP_K8S_ENABLED; validated at start and shown by `harp check`",
    },
];

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Builds the configuration from a variable map (the testable core of [`Config::from_env`]).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str| vars.get(name).map(String::as_str);
        let mut warnings = Vec::new();

        let shared_key = resolve_shared_key(get("HP_SHARED_KEY"), get("HP_SHARED_KEY_FILE"))?;

        let nc_url = strip_quotes(get("NC_INSTANCE_URL").unwrap_or(""));
        if nc_url.is_empty() {
            return Err(err(
                "NC_INSTANCE_URL",
                "not set; it must be Nextcloud's base URL",
            ));
        }
        let nextcloud_base = normalise_nextcloud_url(nc_url);
        if !(nextcloud_base.starts_with("http://") || nextcloud_base.starts_with("https://")) {
            return Err(err(
                "NC_INSTANCE_URL",
                format!("'{nextcloud_base}' must start with http:// or https://"),
            ));
        }

        let exapps_addr = address_or_default(
            get("HP_EXAPPS_ADDRESS"),
            "HP_EXAPPS_ADDRESS",
            "0.0.0.0:8780",
            &mut warnings,
        )?;
        let exapps_https_addr = address_or_default(
            get("HP_EXAPPS_HTTPS_ADDRESS"),
            "HP_EXAPPS_HTTPS_ADDRESS",
            "0.0.0.0:8781",
            &mut warnings,
        )?;
        let frp_addr = match get("HP_FRP_ADDRESS") {
            None => BindAddr::parse("0.0.0.0:8782").expect("valid default"),
            Some(raw) => {
                let value = strip_quotes(raw);
                if value.is_empty() {
                    return Err(err("HP_FRP_ADDRESS", "is empty; expected host:port"));
                }
                BindAddr::parse(value).map_err(|m| err("HP_FRP_ADDRESS", m))?
            }
        };

        let trusted = parse_trusted_proxies(get("HP_TRUSTED_PROXY_IPS").unwrap_or(""));
        warnings.extend(trusted.warnings.iter().cloned());

        let log_raw = strip_quotes(get("HP_LOG_LEVEL").unwrap_or("warning"));
        let log_level = match log_raw.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warning" | "warn" | "" => LogLevel::Warning,
            "error" => LogLevel::Error,
            other => {
                warnings.push(format!(
                    "HP_LOG_LEVEL: unknown level '{other}', using warning"
                ));
                LogLevel::Warning
            }
        };
        let format_raw = strip_quotes(get("HP_LOG_FORMAT").unwrap_or("text"));
        let log_format = match format_raw.to_ascii_lowercase().as_str() {
            "text" | "" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                warnings.push(format!(
                    "HP_LOG_FORMAT: unknown format '{other}', using text"
                ));
                LogFormat::Text
            }
        };
        let metrics_addr = match strip_quotes(get("HP_METRICS_ADDRESS").unwrap_or("")).trim() {
            "" => None,
            value => Some(BindAddr::parse(value).map_err(|m| err("HP_METRICS_ADDRESS", m))?),
        };

        let session_lifetime = parse_session_lifetime(get("HP_SESSION_LIFETIME"))?;
        let basic_auth_cache = match get("HP_BASIC_AUTH_CACHE")
            .map(|v| strip_quotes(v).to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(err(
                    "HP_BASIC_AUTH_CACHE",
                    format!("'{other}' is neither true nor false"),
                ))
            }
        };
        let blacklist_window = Duration::from_secs(parse_integer(
            get("HP_BLACKLIST_WINDOW"),
            "HP_BLACKLIST_WINDOW",
            300,
        )?);
        let blacklist_count = u32::try_from(parse_integer(
            get("HP_BLACKLIST_COUNT"),
            "HP_BLACKLIST_COUNT",
            10,
        )?)
        .map_err(|_| err("HP_BLACKLIST_COUNT", "is too large"))?;

        let audit_rotate_bytes = parse_integer(
            get("HP_AUDIT_ROTATE_BYTES"),
            "HP_AUDIT_ROTATE_BYTES",
            DEFAULT_AUDIT_ROTATE_BYTES,
        )?;
        if audit_rotate_bytes < MIN_AUDIT_ROTATE_BYTES {
            return Err(err(
                "HP_AUDIT_ROTATE_BYTES",
                format!("must be at least {MIN_AUDIT_ROTATE_BYTES}"),
            ));
        }

        let server = timeout_or_default(get("HP_TIMEOUT_SERVER"), "HP_TIMEOUT_SERVER", "1800s")?;
        let tunnel = match get("HP_TIMEOUT_TUNNEL")
            .map(strip_quotes)
            .filter(|v| !v.is_empty())
        {
            None => Some(server),
            Some(raw) => {
                let d =
                    parse_haproxy_time(raw).map_err(|e| err("HP_TIMEOUT_TUNNEL", e.to_string()))?;
                (!d.is_zero()).then_some(d)
            }
        };
        let timeouts = Timeouts {
            connect: nonzero(
                timeout_or_default(get("HP_TIMEOUT_CONNECT"), "HP_TIMEOUT_CONNECT", "30s")?,
                "HP_TIMEOUT_CONNECT",
            )?,
            client: nonzero(
                timeout_or_default(get("HP_TIMEOUT_CLIENT"), "HP_TIMEOUT_CLIENT", "30s")?,
                "HP_TIMEOUT_CLIENT",
            )?,
            server: nonzero(server, "HP_TIMEOUT_SERVER")?,
            tunnel,
        };

        let max_connections =
            parse_integer(get("HP_MAX_CONNECTIONS"), "HP_MAX_CONNECTIONS", 8192)? as usize;
        if max_connections == 0 {
            return Err(err("HP_MAX_CONNECTIONS", "must be at least 1"));
        }

        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let workers = parse_integer(get("HP_WORKERS"), "HP_WORKERS", cpus)? as usize;
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(err(
                "HP_WORKERS",
                format!("must be between 1 and {MAX_WORKERS}"),
            ));
        }

        for (name, default) in [("HP_WATCHDOG_INTERVAL", 10), ("HP_WATCHDOG_FAILS", 12)] {
            if let Some(raw) = get(name).filter(|v| !v.trim().is_empty()) {
                if !matches!(raw.trim().parse::<u64>(), Ok(n) if n >= 1) {
                    warnings.push(format!(
                        "{name}: '{raw}' is not an integer >= 1, using {default}"
                    ));
                }
            }
        }

        let k8s = crate::k8s::K8sSettings::from_lookup(get).map_err(|e| ConfigError {
            var: e.var,
            message: e.message,
        })?;

        let path = |name: &str, default: &str| {
            PathBuf::from(
                get(name)
                    .map(strip_quotes)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(default),
            )
        };

        Ok(Config {
            shared_key,
            nextcloud_base,
            exapps_addr,
            exapps_https_addr,
            frp_addr,
            frp_disable_tls: get("HP_FRP_DISABLE_TLS") == Some("true"),
            frp_cert_validity_days_raw: get("HP_FRP_CERT_VALIDITY_DAYS")
                .unwrap_or("5000")
                .to_string(),
            trusted_proxies: trusted.networks,
            log_level,
            log_format,
            metrics_addr,
            verbose_start: get("HP_VERBOSE_START").unwrap_or("1") == "1",
            session_lifetime,
            basic_auth_cache,
            blacklist_window,
            blacklist_count,
            timeouts,
            max_connections,
            workers,
            certs_dir: path("HP_CERTS_DIR", "/certs"),
            config_dir: path("HP_CONFIG_DIR", "/run/harp"),
            frps_config: path("HP_FRPS_CONFIG", "/frps.toml"),
            docker_socket: path("HP_DOCKER_SOCKET", "/var/run/docker.sock"),
            local_engine_listen: std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                crate::contract::ports::LOCAL_ENGINE_PORT,
            )),
            data_dir: path("HP_DATA_DIR", DEFAULT_DATA_DIR),
            audit_rotate_bytes,
            k8s,
            warnings,
        })
    }

    /// Asks the configured Kubernetes API server's `/readyz` (for `harp check --reach-k8s`).
    pub async fn reach_kubernetes(&self) -> Result<(), String> {
        crate::k8s::reach(&self.k8s).await
    }

    /// `HP_FRP_CERT_VALIDITY_DAYS`, validated only when certificates are about to be generated.
    pub(crate) fn frp_cert_validity_days(&self) -> Result<u32, ConfigError> {
        let raw = self.frp_cert_validity_days_raw.trim();
        match raw.parse::<u32>() {
            Ok(n) if n >= 1 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(err(
                "HP_FRP_CERT_VALIDITY_DAYS",
                format!("'{raw}' is not a whole number of days >= 1"),
            )),
        }
    }

    /// The effective configuration as `NAME=value` lines, secrets masked (for `harp check`).
    pub fn describe(&self) -> Vec<String> {
        let tunnel = self
            .timeouts
            .tunnel
            .map(format_haproxy_time)
            .unwrap_or_else(|| "0 (unlimited)".into());
        let proxies: Vec<String> = self.trusted_proxies.iter().map(|n| n.to_string()).collect();
        vec![
            format!("HP_SHARED_KEY={}", self.shared_key.masked()),
            format!("NC_INSTANCE_URL={}", self.nextcloud_base),
            format!("HP_EXAPPS_ADDRESS={}", self.exapps_addr),
            format!("HP_EXAPPS_HTTPS_ADDRESS={}", self.exapps_https_addr),
            format!("HP_FRP_ADDRESS={}", self.frp_addr),
            format!("HP_FRP_DISABLE_TLS={}", self.frp_disable_tls),
            format!(
                "HP_FRP_CERT_VALIDITY_DAYS={}",
                self.frp_cert_validity_days_raw
            ),
            format!("HP_TRUSTED_PROXY_IPS={}", proxies.join(",")),
            format!("HP_LOG_LEVEL={}", self.log_level.as_filter()),
            format!(
                "HP_LOG_FORMAT={}",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
            ),
            format!(
                "HP_METRICS_ADDRESS={}",
                self.metrics_addr
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            format!(
                "HP_VERBOSE_START={}",
                if self.verbose_start { 1 } else { 0 }
            ),
            format!(
                "HP_SESSION_LIFETIME={}",
                self.session_lifetime.as_secs_f64()
            ),
            format!("HP_BASIC_AUTH_CACHE={}", self.basic_auth_cache),
            format!("HP_BLACKLIST_WINDOW={}", self.blacklist_window.as_secs()),
            format!("HP_BLACKLIST_COUNT={}", self.blacklist_count),
            format!(
                "HP_TIMEOUT_CONNECT={}",
                format_haproxy_time(self.timeouts.connect)
            ),
            format!(
                "HP_TIMEOUT_CLIENT={}",
                format_haproxy_time(self.timeouts.client)
            ),
            format!(
                "HP_TIMEOUT_SERVER={}",
                format_haproxy_time(self.timeouts.server)
            ),
            format!("HP_TIMEOUT_TUNNEL={tunnel}"),
            format!("HP_MAX_CONNECTIONS={}", self.max_connections),
            format!("HP_WORKERS={}", self.workers),
            format!("HP_CERTS_DIR={}", self.certs_dir.display()),
            format!("HP_CONFIG_DIR={}", self.config_dir.display()),
            format!("HP_FRPS_CONFIG={}", self.frps_config.display()),
            format!("HP_DOCKER_SOCKET={}", self.docker_socket.display()),
            format!("HP_DATA_DIR={}", self.data_dir.display()),
            format!("HP_AUDIT_ROTATE_BYTES={}", self.audit_rotate_bytes),
        ]
        .into_iter()
        .chain(self.k8s.describe())
        .collect()
    }
}

/// Contract §1.4: one leading `"`, one trailing `"`, one leading `'`, one trailing `'`, in that order.
pub(crate) fn strip_quotes(value: &str) -> &str {
    let v = value.strip_prefix('"').unwrap_or(value);
    let v = v.strip_suffix('"').unwrap_or(v);
    let v = v.strip_prefix('\'').unwrap_or(v);
    v.strip_suffix('\'').unwrap_or(v)
}

/// Contract §3.1: drop one trailing `/`, then one trailing `/index.php`.
pub(crate) fn normalise_nextcloud_url(url: &str) -> String {
    let u = url.strip_suffix('/').unwrap_or(url);
    u.strip_suffix("/index.php").unwrap_or(u).to_string()
}

/// Contract §1.3, steps 1–7.
fn resolve_shared_key(env_key: Option<&str>, file: Option<&str>) -> Result<SharedKey, ConfigError> {
    let env_key = env_key.unwrap_or("");
    let file = file.unwrap_or("");
    if !env_key.is_empty() && !file.is_empty() {
        return Err(err(
            "HP_SHARED_KEY",
            "only one of HP_SHARED_KEY and HP_SHARED_KEY_FILE may be set",
        ));
    }
    let raw = if env_key.is_empty() && !file.is_empty() {
        let meta = std::fs::metadata(file)
            .map_err(|e| err("HP_SHARED_KEY_FILE", format!("cannot read {file}: {e}")))?;
        if !meta.is_file() {
            return Err(err(
                "HP_SHARED_KEY_FILE",
                format!("{file} is not a regular file"),
            ));
        }
        let content = std::fs::read(file)
            .map_err(|e| err("HP_SHARED_KEY_FILE", format!("cannot read {file}: {e}")))?;
        if content.is_empty() {
            return Err(err("HP_SHARED_KEY_FILE", format!("{file} is empty")));
        }
        let trimmed_len = content
            .iter()
            .rposition(|&b| b != b'\n')
            .map_or(0, |i| i + 1);
        String::from_utf8(content[..trimmed_len].to_vec()).map_err(|_| {
            err(
                "HP_SHARED_KEY_FILE",
                "the key contains non-ASCII bytes; only printable ASCII is allowed",
            )
        })?
    } else {
        env_key.to_string()
    };
    let var = if env_key.is_empty() {
        "HP_SHARED_KEY_FILE"
    } else {
        "HP_SHARED_KEY"
    };
    if raw.is_empty() {
        return Err(err(
            "HP_SHARED_KEY",
            "not set; set HP_SHARED_KEY or HP_SHARED_KEY_FILE to the key configured in AppAPI",
        ));
    }
    if let Some(bad) = raw.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        let class = match bad {
            b'\t' => "a tab",
            b'\n' | b'\r' => "a line break",
            0x80.. => "a non-ASCII character",
            _ => "a control character",
        };
        return Err(err(
            var,
            format!("the key contains {class}; only printable ASCII is allowed"),
        ));
    }
    let stripped = strip_quotes(&raw);
    if stripped.contains('"') || stripped.contains('\\') {
        return Err(err(var, "the key must not contain '\"' or '\\'"));
    }
    if stripped.is_empty() {
        return Err(err(
            var,
            "the key is empty after removing surrounding quotes",
        ));
    }
    Ok(SharedKey::new(stripped))
}

fn address_or_default(
    raw: Option<&str>,
    var: &'static str,
    default: &str,
    warnings: &mut Vec<String>,
) -> Result<BindAddr, ConfigError> {
    let value = raw.map(strip_quotes).unwrap_or("");
    if value.is_empty() {
        if raw.is_some() {
            warnings.push(format!("{var} is empty, using {default}"));
        }
        return Ok(BindAddr::parse(default).expect("valid default"));
    }
    BindAddr::parse(value).map_err(|m| err(var, m))
}

fn timeout_or_default(
    raw: Option<&str>,
    var: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let value = raw
        .map(strip_quotes)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(default);
    parse_haproxy_time(value).map_err(|e| err(var, e.to_string()))
}

fn nonzero(d: Duration, var: &'static str) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(err(var, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

/// Default of `HP_DATA_DIR`.
const DEFAULT_DATA_DIR: &str = "/var/lib/harp";
/// Default of `HP_AUDIT_ROTATE_BYTES` (10 MiB; six files at most: 60 MiB).
const DEFAULT_AUDIT_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest rotation size: below it a file could not hold a few records.
const MIN_AUDIT_ROTATE_BYTES: u64 = 4096;

/// The audit directory `harp audit` reads by default: `HP_DATA_DIR` (or its default) + `audit`.
pub fn audit_dir_from_env() -> PathBuf {
    let dir = std::env::var("HP_DATA_DIR")
        .ok()
        .map(|v| strip_quotes(&v).to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
    PathBuf::from(dir).join("audit")
}

fn parse_integer(raw: Option<&str>, var: &'static str, default: u64) -> Result<u64, ConfigError> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| err(var, format!("'{v}' is not a non-negative integer"))),
    }
}

fn parse_session_lifetime(raw: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(v) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Duration::from_secs(3));
    };
    match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=10.0).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(err(
            "HP_SESSION_LIFETIME",
            format!("'{v}' must be a number of seconds between 0 and 10"),
        )),
    }
}

#[cfg(test)]
mod tests;
