//! Brute-force ban list (contract §2.11): per client IP, a sliding window of failure times.
//!
//! Improvement over the reference (contract §7 #25): memory is bounded. Entries whose newest
//! failure has left the window are swept periodically, and the number of tracked IPs is capped
//! (when full, the IP with the oldest last failure is forgotten first).

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Upper bound on tracked addresses; far above any real attack's distinct sources per window.
const MAX_TRACKED_IPS: usize = 100_000;

pub struct BanList {
    window: Duration,
    threshold: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl BanList {
    pub fn new(window: Duration, threshold: u32) -> BanList {
        BanList {
            window,
            threshold,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` currently has at least the threshold of failures inside the window.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        // Every request asks, and almost no client is tracked: read the clock only for one that is.
        self.is_banned_with(ip, Instant::now)
    }

    pub fn is_banned_at(&self, ip: IpAddr, now: Instant) -> bool {
        self.is_banned_with(ip, || now)
    }

    fn is_banned_with(&self, ip: IpAddr, now: impl FnOnce() -> Instant) -> bool {
        let map = self.failures.lock();
        let Some(times) = map.get(&ip) else {
            return false;
        };
        let now = now();
        let recent = times
            .iter()
            .filter(|t| now.duration_since(**t) <= self.window)
            .count();
        recent as u64 >= u64::from(self.threshold)
    }

    /// Records one failure and returns how many failures are now inside the window.
    pub fn record(&self, ip: IpAddr) -> usize {
        self.record_at(ip, Instant::now())
    }

    pub fn record_at(&self, ip: IpAddr, now: Instant) -> usize {
        let mut map = self.failures.lock();
        if !map.contains_key(&ip) && map.len() >= MAX_TRACKED_IPS {
            evict_oldest(&mut map);
        }
        let times = map.entry(ip).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            times.pop_front();
        }
        times.push_back(now);
        // A single IP cannot need more timestamps than the threshold to stay banned.
        let cap = (self.threshold as usize).max(1);
        while times.len() > cap {
            times.pop_front();
        }
        let count = times.len();
        drop(map);
        count
    }

    /// Drops every IP without a failure inside the window (called periodically).
    pub fn sweep_at(&self, now: Instant) {
        self.failures.lock().retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) <= self.window)
        });
    }

    pub fn tracked(&self) -> usize {
        self.failures.lock().len()
    }

    /// Failures currently counted for `ip` (for tests and diagnostics).
    pub fn failures_of(&self, ip: IpAddr) -> usize {
        let now = Instant::now();
        self.failures.lock().get(&ip).map_or(0, |t| {
            t.iter()
                .filter(|t| now.duration_since(**t) <= self.window)
                .count()
        })
    }
}

fn evict_oldest(map: &mut HashMap<IpAddr, VecDeque<Instant>>) {
    if let Some(ip) = map
        .iter()
        .min_by_key(|(_, times)| times.back().copied())
        .map(|(ip, _)| *ip)
    {
        map.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn item35_banned_at_threshold() {
        let bans = BanList::new(Duration::from_secs(300), 3);
        let t0 = Instant::now();
        bans.record_at(IP, t0);
        bans.record_at(IP, t0);
        assert!(!bans.is_banned_at(IP, t0));
        bans.record_at(IP, t0);
        assert!(bans.is_banned_at(IP, t0));
        assert!(!bans.is_banned_at("192.0.2.2".parse().unwrap(), t0));
    }

    #[test]
    fn item36_ban_lifts_when_oldest_failures_age_out() {
        let bans = BanList::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        bans.record_at(IP, t0);
        bans.record_at(IP, t0 + Duration::from_secs(5));
        assert!(bans.is_banned_at(IP, t0 + Duration::from_secs(6)));
        assert!(
            !bans.is_banned_at(IP, t0 + Duration::from_secs(11)),
            "oldest aged out"
        );
        assert!(
            bans.is_banned_at(IP, t0 + Duration::from_secs(10)),
            "age == window still counts"
        );
    }

    #[test]
    fn sweep_forgets_idle_addresses() {
        let bans = BanList::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        bans.record_at(IP, t0);
        bans.sweep_at(t0 + Duration::from_secs(5));
        assert_eq!(bans.tracked(), 1);
        bans.sweep_at(t0 + Duration::from_secs(11));
        assert_eq!(bans.tracked(), 0);
    }

    #[test]
    fn memory_per_ip_is_capped_by_threshold() {
        let bans = BanList::new(Duration::from_secs(300), 4);
        let t0 = Instant::now();
        for _ in 0..1000 {
            bans.record_at(IP, t0);
        }
        assert_eq!(bans.failures.lock()[&IP].len(), 4);
        assert!(bans.is_banned_at(IP, t0));
    }

    #[test]
    fn number_of_ips_is_capped() {
        let bans = BanList::new(Duration::from_secs(300), 4);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_IPS as u32 + 10) {
            bans.record_at(IpAddr::V4(i.into()), t0 + Duration::from_micros(i.into()));
        }
        assert_eq!(bans.tracked(), MAX_TRACKED_IPS);
        assert_eq!(
            bans.failures_of(IpAddr::V4(0u32.into())),
            0,
            "oldest evicted first"
        );
    }
}
