//! Single flight: concurrent callers for the same key share one execution and its result, so a
//! cold cache under load asks Nextcloud once, not once per request.

use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

pub struct SingleFlight<K, V: Clone> {
    flights: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// Runs `make()` unless a flight for `key` is already under way, then awaits the shared result.
    pub async fn run<F, Fut>(&self, key: K, make: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock();
            flights
                .entry(key.clone())
                .or_insert_with(|| make().boxed().shared())
                .clone()
        };
        let value = flight.clone().await;
        let mut flights = self.flights.lock();
        if flights.get(&key).is_some_and(|f| f.ptr_eq(&flight)) {
            flights.remove(&key);
        }
        value
    }

    pub fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_execution() {
        let sf = Arc::new(SingleFlight::<String, u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (sf, calls) = (sf.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k".into(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sf.in_flight(), 0);
        let again = sf.run("k".into(), || async { 8 }).await;
        assert_eq!(again, 8, "a finished flight is not reused");
    }
}
