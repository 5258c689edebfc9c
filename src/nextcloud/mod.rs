//! Nextcloud: the two endpoints harp asks (`exapp-meta`, `user-info`, contract §2.6/§3) and the
//! caches in front of them: positive metadata cache (no expiry), 15 s negative cache, session
//! cache keyed by `oc_sessionPassphrase`, Basic-auth cache keyed by a keyed digest of the
//! `Authorization` header (`basic`; an improvement over contract §2.6, `HP_BASIC_AUTH_CACHE`),
//! single-flight for concurrent misses.
//!
//! Owns no routing decisions (those are `pipeline`'s) and never talks to ExApps.

mod basic;
mod cache;
mod client;
mod record;
mod singleflight;

pub(crate) use cache::{MetaCache, SessionCache};
pub(crate) use client::{MetaFetch, NextcloudClient, NextcloudError};
pub use record::ExAppRecord;
pub(crate) use record::{parse_record, RecordError};
pub(crate) use singleflight::SingleFlight;

use crate::metrics::{Call, CallResult, NextcloudMetrics};
use basic::{BasicAuthKey, BasicDigest};
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

/// Asked after every metadata fetch from Nextcloud: where a backend that places ExApps itself
/// (Kubernetes) says the ExApp really is. `Ok(None)`: keep Nextcloud's host and port; `Err`:
/// the fetch fails and nothing is cached (a stale address must not stick). A closure rather
/// than a trait on the backend so this module imports nothing of it.
pub(crate) type UpstreamHook = Arc<
    dyn Fn(
            String,
        )
            -> futures_util::future::BoxFuture<'static, Result<Option<(String, u16)>, String>>
        + Send
        + Sync,
>;

/// The client plus its caches: what the request pipeline asks.
pub struct Nextcloud {
    client: NextcloudClient,
    meta: Arc<MetaCache>,
    sessions: Arc<SessionCache>,
    /// `None` when `HP_BASIC_AUTH_CACHE=false`: every Basic-auth request asks Nextcloud.
    basic_key: Option<BasicAuthKey>,
    basic: Arc<SessionCache<BasicDigest>>,
    meta_flights: SingleFlight<String, MetaLookup>,
    user_flights: SingleFlight<String, UserLookup>,
    /// `None` when metrics are off.
    metrics: Option<NextcloudMetrics>,
    basic_flights: SingleFlight<BasicDigest, UserLookup>,
    upstream: Option<UpstreamHook>,
}

impl Nextcloud {
    pub fn new(client: NextcloudClient, session_lifetime: Duration) -> Nextcloud {
        Nextcloud {
            client,
            meta: Arc::new(MetaCache::default()),
            sessions: Arc::new(SessionCache::new(session_lifetime)),
            basic_key: Some(BasicAuthKey::random()),
            basic: Arc::new(SessionCache::new(session_lifetime)),
            meta_flights: SingleFlight::default(),
            user_flights: SingleFlight::default(),
            basic_flights: SingleFlight::default(),
            metrics: None,
            upstream: None,
        }
    }

    /// Counts calls, cache hits and coalesced waits into `metrics` (built in `start::build`).
    pub(crate) fn with_metrics(mut self, metrics: NextcloudMetrics) -> Nextcloud {
        self.meta_flights.coalesced = metrics.coalesced.clone();
        self.user_flights.coalesced = metrics.coalesced.clone();
        self.basic_flights.coalesced = metrics.coalesced.clone();
        self.metrics = Some(metrics);
        self
    }

    /// Asks `hook` for each fetched ExApp's real upstream (the Kubernetes backend).
    pub(crate) fn with_upstream_hook(mut self, hook: UpstreamHook) -> Nextcloud {
        self.upstream = Some(hook);
        self
    }

    /// `HP_BASIC_AUTH_CACHE`: whether Authorization-only answers are cached (on by default).
    pub fn with_basic_auth_cache(mut self, enabled: bool) -> Nextcloud {
        if !enabled {
            self.basic_key = None;
        }
        self
    }

    pub fn meta_cache(&self) -> &MetaCache {
        &self.meta
    }

    /// A handle on the metadata cache for its other writer, the `/exapp_storage` control path.
    pub fn meta_cache_handle(&self) -> Arc<MetaCache> {
        self.meta.clone()
    }

    /// Drops expired cookie and Basic-auth answers (the supervisor calls this periodically).
    pub(crate) fn sweep_sessions(&self) {
        self.sessions.sweep();
        self.basic.sweep();
    }

    /// Nextcloud lookups some request is still waiting for (metadata and user-info).
    pub fn lookups_in_flight(&self) -> usize {
        self.meta_flights.in_flight()
            + self.user_flights.in_flight()
            + self.basic_flights.in_flight()
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
        let upstream = self.upstream.clone();
        self.meta_flights
            .run(app_lower.to_string(), move || async move {
                let started = std::time::Instant::now();
                let mut result = client.exapp_meta(&id).await;
                if let Some(m) = &metrics {
                    let result = match &result {
                        MetaFetch::Found(_) => CallResult::ok,
                        MetaFetch::NotFound => CallResult::absent,
                        MetaFetch::Error(_) => CallResult::failed,
                    };
                    m.call(Call::exapp_meta, result, started.elapsed());
                }
                if let (MetaFetch::Found(record), Some(hook)) = (&mut result, &upstream) {
                    match hook(id.clone()).await {
                        Ok(Some((host, port))) => {
                            tracing::info!(app = %id, %host, port, "upstream resolved from the cluster");
                            record.host = host;
                            record.port = port;
                        }
                        Ok(None) => {}
                        Err(e) => result = MetaFetch::Error(e),
                    }
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
            return self.basic_user(app_lower, headers).await;
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
                let result = Self::counted_user_info(&client, &metrics, &app, &headers).await;
                if let UserLookup::User(user) = &result {
                    sessions.insert(cookie, user.clone());
                }
                result
            })
            .await
    }

    /// One user-info call to Nextcloud, counted and timed when metrics are on.
    async fn counted_user_info(
        client: &NextcloudClient,
        metrics: &Option<NextcloudMetrics>,
        app: &str,
        headers: &HeaderMap,
    ) -> UserLookup {
        let started = std::time::Instant::now();
        let result = client.user_info(app, headers).await;
        if let Some(m) = metrics {
            let outcome = match &result {
                UserLookup::User(_) => CallResult::ok,
                UserLookup::Anonymous => CallResult::absent,
                UserLookup::Failed(_) => CallResult::failed,
            };
            m.call(Call::user_info, outcome, started.elapsed());
        }
        result
    }

    /// A request without a session cookie: cached by credential digest when it carries only
    /// `Authorization`, otherwise asked every time (contract §2.6).
    ///
    /// Only a known user (non-empty `user_id`) is cached. A wrong password makes Nextcloud answer
    /// `user_id: ""` (or 4xx); neither is cached, so every guess still costs a Nextcloud call,
    /// where Nextcloud's own brute-force throttling sees it, and reaches harp's route check,
    /// which records the failure. Concurrent guesses with one credential share a flight but
    /// each is still decided (and recorded) on its own.
    async fn basic_user(&self, app_lower: &str, headers: &HeaderMap) -> UserLookup {
        let Some(digest) = self
            .basic_key
            .as_ref()
            .and_then(|key| key.digest(app_lower, headers))
        else {
            return Self::counted_user_info(&self.client, &self.metrics, app_lower, headers).await;
        };
        let cached = self.basic.get(&digest);
        if let Some(m) = &self.metrics {
            m.cache(Call::user_info, cached.is_some());
        }
        if let Some(user) = cached {
            return UserLookup::User(user);
        }
        let client = self.client.clone();
        let cache = self.basic.clone();
        let (app, headers, key) = (app_lower.to_string(), headers.clone(), digest.clone());
        let metrics = self.metrics.clone();
        self.basic_flights
            .run(digest, move || async move {
                let result = Self::counted_user_info(&client, &metrics, &app, &headers).await;
                if let UserLookup::User(user) = &result {
                    if !user.user_id.is_empty() {
                        cache.insert(key, user.clone());
                    }
                }
                result
            })
            .await
    }
}
