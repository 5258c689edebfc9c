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

use crate::metrics::{Call, CallResult, NextcloudMetrics};
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
    /// `None` when metrics are off.
    metrics: Option<NextcloudMetrics>,
}

impl Nextcloud {
    pub fn new(client: NextcloudClient, session_lifetime: Duration) -> Nextcloud {
        Nextcloud {
            client,
            meta: Arc::new(MetaCache::default()),
            sessions: Arc::new(SessionCache::new(session_lifetime)),
            meta_flights: SingleFlight::default(),
            user_flights: SingleFlight::default(),
            metrics: None,
        }
    }

    /// Counts calls, cache hits and coalesced waits into `metrics` (built in `start::build`).
    pub(crate) fn with_metrics(mut self, metrics: NextcloudMetrics) -> Nextcloud {
        self.meta_flights.coalesced = metrics.coalesced.clone();
        self.user_flights.coalesced = metrics.coalesced.clone();
        self.metrics = Some(metrics);
        self
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
        let hit = self.meta.lookup(app_lower, now);
        if let Some(m) = &self.metrics {
            m.cache(Call::exapp_meta, hit.is_some());
        }
        if let Some(hit) = hit {
            return hit;
        }
        let client = self.client.clone();
        let cache = self.meta.clone();
        let id = app_lower.to_string();
        let metrics = self.metrics.clone();
        self.meta_flights
            .run(app_lower.to_string(), move || async move {
                let started = std::time::Instant::now();
                let result = client.exapp_meta(&id).await;
                if let Some(m) = &metrics {
                    let result = match &result {
                        client::MetaFetch::Found(_) => CallResult::ok,
                        client::MetaFetch::NotFound => CallResult::absent,
                        client::MetaFetch::Error(_) => CallResult::failed,
                    };
                    m.call(Call::exapp_meta, result, started.elapsed());
                }
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
        let cached = self.sessions.get(session_cookie);
        if let Some(m) = &self.metrics {
            m.cache(Call::user_info, cached.is_some());
        }
        if let Some(user) = cached {
            return UserLookup::User(user);
        }
        let client = self.client.clone();
        let sessions = self.sessions.clone();
        let (app, cookie, headers) = (
            app_lower.to_string(),
            session_cookie.to_string(),
            headers.clone(),
        );
        let metrics = self.metrics.clone();
        self.user_flights
            .run(session_cookie.to_string(), move || async move {
                let started = std::time::Instant::now();
                let result = client.user_info(&app, &headers).await;
                if let Some(m) = &metrics {
                    let outcome = match &result {
                        UserLookup::User(_) => CallResult::ok,
                        UserLookup::Anonymous => CallResult::absent,
                        UserLookup::Failed(_) => CallResult::failed,
                    };
                    m.call(Call::user_info, outcome, started.elapsed());
                }
                if let UserLookup::User(user) = &result {
                    sessions.insert(&cookie, user.clone());
                }
                result
            })
            .await
    }
}
