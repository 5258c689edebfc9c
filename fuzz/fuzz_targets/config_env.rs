//! `Config::from_vars` (the environment parser) over a fuzzed variable map, and the value
//! parsers it uses (HAProxy times, trusted proxies, addresses).
//!
//! Input: lines `<selector><value>`; a selector character below U+001A picks a known variable
//! (so the fuzzer reaches every one); any other line is `NAME=value`.
//! `HP_SHARED_KEY_FILE` is never set: it reads a file, and a fuzzer must not touch the disk.
//!
//! Invariant besides "never panics": the shared key never shows. The same map is parsed again
//! with a different key of the same length and class; the outcome, the `harp check` output
//! (`describe`), the warnings and any error message must be identical, so nothing printed can
//! depend on the key.
#![no_main]

use harp::config::{parse_haproxy_time, parse_trusted_proxies, BindAddr, Config};
use harp_fuzz::cap_heap;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

cap_heap!();

const NAMES: &[&str] = &[
    "HP_SHARED_KEY",
    "NC_INSTANCE_URL",
    "HP_EXAPPS_ADDRESS",
    "HP_EXAPPS_HTTPS_ADDRESS",
    "HP_FRP_ADDRESS",
    "HP_FRP_DISABLE_TLS",
    "HP_FRP_CERT_VALIDITY_DAYS",
    "HP_TRUSTED_PROXY_IPS",
    "HP_LOG_LEVEL",
    "HP_VERBOSE_START",
    "HP_SESSION_LIFETIME",
    "HP_BLACKLIST_WINDOW",
    "HP_BLACKLIST_COUNT",
    "HP_TIMEOUT_CONNECT",
    "HP_TIMEOUT_CLIENT",
    "HP_TIMEOUT_SERVER",
    "HP_TIMEOUT_TUNNEL",
    "HP_MAX_CONNECTIONS",
    "HP_WORKERS",
    "HP_CERTS_DIR",
    "HP_CONFIG_DIR",
    "HP_FRPS_CONFIG",
    "HP_DOCKER_SOCKET",
    "HP_DATA_DIR",
    "HP_WATCHDOG_INTERVAL",
    "HP_WATCHDOG_FAILS",
];

/// The same key with every character replaced by another of its class, so validity (printable
/// ASCII, no `"` or `\`, quotes stripped at the ends) does not change.
fn twin(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            other => other,
        })
        .collect()
}

fn outcome(vars: &HashMap<String, String>) -> Result<(Vec<String>, Vec<String>), String> {
    match Config::from_vars(vars) {
        Ok(c) => Ok((c.describe(), c.warnings.clone())),
        Err(e) => Err(e.to_string()),
    }
}

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let mut vars = HashMap::new();
    for line in text.split('\n') {
        let Some(sel) = line.chars().next() else {
            continue;
        };
        let value = &line[sel.len_utf8()..];
        match NAMES.get(sel as usize) {
            Some(name) => {
                vars.insert((*name).to_string(), value.to_string());
            }
            None => {
                if let Some((name, value)) = line.split_once('=') {
                    vars.insert(name.to_string(), value.to_string());
                }
            }
        }
        // The value parsers on their own, on every value.
        let _ = parse_haproxy_time(value);
        let _ = parse_trusted_proxies(value);
        let _ = BindAddr::parse(value);
    }
    vars.remove("HP_SHARED_KEY_FILE");

    let first = outcome(&vars);
    if let Some(key) = vars.get("HP_SHARED_KEY").cloned() {
        let other = twin(&key);
        if other != key {
            vars.insert("HP_SHARED_KEY".into(), other);
            assert_eq!(first, outcome(&vars), "what harp prints depends on the key");
        }
    }
});
