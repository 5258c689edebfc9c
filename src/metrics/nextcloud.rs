//! Handles for the Nextcloud calls (`exapp-meta`, `user-info`): results, latency, cache
//! answers and single-flight waits. `nextcloud` holds a clone and records into it.

use super::LATENCY;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Call {
    exapp_meta,
    user_info,
}

/// `ok` (a record or a user), `absent` (no such app; anonymous), `failed` (error, timeout).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum CallResult {
    ok,
    absent,
    failed,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum CacheResult {
    hit,
    miss,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: Call,
    result: CallResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallOnly {
    call: Call,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    call: Call,
    result: CacheResult,
}

#[derive(Clone)]
pub(crate) struct NextcloudMetrics {
    calls: Family<CallLabels, Counter>,
    seconds: Family<CallOnly, Histogram>,
    /// The four `nextcloud_cache` series, created at start so a cache answer (every decided
    /// request) is one atomic add instead of a label-set lookup: `[call][hit]`.
    cache: [[Counter; 2]; 2],
    pub(crate) coalesced: Counter,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(LATENCY.0, LATENCY.1, LATENCY.2))
}

impl NextcloudMetrics {
    pub(super) fn register(registry: &mut Registry) -> NextcloudMetrics {
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "nextcloud_calls",
            "Calls to Nextcloud by call and result",
            calls.clone(),
        );
        let seconds = Family::<CallOnly, Histogram>::new_with_constructor(histogram as fn() -> _);
        registry.register(
            "nextcloud_call_duration_seconds",
            "Duration of calls to Nextcloud",
            seconds.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "nextcloud_cache",
            "Metadata and session cache answers (hit) and lookups that needed Nextcloud (miss)",
            cache.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "nextcloud_coalesced_waits",
            "Lookups that joined a Nextcloud call already under way (single flight)",
            coalesced.clone(),
        );
        let series = |call| {
            [CacheResult::miss, CacheResult::hit]
                .map(|result| cache.get_or_create(&CacheLabels { call, result }).clone())
        };
        NextcloudMetrics {
            calls,
            seconds,
            cache: [series(Call::exapp_meta), series(Call::user_info)],
            coalesced,
        }
    }

    pub(crate) fn call(&self, call: Call, result: CallResult, took: Duration) {
        self.calls.get_or_create(&CallLabels { call, result }).inc();
        self.seconds
            .get_or_create(&CallOnly { call })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn cache(&self, call: Call, hit: bool) {
        self.cache[call as usize][usize::from(hit)].inc();
    }
}
