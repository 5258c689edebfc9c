use super::*;
use std::io::Write;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("HP_SHARED_KEY", "secret"),
        ("NC_INSTANCE_URL", "http://nc"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in pairs {
        if v.is_empty() && (*k == "HP_SHARED_KEY" || *k == "NC_INSTANCE_URL") {
            m.remove(*k);
        }
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(&vars(pairs))
}

fn failing_var(pairs: &[(&str, &str)]) -> &'static str {
    load(pairs).expect_err("config should be refused").var
}

#[test]
fn item01_no_key_at_all_is_refused() {
    let e = failing_var(&[("HP_SHARED_KEY", "")]);
    assert_eq!(e, "HP_SHARED_KEY");
}

#[test]
fn item02_both_key_sources_refused() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let path = f.path().to_str().unwrap();
    assert_eq!(
        failing_var(&[("HP_SHARED_KEY_FILE", path)]),
        "HP_SHARED_KEY"
    );
}

#[test]
fn item03_key_file_missing_or_empty_refused() {
    assert_eq!(
        failing_var(&[
            ("HP_SHARED_KEY", ""),
            ("HP_SHARED_KEY_FILE", "/nonexistent/key")
        ]),
        "HP_SHARED_KEY_FILE"
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    let path = f.path().to_str().unwrap();
    let e = load(&[("HP_SHARED_KEY", ""), ("HP_SHARED_KEY_FILE", path)]).unwrap_err();
    assert_eq!(e.var, "HP_SHARED_KEY_FILE");
    assert!(e.message.contains("empty"));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        failing_var(&[
            ("HP_SHARED_KEY", ""),
            ("HP_SHARED_KEY_FILE", dir.path().to_str().unwrap())
        ]),
        "HP_SHARED_KEY_FILE"
    );
}

#[test]
fn item04_key_file_trailing_newlines_removed() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"secret\n\n").unwrap();
    let c = load(&[
        ("HP_SHARED_KEY", ""),
        ("HP_SHARED_KEY_FILE", f.path().to_str().unwrap()),
    ])
    .unwrap();
    assert!(c.shared_key.matches(b"secret"));
}

#[test]
fn item05_control_and_non_ascii_bytes_refused() {
    for bad in ["a\tb", "a\nb", "sécret", "a\rb"] {
        let e = load(&[("HP_SHARED_KEY", bad)]).unwrap_err();
        assert_eq!(e.var, "HP_SHARED_KEY");
        assert!(
            !e.to_string().contains(bad),
            "message must not echo the key"
        );
    }
    assert!(load(&[("HP_SHARED_KEY", "with space")]).is_ok());
}

#[test]
fn item06_quotes_are_stripped_from_key() {
    let c = load(&[("HP_SHARED_KEY", "\"secret\"")]).unwrap();
    assert!(c.shared_key.matches(b"secret"));
    assert!(!c.shared_key.matches(b"\"secret\""));
}

#[test]
fn item07_forbidden_characters_after_stripping() {
    assert_eq!(
        failing_var(&[("HP_SHARED_KEY", "se\"cret")]),
        "HP_SHARED_KEY"
    );
    assert_eq!(
        failing_var(&[("HP_SHARED_KEY", "se\\cret")]),
        "HP_SHARED_KEY"
    );
    assert!(load(&[("HP_SHARED_KEY", "it's")]).is_ok());
    assert_eq!(failing_var(&[("HP_SHARED_KEY", "\"\"")]), "HP_SHARED_KEY");
}

#[test]
fn item08_required_addresses() {
    assert_eq!(failing_var(&[("NC_INSTANCE_URL", "")]), "NC_INSTANCE_URL");
    assert_eq!(failing_var(&[("HP_FRP_ADDRESS", "")]), "HP_FRP_ADDRESS");
    assert_eq!(failing_var(&[("HP_FRP_ADDRESS", "\"\"")]), "HP_FRP_ADDRESS");
    assert_eq!(
        failing_var(&[("NC_INSTANCE_URL", "nc.example")]),
        "NC_INSTANCE_URL"
    );
}

#[test]
fn item09_session_lifetime_bounds() {
    for bad in ["10.5", "-1", "abc", "NaN", "inf"] {
        assert_eq!(
            failing_var(&[("HP_SESSION_LIFETIME", bad)]),
            "HP_SESSION_LIFETIME",
            "{bad}"
        );
    }
    assert_eq!(
        load(&[("HP_SESSION_LIFETIME", "0")])
            .unwrap()
            .session_lifetime,
        Duration::ZERO
    );
    assert_eq!(
        load(&[("HP_SESSION_LIFETIME", "10")])
            .unwrap()
            .session_lifetime,
        Duration::from_secs(10)
    );
    assert_eq!(
        load(&[("HP_SESSION_LIFETIME", "0.5")])
            .unwrap()
            .session_lifetime,
        Duration::from_millis(500)
    );
}

#[test]
fn item10_bare_timeout_is_milliseconds() {
    assert_eq!(
        load(&[("HP_TIMEOUT_CONNECT", "30")])
            .unwrap()
            .timeouts
            .connect,
        Duration::from_millis(30)
    );
    assert_eq!(
        load(&[("HP_TIMEOUT_CONNECT", "30s")])
            .unwrap()
            .timeouts
            .connect,
        Duration::from_secs(30)
    );
    assert_eq!(
        failing_var(&[("HP_TIMEOUT_CONNECT", "soon")]),
        "HP_TIMEOUT_CONNECT"
    );
    assert_eq!(
        failing_var(&[("HP_TIMEOUT_CLIENT", "0")]),
        "HP_TIMEOUT_CLIENT"
    );
}

#[test]
fn item11_tunnel_follows_server_timeout() {
    let c = load(&[("HP_TIMEOUT_SERVER", "3600s")]).unwrap();
    assert_eq!(c.timeouts.tunnel, Some(Duration::from_secs(3600)));
    let c = load(&[]).unwrap();
    assert_eq!(c.timeouts.tunnel, Some(Duration::from_secs(1800)));
    assert_eq!(c.timeouts.server, Duration::from_secs(1800));
}

#[test]
fn item12_zero_tunnel_timeout_is_unlimited() {
    for zero in ["0", "0s", "00", "0ms"] {
        assert_eq!(
            load(&[("HP_TIMEOUT_TUNNEL", zero)])
                .unwrap()
                .timeouts
                .tunnel,
            None,
            "{zero}"
        );
    }
}

#[test]
fn empty_addresses_and_timeouts_fall_back_to_defaults() {
    let c = load(&[
        ("HP_EXAPPS_ADDRESS", ""),
        ("HP_TIMEOUT_SERVER", ""),
        ("HP_TIMEOUT_TUNNEL", ""),
    ])
    .unwrap();
    assert_eq!(c.exapps_addr.to_string(), "0.0.0.0:8780");
    assert_eq!(c.timeouts.server, Duration::from_secs(1800));
    assert!(c.warnings.iter().any(|w| w.contains("HP_EXAPPS_ADDRESS")));
}

#[test]
fn item15_trusted_proxies_from_env() {
    let c = load(&[(
        "HP_TRUSTED_PROXY_IPS",
        "\"10.0.0.0/8, 192.168.1.7/24, bogus\"",
    )])
    .unwrap();
    let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, vec!["10.0.0.0/8", "192.168.1.0/24"]);
    assert_eq!(
        c.warnings.iter().filter(|w| w.contains("invalid")).count(),
        1
    );
}

#[test]
fn item16_log_levels_case_insensitive_and_unknown_tolerated() {
    assert_eq!(
        load(&[("HP_LOG_LEVEL", "INFO")]).unwrap().log_level,
        LogLevel::Info
    );
    assert_eq!(
        load(&[("HP_LOG_LEVEL", "info")]).unwrap().log_level,
        LogLevel::Info
    );
    let c = load(&[("HP_LOG_LEVEL", "verbose")]).unwrap();
    assert_eq!(c.log_level, LogLevel::Warning);
    assert!(c.warnings.iter().any(|w| w.contains("HP_LOG_LEVEL")));
}

#[test]
fn issue11_log_format_defaults_to_text_and_unknown_warns() {
    assert_eq!(load(&[]).unwrap().log_format, LogFormat::Text);
    assert_eq!(
        load(&[("HP_LOG_FORMAT", "JSON")]).unwrap().log_format,
        LogFormat::Json
    );
    let c = load(&[("HP_LOG_FORMAT", "yaml")]).unwrap();
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.warnings.iter().any(|w| w.contains("HP_LOG_FORMAT")));
}

#[test]
fn issue11_metrics_address_is_off_unless_set_and_validated() {
    assert!(load(&[]).unwrap().metrics_addr.is_none());
    assert!(load(&[("HP_METRICS_ADDRESS", "")])
        .unwrap()
        .metrics_addr
        .is_none());
    let c = load(&[("HP_METRICS_ADDRESS", "127.0.0.1:9100")]).unwrap();
    assert_eq!(c.metrics_addr.unwrap().port, 9100);
    assert_eq!(
        failing_var(&[("HP_METRICS_ADDRESS", "nonsense")]),
        "HP_METRICS_ADDRESS"
    );
}

#[test]
fn blacklist_values_must_be_integers() {
    assert_eq!(
        failing_var(&[("HP_BLACKLIST_WINDOW", "5m")]),
        "HP_BLACKLIST_WINDOW"
    );
    assert_eq!(
        failing_var(&[("HP_BLACKLIST_COUNT", "-3")]),
        "HP_BLACKLIST_COUNT"
    );
    let c = load(&[("HP_BLACKLIST_WINDOW", "60"), ("HP_BLACKLIST_COUNT", "3")]).unwrap();
    assert_eq!(
        (c.blacklist_window, c.blacklist_count),
        (Duration::from_secs(60), 3)
    );
}

#[test]
fn item21_cert_validity_checked_on_demand() {
    let c = load(&[("HP_FRP_CERT_VALIDITY_DAYS", "abc")]).expect("not checked at start");
    assert_eq!(
        c.frp_cert_validity_days().unwrap_err().var,
        "HP_FRP_CERT_VALIDITY_DAYS"
    );
    assert_eq!(load(&[]).unwrap().frp_cert_validity_days().unwrap(), 5000);
    let zero = load(&[("HP_FRP_CERT_VALIDITY_DAYS", "0")]).unwrap();
    assert!(zero.frp_cert_validity_days().is_err());
}

#[test]
fn nextcloud_url_normalisation() {
    assert_eq!(normalise_nextcloud_url("http://nc/"), "http://nc");
    assert_eq!(normalise_nextcloud_url("http://nc/index.php/"), "http://nc");
    assert_eq!(
        normalise_nextcloud_url("https://host/sub/"),
        "https://host/sub"
    );
    let c = load(&[("NC_INSTANCE_URL", "'https://nc/index.php/'")]).unwrap();
    assert_eq!(c.nextcloud_base, "https://nc");
}

#[test]
fn quote_stripping_is_four_independent_removals() {
    assert_eq!(strip_quotes("\"abc"), "abc");
    assert_eq!(strip_quotes("\"'abc'\""), "abc");
    assert_eq!(strip_quotes("'abc\""), "abc");
    assert_eq!(strip_quotes("a\"b"), "a\"b");
    assert_eq!(strip_quotes(" abc "), " abc ");
}

#[test]
fn disable_tls_only_for_exact_true() {
    assert!(
        load(&[("HP_FRP_DISABLE_TLS", "true")])
            .unwrap()
            .frp_disable_tls
    );
    assert!(
        !load(&[("HP_FRP_DISABLE_TLS", "TRUE")])
            .unwrap()
            .frp_disable_tls
    );
    assert!(
        !load(&[("HP_FRP_DISABLE_TLS", "1")])
            .unwrap()
            .frp_disable_tls
    );
}

#[test]
fn describe_masks_the_key() {
    let c = load(&[("HP_SHARED_KEY", "supersecretvalue")]).unwrap();
    let text = c.describe().join("\n");
    assert!(!text.contains("supersecretvalue"));
    assert!(
        format!("{c:?}").find("supersecretvalue").is_none(),
        "Debug must mask the key"
    );
    for var in VARIABLES
        .iter()
        .filter(|v| v.name.starts_with("HP_") && !v.name.contains(','))
    {
        if ["HP_SHARED_KEY_FILE", "HP_SPOA_ADDRESS"].contains(&var.name) {
            continue;
        }
        assert!(
            text.contains(&format!("{}=", var.name)),
            "{} missing from describe()",
            var.name
        );
    }
}

#[test]
fn invalid_addresses_name_their_variable() {
    assert_eq!(
        failing_var(&[("HP_EXAPPS_ADDRESS", "nonsense")]),
        "HP_EXAPPS_ADDRESS"
    );
    assert_eq!(
        failing_var(&[("HP_EXAPPS_HTTPS_ADDRESS", "x:99999")]),
        "HP_EXAPPS_HTTPS_ADDRESS"
    );
    assert_eq!(
        failing_var(&[("HP_MAX_CONNECTIONS", "0")]),
        "HP_MAX_CONNECTIONS"
    );
}

#[test]
fn workers_default_to_cpus_and_are_bounded() {
    assert!(load(&[]).unwrap().workers >= 1);
    assert_eq!(load(&[("HP_WORKERS", "3")]).unwrap().workers, 3);
    assert_eq!(failing_var(&[("HP_WORKERS", "0")]), "HP_WORKERS");
    assert_eq!(failing_var(&[("HP_WORKERS", "many")]), "HP_WORKERS");
}

#[test]
fn basic_auth_cache_switch() {
    assert!(load(&[]).unwrap().basic_auth_cache, "on by default");
    assert!(
        load(&[("HP_BASIC_AUTH_CACHE", "TRUE")])
            .unwrap()
            .basic_auth_cache
    );
    assert!(
        !load(&[("HP_BASIC_AUTH_CACHE", "false")])
            .unwrap()
            .basic_auth_cache
    );
    assert_eq!(
        failing_var(&[("HP_BASIC_AUTH_CACHE", "no")]),
        "HP_BASIC_AUTH_CACHE"
    );
}

#[test]
fn k8s_settings_are_parsed_described_and_refused_by_variable() {
    let c = load(&[
        ("HP_K8S_ENABLED", "yes"),
        ("HP_K8S_NAMESPACE", "apps"),
        ("HP_K8S_BEARER_TOKEN", "tok-value-not-shown"),
    ])
    .unwrap();
    assert!(c.k8s.enabled);
    assert_eq!(c.k8s.namespace, "apps");
    // The backend exists now: enabling it is not a warning.
    assert!(!c.warnings.iter().any(|w| w.starts_with("HP_K8S_ENABLED")));
    let described = c.describe().join("\n");
    assert!(described.contains("HP_K8S_NAMESPACE=apps"));
    assert!(!described.contains("tok-value-not-shown"));
    assert!(!load(&[]).unwrap().k8s.enabled);
    assert_eq!(
        failing_var(&[("HP_K8S_HOST_ALIASES", "broken")]),
        "HP_K8S_HOST_ALIASES"
    );
}
