//! The result cache: ClickHouse query results kept in memory until a
//! change notice says the data behind them changed.
//!
//! Keys are the query's name and exact SQL text (scope, window and every
//! parameter are in it); each entry records what it depends on: an org
//! (or every org) and an `occurred_at` span ([`Deps`]). The aggregator
//! announces every commit with the orgs and spans it wrote
//! (`badgepulse_contract::changes`), and [`QueryCache::apply`] drops the
//! entries a notice overlaps, so a 400-day report stays cached while
//! today's traffic keeps arriving, and no answer is served from before
//! a commit it depends on (beyond the notice's trip through NATS).
//!
//! Invariants:
//! - Nothing is read or stored while the cache is not *following* the
//!   notices (before the subscription is live, after a disconnect or a
//!   slow-consumer drop): notices may have been missed, so the cache is
//!   emptied and every query goes to ClickHouse (`notices.rs`).
//! - A result is not stored when a change that touches it came in while
//!   its query ran: it may predate that commit ([`Ticket`]; the last
//!   [`CHANGE_LOG`] changes are kept to tell, and anything older than
//!   them counts as touching).
//! - Entries older than `exporter.cache_max_age_secs` are never served: the
//!   bound on what a lost notice could cost (an aggregator whose notice
//!   was queued while its own NATS link was down, a read replica behind
//!   its writer).
//! - Memory is bounded by `exporter.cache_max_bytes` (an estimate per
//!   entry); the least recently used entries go first.
//!
//! Pure bookkeeping: no I/O, no SQL.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use badgepulse_contract::changes::Change;

use crate::metrics::Metrics;

/// What a cached result depends on: events of `org` (`None`: of any org)
/// with `occurred_at` in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deps {
    org: Option<String>,
    from: u32,
    to: u32,
}

impl Deps {
    /// Events of `org` in `[from, to)`.
    pub fn span(org: Option<&str>, from: u32, to: u32) -> Deps {
        Deps {
            org: org.map(str::to_owned),
            from,
            to,
        }
    }

    /// Every event of `org`, whenever it occurred.
    pub fn all_time(org: Option<&str>) -> Deps {
        Deps::span(org, 0, u32::MAX)
    }

    fn touched_by(&self, change: &Change) -> bool {
        change.touches(self.org.as_deref(), self.from, self.to)
    }
}

/// How many recent changes are kept to decide whether a result computed
/// across them may be stored.
pub const CHANGE_LOG: usize = 256;

/// Proof of a lookup that missed, to be handed back with the result: it
/// carries the invalidation generation the query started in.
#[derive(Debug)]
pub struct Ticket {
    generation: u64,
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    deps: Deps,
    weight: usize,
    stored: Instant,
    used: u64,
}

struct Inner {
    following: bool,
    /// Bumped by every change applied (and every start or stop of
    /// following).
    generation: u64,
    /// The last changes with the generation each one made, oldest first.
    log: VecDeque<(u64, Change)>,
    entries: HashMap<String, Entry>,
    bytes: usize,
    /// Lookup counter: an entry's `used` is the last lookup that hit it.
    clock: u64,
}

impl Inner {
    /// Logs `change` under a new generation.
    fn record(&mut self, change: Change) {
        self.generation += 1;
        if self.log.len() == CHANGE_LOG {
            self.log.pop_front();
        }
        self.log.push_back((self.generation, change));
    }

    /// Whether a change that may touch `deps` came in after `ticket` was
    /// issued (or the log no longer reaches back that far).
    fn changed_since(&self, ticket: &Ticket, deps: &Deps) -> bool {
        if ticket.generation == self.generation {
            return false;
        }
        let reaches_back = self
            .log
            .front()
            .is_some_and(|(g, _)| *g <= ticket.generation + 1);
        !reaches_back
            || self
                .log
                .iter()
                .filter(|(g, _)| *g > ticket.generation)
                .any(|(_, c)| deps.touched_by(c))
    }
}

/// Why entries left the cache (a closed set: the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Change,
    Everything,
    Gap,
    Age,
    Size,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Change => "change",
            Reason::Everything => "everything",
            Reason::Gap => "gap",
            Reason::Age => "age",
            Reason::Size => "size",
        }
    }
}

/// The cache shared by every request of one exporter.
pub struct QueryCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_age: Duration,
    metrics: Metrics,
}

impl QueryCache {
    /// An empty cache that does not follow notices yet.
    pub fn new(max_bytes: usize, max_age: Duration, metrics: Metrics) -> QueryCache {
        QueryCache {
            inner: Mutex::new(Inner {
                following: false,
                generation: 0,
                log: VecDeque::with_capacity(CHANGE_LOG),
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            max_bytes,
            max_age,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result of `key`, or a ticket to store it with after the
    /// query. With `read` false (a request sent with `Cache-Control:
    /// no-cache`) the lookup always misses, and the fresh result is stored.
    pub fn get<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        read: bool,
    ) -> Result<T, Ticket> {
        self.get_at(key, read, Instant::now())
    }

    fn get_at<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        read: bool,
        now: Instant,
    ) -> Result<T, Ticket> {
        let mut inner = self.lock();
        let ticket = Ticket {
            generation: inner.generation,
        };
        let result = if !inner.following {
            "off"
        } else if !read {
            "bypass"
        } else {
            inner.clock += 1;
            let clock = inner.clock;
            match inner.entries.get_mut(key) {
                Some(e) if now.duration_since(e.stored) < self.max_age => {
                    if let Some(v) = e.value.downcast_ref::<T>() {
                        e.used = clock;
                        let v = v.clone();
                        drop(inner);
                        self.count("hit");
                        return Ok(v);
                    }
                    "miss"
                }
                Some(_) => {
                    self.remove(&mut inner, key, Reason::Age);
                    "miss"
                }
                None => "miss",
            }
        };
        drop(inner);
        self.count(result);
        Err(ticket)
    }

    /// Stores the result of a missed lookup, unless a change touching it
    /// came in since (the result may predate it) or the cache stopped
    /// following.
    /// `weight` estimates its size in bytes.
    pub fn put<T: Send + Sync + 'static>(
        &self,
        key: String,
        deps: Deps,
        ticket: Ticket,
        value: T,
        weight: usize,
    ) {
        self.put_at(key, deps, ticket, value, weight, Instant::now())
    }

    fn put_at<T: Send + Sync + 'static>(
        &self,
        key: String,
        deps: Deps,
        ticket: Ticket,
        value: T,
        weight: usize,
        now: Instant,
    ) {
        let weight = weight + key.len();
        let mut inner = self.lock();
        if !inner.following || weight > self.max_bytes || inner.changed_since(&ticket, &deps) {
            return;
        }
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.weight;
        }
        inner.bytes += weight;
        let used = inner.clock;
        inner.entries.insert(
            key,
            Entry {
                value: Arc::new(value),
                deps,
                weight,
                stored: now,
                used,
            },
        );
        self.evict_to_fit(&mut inner, now);
        self.gauges(&inner);
    }

    /// Drops every entry `change` may have changed.
    pub fn apply(&self, change: &Change) {
        if change.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.record(change.clone());
        let reason = if change.all {
            Reason::Everything
        } else {
            Reason::Change
        };
        let stale: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.deps.touched_by(change))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.remove(&mut inner, &key, reason);
        }
        self.gauges(&inner);
    }

    /// Starts (`true`) or stops following the notices. Either way the
    /// cache is emptied: notices may have been missed in between.
    pub fn follow(&self, following: bool) {
        let mut inner = self.lock();
        inner.record(Change::everything());
        inner.following = following;
        let keys: Vec<String> = inner.entries.keys().cloned().collect();
        for key in keys {
            self.remove(&mut inner, &key, Reason::Gap);
        }
        self.gauges(&inner);
    }

    fn remove(&self, inner: &mut Inner, key: &str, reason: Reason) {
        if let Some(e) = inner.entries.remove(key) {
            inner.bytes -= e.weight;
            self.metrics
                .cache_evictions
                .with_label_values(&[reason.as_str()])
                .inc();
        }
    }

    /// Drops expired entries, then the least recently used, until the
    /// entries fit in `max_bytes`.
    fn evict_to_fit(&self, inner: &mut Inner, now: Instant) {
        if inner.bytes <= self.max_bytes {
            return;
        }
        let expired: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| now.duration_since(e.stored) >= self.max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(inner, &key, Reason::Age);
        }
        if inner.bytes <= self.max_bytes {
            return;
        }
        let mut by_use: Vec<(u64, String)> = inner
            .entries
            .iter()
            .map(|(k, e)| (e.used, k.clone()))
            .collect();
        by_use.sort_unstable();
        // Down to 90 % of the budget, so that the next stores do not each
        // sort again.
        let target = self.max_bytes / 10 * 9;
        for (_, key) in by_use {
            if inner.bytes <= target {
                break;
            }
            self.remove(inner, &key, Reason::Size);
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .cache_lookups
            .with_label_values(&[result])
            .inc();
    }

    fn gauges(&self, inner: &Inner) {
        self.metrics.cache_entries.set(inner.entries.len() as i64);
        self.metrics.cache_bytes.set(inner.bytes as i64);
        self.metrics.cache_following.set(i64::from(inner.following));
    }
}

/// An estimate of the memory of `rows` result rows of `T`: each row's
/// inline size plus 64 bytes of strings (ids are at most 64 characters,
/// and most rows hold one).
pub fn rows_weight<T>(rows: usize) -> usize {
    rows.max(1) * (std::mem::size_of::<T>() + 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_bytes: usize) -> QueryCache {
        let c = QueryCache::new(max_bytes, Duration::from_secs(60), Metrics::new());
        c.follow(true);
        c
    }

    fn store(c: &QueryCache, key: &str, deps: Deps, value: u64) {
        let ticket = c.get::<u64>(key, true).expect_err("not cached yet");
        c.put(key.to_owned(), deps, ticket, value, 8);
    }

    fn lookups(c: &QueryCache, result: &str) -> u64 {
        c.metrics.cache_lookups.with_label_values(&[result]).get()
    }

    #[test]
    fn serves_what_it_stored_until_a_change_overlaps() {
        let c = cache(1 << 20);
        store(&c, "a-october", Deps::span(Some("a"), 1_000, 2_000), 1);
        store(&c, "a-all", Deps::all_time(Some("a")), 2);
        store(&c, "b-october", Deps::span(Some("b"), 1_000, 2_000), 3);
        store(&c, "every-org", Deps::span(None, 1_000, 3_000), 4);
        assert_eq!(c.get::<u64>("a-october", true).unwrap(), 1);
        assert_eq!(lookups(&c, "hit"), 1);

        // Org a, after October: its all-time and the all-org entries go.
        c.apply(&Change::of_events([("a", 2_000), ("a", 2_500)]));
        assert_eq!(c.get::<u64>("a-october", true).unwrap(), 1);
        assert!(c.get::<u64>("a-all", true).is_err());
        assert_eq!(c.get::<u64>("b-october", true).unwrap(), 3);
        assert!(c.get::<u64>("every-org", true).is_err());

        // Org b, inside October.
        c.apply(&Change::of_events([("b", 1_999)]));
        assert!(c.get::<u64>("b-october", true).is_err());
        assert_eq!(c.get::<u64>("a-october", true).unwrap(), 1);

        c.apply(&Change::everything());
        assert!(c.get::<u64>("a-october", true).is_err());
        assert_eq!(c.metrics.cache_entries.get(), 0);
    }

    #[test]
    fn a_result_older_than_a_change_that_touches_it_is_not_stored() {
        let c = cache(1 << 20);
        let ticket = c.get::<u64>("k", true).unwrap_err();
        // A commit for org a lands while the query runs: its result may
        // predate it.
        c.apply(&Change::of_events([("a", 5)]));
        c.put("k".into(), Deps::all_time(Some("a")), ticket, 1u64, 8);
        assert!(c.get::<u64>("k", true).is_err());
        // Asked again after the commit, it is.
        store(&c, "k", Deps::all_time(Some("a")), 2);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 2);

        // Commits of other orgs or spans meanwhile do not keep it out.
        let ticket = c.get::<u64>("j", true).unwrap_err();
        c.apply(&Change::of_events([("b", 5)]));
        c.apply(&Change::of_events([("a", 5_000)]));
        c.put("j".into(), Deps::span(Some("a"), 0, 1_000), ticket, 3u64, 8);
        assert_eq!(c.get::<u64>("j", true).unwrap(), 3);

        // Unless more changes came than the log keeps.
        let ticket = c.get::<u64>("i", true).unwrap_err();
        for n in 0..=CHANGE_LOG {
            c.apply(&Change::of_events([("b", n as u32)]));
        }
        c.put("i".into(), Deps::span(Some("a"), 0, 1_000), ticket, 4u64, 8);
        assert!(c.get::<u64>("i", true).is_err());
    }

    #[test]
    fn nothing_is_served_or_kept_while_not_following() {
        let c = QueryCache::new(1 << 20, Duration::from_secs(60), Metrics::new());
        let ticket = c.get::<u64>("k", true).unwrap_err();
        c.put("k".into(), Deps::all_time(None), ticket, 1u64, 8);
        assert!(c.get::<u64>("k", true).is_err());
        assert_eq!(lookups(&c, "off"), 2);

        c.follow(true);
        store(&c, "k", Deps::all_time(None), 1);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 1);
        // A gap in the notices (disconnect): everything goes, and nothing
        // is kept until following again.
        let ticket = c.get::<u64>("j", true).unwrap_err();
        c.follow(false);
        assert!(c.get::<u64>("k", true).is_err());
        c.follow(true);
        c.put("j".into(), Deps::all_time(None), ticket, 1u64, 8);
        assert!(
            c.get::<u64>("j", true).is_err(),
            "query started before the gap"
        );
        assert!(c.get::<u64>("k", true).is_err());
    }

    #[test]
    fn bypass_misses_but_stores_the_fresh_result() {
        let c = cache(1 << 20);
        store(&c, "k", Deps::all_time(None), 1);
        let ticket = c.get::<u64>("k", false).unwrap_err();
        assert_eq!(lookups(&c, "bypass"), 1);
        c.put("k".into(), Deps::all_time(None), ticket, 7u64, 8);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 7);
    }

    #[test]
    fn entries_expire_after_the_maximum_age() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let ticket = c.get_at::<u64>("k", true, t0).unwrap_err();
        c.put_at("k".into(), Deps::all_time(None), ticket, 1u64, 8, t0);
        let fresh = t0 + Duration::from_secs(59);
        assert_eq!(c.get_at::<u64>("k", true, fresh).unwrap(), 1);
        let old = t0 + Duration::from_secs(60);
        assert!(c.get_at::<u64>("k", true, old).is_err());
        assert_eq!(
            c.metrics.cache_entries.get(),
            1,
            "gauges move on the next store"
        );
        assert_eq!(
            c.metrics.cache_evictions.with_label_values(&["age"]).get(),
            1
        );
    }

    #[test]
    fn the_least_recently_used_go_first_when_over_budget() {
        // Each entry weighs 8 + its 2-byte key: three fit in 30 bytes.
        let c = cache(30);
        store(&c, "k1", Deps::all_time(None), 1);
        store(&c, "k2", Deps::all_time(None), 2);
        store(&c, "k3", Deps::all_time(None), 3);
        assert_eq!(c.get::<u64>("k1", true).unwrap(), 1);
        store(&c, "k4", Deps::all_time(None), 4);
        // k2 was used least recently; the budget's 90 % (27) keeps two.
        assert!(c.get::<u64>("k2", true).is_err());
        assert!(c.get::<u64>("k3", true).is_err());
        assert_eq!(c.get::<u64>("k1", true).unwrap(), 1);
        assert_eq!(c.get::<u64>("k4", true).unwrap(), 4);
        assert_eq!(c.metrics.cache_bytes.get(), 20);
        // An entry larger than the whole budget is not stored.
        let ticket = c.get::<u64>("big", true).unwrap_err();
        c.put("big".into(), Deps::all_time(None), ticket, 0u64, 100);
        assert!(c.get::<u64>("big", true).is_err());
    }

    #[test]
    fn a_key_read_as_another_type_misses() {
        let c = cache(1 << 20);
        store(&c, "k", Deps::all_time(None), 1);
        assert!(c.get::<String>("k", true).is_err());
    }
}
