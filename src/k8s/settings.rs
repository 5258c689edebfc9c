//! `HP_K8S_*` (contract §4.9) parsed once into [`K8sSettings`]; the token itself is never stored
//! from the file here because a projected token rotates: the file is re-read on every call.

use super::names::{host_aliases, HostAlias};
use std::path::PathBuf;
use std::time::Duration;

/// Where a pod's service account credentials are mounted (Kubernetes' fixed path).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_NAMESPACE: &str = "nextcloud-exapps";
const DEFAULT_STORAGE_SIZE: &str = "10Gi";
/// `KUBERNETES_SERVICE_PORT`'s default when only the host is set (contract §4.9).
const DEFAULT_SERVICE_PORT: &str = "443";
/// Contract §4.8: up to 90 s for readiness after the image pull, and at most an hour of pulling.
const DEFAULT_STARTUP_TIMEOUT_SECS: u64 = 90;
const DEFAULT_IMAGE_PULL_TIMEOUT_SECS: u64 = 3600;
/// The knobs' upper bound: AppAPI itself gives up long before.
const MAX_WAIT_SECS: u64 = 24 * 3600;

/// A refused `HP_K8S_*` value; names the variable, never prints a token.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub(crate) struct SettingsError {
    pub(crate) var: &'static str,
    pub(crate) message: String,
}

/// The Kubernetes backend's settings. `Debug` is written by hand so the static token never
/// reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct K8sSettings {
    pub(crate) enabled: bool,
    pub(crate) namespace: String,
    /// `None` when neither `HP_K8S_API_SERVER` nor the in-cluster variables are set: the backend
    /// then answers 503 "not configured".
    pub(crate) api_server: Option<String>,
    /// Used only if the file exists when a call is made.
    pub(crate) ca_file: PathBuf,
    pub(crate) static_token: Option<String>,
    pub(crate) token_file: PathBuf,
    pub(crate) verify_tls: bool,
    pub(crate) storage_class: Option<String>,
    pub(crate) storage_size: String,
    pub(crate) host_aliases: Vec<HostAlias>,
    /// `HP_K8S_STARTUP_TIMEOUT`: how long `wait_for_start` waits for readiness once the image
    /// is pulled (harp's knob; HaRP fixes it at 90 s).
    pub(crate) startup_timeout: Duration,
    /// `HP_K8S_IMAGE_PULL_TIMEOUT`: the cap on waiting for an image pull (HaRP: 3600 s).
    pub(crate) image_pull_timeout: Duration,
}

impl std::fmt::Debug for K8sSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sSettings")
            .field("enabled", &self.enabled)
            .field("namespace", &self.namespace)
            .field("api_server", &self.api_server)
            .field("ca_file", &self.ca_file)
            .field("static_token", &self.static_token.as_ref().map(|_| "<set>"))
            .field("token_file", &self.token_file)
            .field("verify_tls", &self.verify_tls)
            .field("storage_class", &self.storage_class)
            .field("storage_size", &self.storage_size)
            .field("host_aliases", &self.host_aliases)
            .field("startup_timeout", &self.startup_timeout)
            .field("image_pull_timeout", &self.image_pull_timeout)
            .finish()
    }
}

/// Trims whitespace and one pair of surrounding quotes, and treats an empty value as unset.
fn value<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &str) -> Option<&'a str> {
    let raw = get(name)?.trim();
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(raw)
        .trim();
    (!unquoted.is_empty()).then_some(unquoted)
}

impl K8sSettings {
    /// Builds the settings from a variable lookup (the process environment or a test map).
    pub(crate) fn from_lookup<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<K8sSettings, SettingsError> {
        let enabled = value(&get, "HP_K8S_ENABLED")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false);

        let api_server = match value(&get, "HP_K8S_API_SERVER") {
            Some(url) => Some(url.trim_end_matches('/').to_string()),
            None => value(&get, "KUBERNETES_SERVICE_HOST").map(|host| {
                let port = value(&get, "KUBERNETES_SERVICE_PORT").unwrap_or(DEFAULT_SERVICE_PORT);
                // An IPv6 service host needs brackets in a URL.
                if host.contains(':') && !host.starts_with('[') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }),
        };
        if let Some(url) = &api_server {
            let parsed = reqwest::Url::parse(url).map_err(|e| SettingsError {
                var: "HP_K8S_API_SERVER",
                message: format!("'{url}' is not a URL: {e}"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(SettingsError {
                    var: "HP_K8S_API_SERVER",
                    message: format!("'{url}' must be an http:// or https:// URL with a host"),
                });
            }
        }

        let namespace = value(&get, "HP_K8S_NAMESPACE")
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        if !is_dns1123_label(&namespace) {
            return Err(SettingsError {
                var: "HP_K8S_NAMESPACE",
                message: format!(
                    "'{namespace}' is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)"
                ),
            });
        }

        let aliases_raw = value(&get, "HP_K8S_HOST_ALIASES").unwrap_or("");
        let host_aliases = host_aliases(aliases_raw).map_err(|message| SettingsError {
            var: "HP_K8S_HOST_ALIASES",
            message,
        })?;

        let secs = |var: &'static str, default: u64| -> Result<Duration, SettingsError> {
            match value(&get, var) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=MAX_WAIT_SECS).contains(s))
                    .map(Duration::from_secs)
                    .ok_or_else(|| SettingsError {
                        var,
                        message: format!(
                            "'{v}' is not a whole number of seconds from 1 to {MAX_WAIT_SECS}"
                        ),
                    }),
            }
        };
        let startup_timeout = secs("HP_K8S_STARTUP_TIMEOUT", DEFAULT_STARTUP_TIMEOUT_SECS)?;
        let image_pull_timeout =
            secs("HP_K8S_IMAGE_PULL_TIMEOUT", DEFAULT_IMAGE_PULL_TIMEOUT_SECS)?;
        let sa = |file: &str| PathBuf::from(SERVICE_ACCOUNT_DIR).join(file);
        Ok(K8sSettings {
            enabled,
            namespace,
            api_server,
            ca_file: value(&get, "HP_K8S_CA_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| sa("ca.crt")),
            static_token: value(&get, "HP_K8S_BEARER_TOKEN").map(str::to_string),
            token_file: value(&get, "HP_K8S_BEARER_TOKEN_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| sa("token")),
            // Only an explicit `false` disables verification (contract §4.9).
            verify_tls: !value(&get, "HP_K8S_VERIFY_SSL")
                .is_some_and(|v| v.eq_ignore_ascii_case("false")),
            storage_class: value(&get, "HP_K8S_STORAGE_CLASS").map(str::to_string),
            storage_size: value(&get, "HP_K8S_DEFAULT_STORAGE_SIZE")
                .unwrap_or(DEFAULT_STORAGE_SIZE)
                .to_string(),
            host_aliases,
            startup_timeout,
            image_pull_timeout,
        })
    }

    /// `NAME=value` lines for `harp check`; the static token is shown only as set/unset.
    pub(crate) fn describe(&self) -> Vec<String> {
        let aliases: Vec<String> = self
            .host_aliases
            .iter()
            .flat_map(|a| a.hostnames.iter().map(move |h| format!("{h}:{}", a.ip)))
            .collect();
        vec![
            format!("HP_K8S_ENABLED={}", self.enabled),
            format!("HP_K8S_NAMESPACE={}", self.namespace),
            format!(
                "HP_K8S_API_SERVER={}",
                self.api_server.as_deref().unwrap_or("")
            ),
            format!("HP_K8S_CA_FILE={}", self.ca_file.display()),
            format!(
                "HP_K8S_BEARER_TOKEN={}",
                if self.static_token.is_some() {
                    "<set>"
                } else {
                    ""
                }
            ),
            format!("HP_K8S_BEARER_TOKEN_FILE={}", self.token_file.display()),
            format!("HP_K8S_VERIFY_SSL={}", self.verify_tls),
            format!(
                "HP_K8S_STORAGE_CLASS={}",
                self.storage_class.as_deref().unwrap_or("")
            ),
            format!("HP_K8S_DEFAULT_STORAGE_SIZE={}", self.storage_size),
            format!("HP_K8S_HOST_ALIASES={}", aliases.join(",")),
            format!("HP_K8S_STARTUP_TIMEOUT={}", self.startup_timeout.as_secs()),
            format!(
                "HP_K8S_IMAGE_PULL_TIMEOUT={}",
                self.image_pull_timeout.as_secs()
            ),
        ]
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<K8sSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        K8sSettings::from_lookup(|n| map.get(n).map(String::as_str))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = parse(&[]).unwrap();
        assert!(!s.enabled);
        assert_eq!(s.namespace, "nextcloud-exapps");
        assert_eq!(s.api_server, None);
        assert_eq!(
            s.ca_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        );
        assert_eq!(
            s.token_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert!(s.verify_tls);
        assert_eq!(s.storage_class, None);
        assert_eq!(s.storage_size, "10Gi");
        assert!(s.host_aliases.is_empty());
        assert_eq!(s.startup_timeout, Duration::from_secs(90));
        assert_eq!(s.image_pull_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn enabled_accepts_one_true_yes_in_any_case_only() {
        for v in ["1", "true", "TRUE", "Yes", "yes"] {
            assert!(parse(&[("HP_K8S_ENABLED", v)]).unwrap().enabled, "{v}");
        }
        for v in ["0", "false", "on", "2", ""] {
            assert!(!parse(&[("HP_K8S_ENABLED", v)]).unwrap().enabled, "{v}");
        }
    }

    #[test]
    fn api_server_falls_back_to_in_cluster_variables() {
        let s = parse(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]).unwrap();
        assert_eq!(s.api_server.as_deref(), Some("https://10.0.0.1:443"));
        let s = parse(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ])
        .unwrap();
        assert_eq!(s.api_server.as_deref(), Some("https://[fd00::1]:6443"));
        let s = parse(&[
            ("HP_K8S_API_SERVER", "http://127.0.0.1:8080/"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ])
        .unwrap();
        assert_eq!(s.api_server.as_deref(), Some("http://127.0.0.1:8080"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = parse(&[("HP_K8S_API_SERVER", "ftp://x")]).unwrap_err();
        assert_eq!(e.var, "HP_K8S_API_SERVER");
        let e = parse(&[("HP_K8S_API_SERVER", "not a url")]).unwrap_err();
        assert_eq!(e.var, "HP_K8S_API_SERVER");
        let e = parse(&[("HP_K8S_NAMESPACE", "Bad_NS")]).unwrap_err();
        assert_eq!(e.var, "HP_K8S_NAMESPACE");
        let e = parse(&[("HP_K8S_HOST_ALIASES", "nocolon")]).unwrap_err();
        assert_eq!(e.var, "HP_K8S_HOST_ALIASES");
        for bad in ["0", "-1", "1.5", "x", "86401"] {
            let e = parse(&[("HP_K8S_STARTUP_TIMEOUT", bad)]).unwrap_err();
            assert_eq!(e.var, "HP_K8S_STARTUP_TIMEOUT", "{bad}");
        }
        let s = parse(&[
            ("HP_K8S_STARTUP_TIMEOUT", "2"),
            ("HP_K8S_IMAGE_PULL_TIMEOUT", "5"),
        ])
        .unwrap();
        assert_eq!(
            (s.startup_timeout.as_secs(), s.image_pull_timeout.as_secs()),
            (2, 5)
        );
    }

    #[test]
    fn verify_ssl_only_false_disables() {
        assert!(!parse(&[("HP_K8S_VERIFY_SSL", "False")]).unwrap().verify_tls);
        assert!(parse(&[("HP_K8S_VERIFY_SSL", "0")]).unwrap().verify_tls);
    }

    #[test]
    fn static_token_never_appears_in_debug_or_describe() {
        let s = parse(&[("HP_K8S_BEARER_TOKEN", "sekrit-token-value")]).unwrap();
        assert_eq!(s.static_token.as_deref(), Some("sekrit-token-value"));
        assert!(!format!("{s:?}").contains("sekrit"));
        let lines = s.describe().join("\n");
        assert!(!lines.contains("sekrit"));
        assert!(lines.contains("HP_K8S_BEARER_TOKEN=<set>"));
    }
}
