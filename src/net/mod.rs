//! Connection plumbing shared by every listener: the one accept loop ([`accept`]) and a
//! rate limit for log lines a hostile peer could otherwise multiply ([`LogRate`]). A leaf
//! module: it imports nothing else from harp, so any listener can use it without cycles.

pub(crate) mod accept;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Lets one log line through per interval and counts the ones held back, so a flood of
/// refused connections costs one line per interval instead of one per connection.
pub(crate) struct LogRate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogRate {
    pub(crate) const fn new(interval: Duration) -> LogRate {
        LogRate {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now, mentioning the `n` occurrences held back since the last line.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_held_back() {
        let rate = LogRate::new(Duration::from_secs(5));
        assert_eq!(rate.check(), Some(0));
        for _ in 0..100 {
            assert_eq!(rate.check(), None);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(rate.check(), Some(100));
        assert_eq!(rate.check(), None);
    }
}
