//! The live [`Context`] the pipeline decides with: the shared key, the ban list and Nextcloud.
//! Owns no policy (that is `pipeline::decide`); only answers its questions and records the
//! failures it reports.

use crate::nextcloud::{MetaLookup, Nextcloud, UserLookup};
use crate::pipeline::Context;
use crate::security::{BanList, SharedKey};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) struct Gate {
    pub(crate) key: SharedKey,
    pub(crate) bans: Arc<BanList>,
    pub(crate) nextcloud: Arc<Nextcloud>,
}

impl Context for Gate {
    fn key(&self) -> &SharedKey {
        &self.key
    }

    fn is_banned(&self, ip: IpAddr) -> bool {
        self.bans.is_banned(ip)
    }

    fn record_failure(&self, ip: IpAddr, reason: &'static str) {
        let count = self.bans.record(ip);
        // The request's log context (`logging`) carries the client address.
        tracing::warn!(failures = count, reason, "brute-force failure recorded");
    }

    async fn metadata(&self, app_lower: &str) -> MetaLookup {
        self.nextcloud.metadata(app_lower).await
    }

    async fn user(&self, app_lower: &str, headers: &HeaderMap, cookie: &str) -> UserLookup {
        self.nextcloud.user(app_lower, headers, cookie).await
    }
}
