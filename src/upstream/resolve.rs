//! Name resolution of ExApp hosts (contract §2.2 step 9): a host written as an IP address is
//! used as is; a hostname is resolved once (IPv4 preferred, [`RESOLVE_TIMEOUT`] cap) and the
//! answer memoised until a connect to it fails, so the hot path does no DNS.
//!
//! Owns the memo and its bound; does not decide which host an app has (`nextcloud`'s record
//! says) nor what a failed resolution answers to the client (`frontdoor`).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Longest wait for one hostname lookup.
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on memoised hostnames; hostnames come from ExApp metadata, so a full memo means
/// something unusual, and starting over costs one lookup per host.
const MAX_MEMO: usize = 4096;

/// Why a host has no usable address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("cannot resolve {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("resolving {0} took longer than {RESOLVE_TIMEOUT:?}")]
    Timeout(String),
    #[error("{0} has no address")]
    NoAddress(String),
}

/// The shared memo of resolved ExApp hostnames (one for every worker).
#[derive(Default)]
pub struct Resolver {
    memo: Mutex<HashMap<String, IpAddr>>,
}

impl Resolver {
    /// The address to connect to for `host`.
    pub async fn resolve(&self, host: &str) -> Result<IpAddr, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Some(ip) = self.memoised(host) {
            return Ok(ip);
        }
        // The port is irrelevant to the answer; getaddrinfo just wants one.
        let lookup = tokio::net::lookup_host((host, 0));
        let addrs: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            Ok(Err(e)) => {
                return Err(ResolveError::Lookup {
                    host: host.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(_) => return Err(ResolveError::Timeout(host.to_string())),
        };
        let ip = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| ResolveError::NoAddress(host.to_string()))?;
        let mut memo = self.memo.lock();
        if memo.len() >= MAX_MEMO {
            memo.clear();
        }
        memo.insert(host.to_string(), ip);
        Ok(ip)
    }

    /// The memoised address of a hostname, if any (also for inspection in tests).
    pub fn memoised(&self, host: &str) -> Option<IpAddr> {
        self.memo.lock().get(host).copied()
    }

    /// Forgets `host` so the next request resolves it again (after a connect failure: the
    /// container behind the name may have moved).
    pub fn forget(&self, host: &str) {
        self.memo.lock().remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ip_host_is_used_as_is_and_never_memoised() {
        let r = Resolver::default();
        assert_eq!(r.resolve("10.1.2.3").await, Ok("10.1.2.3".parse().unwrap()));
        assert_eq!(r.memoised("10.1.2.3"), None);
    }

    #[tokio::test]
    async fn item91_hostname_resolved_once_ipv4_preferred_and_forgotten_on_demand() {
        let r = Resolver::default();
        let ip = r.resolve("localhost").await.unwrap();
        assert!(ip.is_ipv4(), "IPv4 preferred, got {ip}");
        assert_eq!(r.memoised("localhost"), Some(ip));
        r.forget("localhost");
        assert_eq!(r.memoised("localhost"), None);
        assert!(r.resolve("no-such-host.invalid").await.is_err());
        assert_eq!(r.memoised("no-such-host.invalid"), None);
    }

    #[tokio::test]
    async fn a_memoised_answer_is_served_without_a_lookup() {
        let r = Resolver::default();
        // A name that cannot resolve: only the memo can answer for it.
        let fake = "memo-only.invalid";
        r.memo
            .lock()
            .insert(fake.into(), "192.0.2.7".parse().unwrap());
        assert_eq!(r.resolve(fake).await, Ok("192.0.2.7".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_memo_stays_bounded() {
        let r = Resolver::default();
        for i in 0..MAX_MEMO {
            r.memo
                .lock()
                .insert(format!("h{i}.invalid"), [10, 0, 0, 1].into());
        }
        r.resolve("localhost").await.unwrap();
        assert!(r.memo.lock().len() <= MAX_MEMO);
        assert!(r.memoised("localhost").is_some());
    }
}
