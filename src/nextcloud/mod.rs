//! Nextcloud: the two endpoints harp asks (`exapp-meta`, `user-info`, contract §2.6/§3) and the
//! caches in front of them: positive metadata cache (no expiry), 15 s negative cache, session
//! cache keyed by `oc_sessionPassphrase`, single-flight for concurrent misses.
//!
//! Owns no routing decisions (those are `pipeline`'s) and never talks to ExApps.

mod cache;
mod client;
mod record;
mod singleflight;

pub(crate) use cache::{MetaCache, SessionCache};
pub(crate) use client::{NextcloudClient, NextcloudError};
pub use record::ExAppRecord;
pub(crate) use record::{parse_record, RecordError};
pub(crate) use singleflight::SingleFlight;

use http::HeaderMap;
use std::sync::Arc;
use std::time::Duration;

/// A user as Nextcloud's user-info describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub user_id: String,
    pub access_level: u8,
}

/// Outcome of a metadata lookup (contract §2.2 step 6).
#[derive(Debug, Clone)]
pub enum MetaLookup {
    Found(Arc<ExAppRecord>),
    NotFound,
    Error(String),
}

/// Outcome of a user lookup (contract §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    User(UserInfo),
    /// Nextcloud answered 4xx: treat the caller as anonymous.
    Anonymous,
    Failed(String),
}

/// The client plus its caches: what the request pipeline asks.
pub struct Nextcloud {
    client: NextcloudClient,
    meta: Arc<MetaCache>,
    sessions: Arc<SessionCache>,
    meta_flights: SingleFlight<String, MetaLookup>,
    user_flights: SingleFlight<String, UserLookup>,
}

impl Nextcloud {
    pub fn new(client: NextcloudClient, session_lifetime: Duration) -> Nextcloud {
        Nextcloud {
            client,
            meta: Arc::new(MetaCache::default()),
            sessions: Arc::new(SessionCache::new(session_lifetime)),
            meta_flights: SingleFlight::default(),
            user_flights: SingleFlight::default(),
        }
    }

    pub fn meta_cache(&self) -> &MetaCache {
        &self.meta
    }

    /// A handle on the metadata cache for its other writer, the `/exapp_storage` control path.
    pub fn meta_cache_handle(&self) -> Arc<MetaCache> {
        self.meta.clone()
    }

    pub(crate) fn session_cache(&self) -> &SessionCache {
        &self.sessions
    }

    /// Nextcloud lookups some request is still waiting for (metadata and user-info).
    pub fn lookups_in_flight(&self) -> usize {
        self.meta_flights.in_flight() + self.user_flights.in_flight()
    }

    /// Cached record, cached absence, or one shared Nextcloud call per app id.
    pub async fn metadata(&self, app_lower: &str) -> MetaLookup {
        let now = std::time::Instant::now();
        if let Some(hit) = self.meta.lookup(app_lower, now) {
            return hit;
        }
        let client = self.client.clone();
        let cache = self.meta.clone();
        let id = app_lower.to_string();
        self.meta_flights
            .run(app_lower.to_string(), move || async move {
                let result = client.exapp_meta(&id).await;
                let now = std::time::Instant::now();
                cache.remember(&id, result, now)
            })
            .await
    }

    /// Session-cached user for a cookie, otherwise one shared user-info call per cookie.
    pub async fn user(
        &self,
        app_lower: &str,
        headers: &HeaderMap,
        session_cookie: &str,
    ) -> UserLookup {
        if session_cookie.is_empty() {
            return self.client.user_info(app_lower, headers).await;
        }
        if let Some(user) = self.sessions.get(session_cookie) {
            return UserLookup::User(user);
        }
        let client = self.client.clone();
        let sessions = self.sessions.clone();
        let (app, cookie, headers) = (
            app_lower.to_string(),
            session_cookie.to_string(),
            headers.clone(),
        );
        self.user_flights
            .run(session_cookie.to_string(), move || async move {
                let result = client.user_info(&app, &headers).await;
                if let UserLookup::User(user) = &result {
                    sessions.insert(&cookie, user.clone());
                }
                result
            })
            .await
    }
}
