//! The per-client rate limit of beacons (SPEC §4), so one client cannot
//! inflate views. Pure bookkeeping; the caller supplies the time.

use std::collections::HashMap;

/// Fixed-window per-client counter: at most `limit` beacons per client per
/// minute. Clients are keyed by a hash, never by a raw address; the table
/// is cleared every minute, so its size is bounded by one minute's clients
/// (and by `max_clients`, beyond which new clients are refused).
pub struct RateLimiter {
    limit: u32,
    max_clients: usize,
    minute: i64,
    counts: HashMap<u64, u32>,
}

impl RateLimiter {
    pub fn new(limit: u32, max_clients: usize) -> Self {
        RateLimiter {
            limit,
            max_clients,
            minute: i64::MIN,
            counts: HashMap::new(),
        }
    }

    /// Counts one beacon of `client` at unix time `now_secs`; false when over the limit.
    pub fn allow(&mut self, client: u64, now_secs: i64) -> bool {
        let minute = now_secs.div_euclid(60);
        if minute != self.minute {
            self.minute = minute;
            self.counts.clear();
        }
        if !self.counts.contains_key(&client) && self.counts.len() >= self.max_clients {
            return false;
        }
        let n = self.counts.entry(client).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::new(2, 10);
        assert!(r.allow(1, 60));
        assert!(r.allow(1, 61));
        assert!(!r.allow(1, 62));
        assert!(r.allow(2, 62));
        assert!(r.allow(1, 120));
        let mut full = RateLimiter::new(5, 1);
        assert!(full.allow(1, 0));
        assert!(!full.allow(2, 0));
    }
}
