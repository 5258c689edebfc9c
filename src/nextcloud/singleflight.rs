//! Single flight: concurrent callers for the same key share one execution and its result, so a
//! cold cache under load asks Nextcloud once, not once per request.
//!
//! Cancellation safety: the map holds only a *weak* handle to each flight. The waiters own it;
//! when the last waiter goes (its client disconnected, or the decision deadline dropped it)
//! the shared future is dropped at once — closing its Nextcloud connection — and the map entry
//! is removed. An earlier version kept the future in the map, so every abandoned lookup held a
//! socket forever (an anonymous client exhausted harp's file descriptors that way).

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

type Flight<V> = Shared<BoxFuture<'static, V>>;
type Flights<K, V> = Mutex<HashMap<K, WeakShared<BoxFuture<'static, V>>>>;

pub(crate) struct SingleFlight<K, V: Clone> {
    flights: Flights<K, V>,
    /// Callers that joined a flight already under way (a metrics counter; an unregistered one
    /// when metrics are off, which costs one atomic add per joined wait).
    pub(crate) coalesced: prometheus_client::metrics::counter::Counter,
}

impl<K, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
            coalesced: Default::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// Runs `make()` unless a flight for `key` is already under way, then awaits the shared result.
    ///
    /// Dropping the returned future before it completes is safe: the flight continues for the
    /// other waiters, and is dropped with its map entry when no waiter is left.
    pub(crate) async fn run<F, Fut>(&self, key: K, make: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock();
            match flights.get(&key).and_then(WeakShared::upgrade) {
                Some(running) => {
                    self.coalesced.inc();
                    running
                }
                None => {
                    let fresh = make().boxed().shared();
                    // `downgrade` is `None` only for a completed flight; this one never ran.
                    if let Some(weak) = fresh.downgrade() {
                        flights.insert(key.clone(), weak);
                    }
                    fresh
                }
            }
        };
        let mut waiter = Waiter {
            flights: &self.flights,
            key,
            flight: Some(flight.clone()),
        };
        let value = flight.await;
        waiter.finished();
        value
    }

    /// Flights with at least one live waiter (entries are removed with their last waiter).
    pub(crate) fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }
}

/// One caller's hold on a flight; its drop releases the flight and tidies the map.
struct Waiter<'a, K: Hash + Eq, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    flight: Option<Flight<V>>,
}

impl<K: Hash + Eq, V: Clone> Waiter<'_, K, V> {
    /// The flight produced its value: later callers must start a new one, not reuse this result.
    fn finished(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let mut flights = self.flights.lock();
        let ours = flights
            .get(&self.key)
            .and_then(WeakShared::upgrade)
            .is_some_and(|current| current.ptr_eq(&flight));
        if ours {
            flights.remove(&self.key);
        }
        drop(flights);
        drop(flight);
    }
}

impl<K: Hash + Eq, V: Clone> Drop for Waiter<'_, K, V> {
    fn drop(&mut self) {
        // Release our handle outside the lock: when it is the last one, the lookup future and
        // its Nextcloud connection are dropped right here.
        drop(self.flight.take());
        let mut flights = self.flights.lock();
        // No live handle left means nobody waits for this flight (or a newer one): forget it, so
        // no later caller can find a dead entry.
        if flights
            .get(&self.key)
            .is_some_and(|weak| weak.upgrade().is_none())
        {
            flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        assert_eq!(
            sf.coalesced.get(),
            49,
            "every caller but the first joined a flight"
        );
        assert_eq!(sf.in_flight(), 0);
        let again = sf.run("k".into(), || async { 8 }).await;
        assert_eq!(again, 8, "a finished flight is not reused");
    }

    /// Sets its flag when dropped: stands in for the Nextcloud connection a lookup owns.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A lookup that holds a [`DropFlag`] and answers only when `answer` fires.
    fn lookup(
        dropped: &Arc<AtomicBool>,
        answer: tokio::sync::oneshot::Receiver<u32>,
    ) -> impl FnOnce() -> BoxFuture<'static, u32> {
        let guard = DropFlag(dropped.clone());
        move || {
            async move {
                let _guard = guard;
                answer.await.unwrap_or(0)
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_flight_is_dropped_with_its_last_waiter() {
        let sf = SingleFlight::<String, u32>::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (_answer, rx) = tokio::sync::oneshot::channel();
        let mut first = Box::pin(sf.run("k".into(), lookup(&dropped, rx)));
        let mut second = Box::pin(sf.run("k".into(), || async { 99 }.boxed()));
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        assert_eq!(sf.in_flight(), 1, "both callers share one flight");
        drop(first);
        assert!(
            !dropped.load(Ordering::SeqCst),
            "one waiter is left: the lookup goes on"
        );
        assert_eq!(sf.in_flight(), 1);
        drop(second);
        assert!(
            dropped.load(Ordering::SeqCst),
            "no waiter left: the lookup (and its socket) is dropped"
        );
        assert_eq!(sf.in_flight(), 0, "and its entry is gone");

        let calls = AtomicUsize::new(0);
        let fresh = sf
            .run("k".into(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { 5 }
            })
            .await;
        assert_eq!(
            (fresh, calls.load(Ordering::SeqCst)),
            (5, 1),
            "a later caller starts a new lookup"
        );
    }

    #[tokio::test]
    async fn the_remaining_waiter_gets_the_value() {
        let sf = SingleFlight::<String, u32>::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (answer, rx) = tokio::sync::oneshot::channel();
        let mut first = Box::pin(sf.run("k".into(), lookup(&dropped, rx)));
        let mut second = Box::pin(sf.run("k".into(), || async { 99 }.boxed()));
        // The first waiter is the one that polled the lookup; it leaves before the answer.
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        drop(first);
        answer.send(42).unwrap();
        let value = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the remaining waiter is woken");
        assert_eq!(value, 42);
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(sf.in_flight(), 0);
    }
}
