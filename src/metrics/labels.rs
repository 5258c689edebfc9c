//! Bounded app labels: the first [`super::MAX_APP_LABELS`] distinct validated app ids each get
//! a label; later ones share [`super::OVERFLOW_APP`], so no input can grow the series set
//! without bound. Labels are interned `Arc<str>`: a known app costs a read lock and a
//! reference-count increment per request, no allocation.

use super::{AppLabel, OVERFLOW_APP};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

pub(crate) struct AppLabels {
    cap: usize,
    known: RwLock<HashSet<Arc<str>>>,
    overflow: Arc<str>,
}

impl AppLabels {
    pub(crate) fn new(cap: usize) -> AppLabels {
        AppLabels {
            cap,
            known: RwLock::new(HashSet::with_capacity(cap.min(64))),
            overflow: Arc::from(OVERFLOW_APP),
        }
    }

    /// The label for `app`, interned; the overflow label once `cap` ids are known.
    pub(crate) fn label(&self, app: &str) -> AppLabel {
        // A poisoned lock only means another thread panicked mid-insert; the set is still valid.
        if let Some(hit) = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
        {
            return AppLabel(hit.clone());
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = known.get(app) {
            return AppLabel(hit.clone());
        }
        if known.len() >= self.cap {
            return AppLabel(self.overflow.clone());
        }
        let label: Arc<str> = Arc::from(app);
        known.insert(label.clone());
        AppLabel(label)
    }
}
