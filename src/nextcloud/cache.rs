//! The metadata caches (contract §3.3) and the session caches (contract §2.6), all bounded.

use super::client::MetaFetch;
use super::{ExAppRecord, MetaLookup, UserInfo};
use parking_lot::{Mutex, RwLock};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long "this ExApp does not exist" is believed.
pub(super) const NEGATIVE_TTL: Duration = Duration::from_secs(15);
/// Bound on negative and session entries; beyond it expired entries are swept first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct MetaCache {
    positive: RwLock<HashMap<String, Arc<ExAppRecord>>>,
    negative: Mutex<HashMap<String, Instant>>,
}

impl MetaCache {
    /// A cached answer, if any: a record (no expiry) or a fresh "does not exist".
    pub fn lookup(&self, id: &str, now: Instant) -> Option<MetaLookup> {
        if let Some(rec) = self.positive.read().get(id) {
            return Some(MetaLookup::Found(rec.clone()));
        }
        let mut negative = self.negative.lock();
        match negative.get(id) {
            Some(at) if now.duration_since(*at) < NEGATIVE_TTL => Some(MetaLookup::NotFound),
            Some(_) => {
                negative.remove(id);
                None
            }
            None => None,
        }
    }

    /// Caches what Nextcloud said. A record pushed meanwhile by AppAPI wins over a fetch result.
    pub(crate) fn remember(&self, id: &str, fetched: MetaFetch, now: Instant) -> MetaLookup {
        match fetched {
            MetaFetch::Found(record) => {
                let mut positive = self.positive.write();
                let rec = positive
                    .entry(id.to_string())
                    .or_insert_with(|| Arc::new(record));
                MetaLookup::Found(rec.clone())
            }
            MetaFetch::NotFound => {
                if let Some(rec) = self.positive.read().get(id) {
                    return MetaLookup::Found(rec.clone());
                }
                let mut negative = self.negative.lock();
                if negative.len() >= MAX_ENTRIES {
                    negative.retain(|_, at| now.duration_since(*at) < NEGATIVE_TTL);
                }
                if negative.len() < MAX_ENTRIES {
                    negative.insert(id.to_string(), now);
                }
                MetaLookup::NotFound
            }
            MetaFetch::Error(e) => MetaLookup::Error(e),
        }
    }

    /// `POST /exapp_storage/<id>`: replace the record and forget any negative answer.
    pub fn store(&self, id: &str, record: ExAppRecord) {
        self.positive
            .write()
            .insert(id.to_string(), Arc::new(record));
        self.negative.lock().remove(id);
    }

    /// `DELETE /exapp_storage/<id>`: true when something was cached.
    pub fn remove(&self, id: &str) -> bool {
        self.positive.write().remove(id).is_some()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ExAppRecord>> {
        self.positive.read().get(id).cloned()
    }
}

/// User answers by key: the cookie value for sessions, a keyed digest for Basic auth
/// (`super::basic`). Both caches share one lifetime and one bound.
pub(crate) struct SessionCache<K = String> {
    lifetime: Duration,
    entries: Mutex<HashMap<K, (Instant, UserInfo)>>,
}

impl<K: Hash + Eq> SessionCache<K> {
    pub(crate) fn new(lifetime: Duration) -> SessionCache<K> {
        SessionCache {
            lifetime,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<UserInfo>
    where
        K: Borrow<Q>,
    {
        self.get_at(key, Instant::now())
    }

    pub(crate) fn get_at<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: Instant) -> Option<UserInfo>
    where
        K: Borrow<Q>,
    {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some((at, user)) if now.duration_since(*at) <= self.lifetime => Some(user.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, user: UserInfo) {
        self.insert_at(key, user, Instant::now())
    }

    pub(crate) fn insert_at(&self, key: K, user: UserInfo, now: Instant) {
        if self.lifetime.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            let lifetime = self.lifetime;
            entries.retain(|_, (at, _)| now.duration_since(*at) <= lifetime);
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert(key, (now, user));
        }
    }

    /// Drops expired entries (called periodically so idle keys do not accumulate).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let lifetime = self.lifetime;
        self.entries
            .lock()
            .retain(|_, (at, _)| now.duration_since(*at) <= lifetime);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ExAppRecord {
        ExAppRecord::new("t".into(), "1".into(), "127.0.0.1".into(), 9, vec![])
    }

    #[test]
    fn item84_negative_answers_expire_after_15s() {
        let cache = MetaCache::default();
        let t0 = Instant::now();
        cache.remember("foo", MetaFetch::NotFound, t0);
        assert!(matches!(
            cache.lookup("foo", t0 + Duration::from_secs(14)),
            Some(MetaLookup::NotFound)
        ));
        assert!(cache.lookup("foo", t0 + Duration::from_secs(15)).is_none());
    }

    #[test]
    fn item85_errors_are_not_cached() {
        let cache = MetaCache::default();
        let t0 = Instant::now();
        assert!(matches!(
            cache.remember("foo", MetaFetch::Error("500".into()), t0),
            MetaLookup::Error(_)
        ));
        assert!(cache.lookup("foo", t0).is_none());
    }

    #[test]
    fn item87_records_never_expire() {
        let cache = MetaCache::default();
        let t0 = Instant::now();
        cache.remember("foo", MetaFetch::Found(record()), t0);
        assert!(matches!(
            cache.lookup("foo", t0 + Duration::from_secs(86400 * 365)),
            Some(MetaLookup::Found(_))
        ));
    }

    #[test]
    fn item88_push_clears_negative_and_wins_over_fetch() {
        let cache = MetaCache::default();
        let t0 = Instant::now();
        cache.remember("foo", MetaFetch::NotFound, t0);
        cache.store(
            "foo",
            ExAppRecord::new("pushed".into(), "2".into(), "127.0.0.1".into(), 1, vec![]),
        );
        match cache.lookup("foo", t0) {
            Some(MetaLookup::Found(r)) => assert_eq!(r.token, "pushed"),
            other => panic!("{other:?}"),
        }
        match cache.remember("foo", MetaFetch::Found(record()), t0) {
            MetaLookup::Found(r) => {
                assert_eq!(r.token, "pushed", "a late fetch must not overwrite a push")
            }
            other => panic!("{other:?}"),
        }
        assert!(cache.remove("foo"));
        assert!(!cache.remove("foo"));
    }

    #[test]
    fn item76_sessions_live_for_the_lifetime_inclusive() {
        let cache = SessionCache::<String>::new(Duration::from_secs(3));
        let t0 = Instant::now();
        let alice = UserInfo {
            user_id: "alice".into(),
            access_level: 1,
        };
        cache.insert_at("c".to_string(), alice.clone(), t0);
        assert_eq!(cache.get_at("c", t0 + Duration::from_secs(3)), Some(alice));
        assert_eq!(cache.get_at("c", t0 + Duration::from_millis(3001)), None);
        assert_eq!(cache.len(), 0, "expired entries are deleted on lookup");
    }

    #[test]
    fn item77_zero_lifetime_never_caches() {
        let cache = SessionCache::<String>::new(Duration::ZERO);
        cache.insert(
            "c".to_string(),
            UserInfo {
                user_id: "a".into(),
                access_level: 1,
            },
        );
        assert!(cache.is_empty());
    }
}
