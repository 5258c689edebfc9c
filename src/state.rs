//! The shared state every request sees, and its [`Context`] implementation for the pipeline.

use crate::config::Config;
use crate::nextcloud::{MetaLookup, Nextcloud, UserLookup};
use crate::pipeline::Context;
use crate::security::{BanList, SharedKey};
use crate::upstream::{Forwarder, LocalDialers};
use http::HeaderMap;
use std::net::IpAddr;

pub struct AppState {
    pub config: Config,
    pub key: SharedKey,
    pub bans: BanList,
    pub nextcloud: Nextcloud,
    /// Upstream client for control-path calls (Docker wrappers); workers have their own.
    pub forwarder: Forwarder,
    /// Who serves loopback ports without TCP (the Docker socket, FRP tunnels).
    pub dialers: LocalDialers,
}

impl AppState {
    /// A fresh upstream client with its own connection pool, for one worker's runtime.
    pub fn new_forwarder(&self) -> Forwarder {
        let t = &self.config.timeouts;
        Forwarder::new(t.connect, t.server, t.tunnel, self.dialers.clone())
    }
}

impl Context for AppState {
    fn key(&self) -> &SharedKey {
        &self.key
    }

    fn is_banned(&self, ip: IpAddr) -> bool {
        self.bans.is_banned(ip)
    }

    fn record_failure(&self, ip: IpAddr, reason: &'static str) {
        let count = self.bans.record(ip);
        tracing::warn!(client = %ip, failures = count, reason, "brute-force failure recorded");
    }

    async fn metadata(&self, app_lower: &str) -> MetaLookup {
        self.nextcloud.metadata(app_lower).await
    }

    async fn user(&self, app_lower: &str, headers: &HeaderMap, cookie: &str) -> UserLookup {
        self.nextcloud.user(app_lower, headers, cookie).await
    }
}
