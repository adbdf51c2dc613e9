//! The result cache: ClickHouse query results kept in memory until a
//! change notice says the data behind them changed.
//!
//! Keys are the query's name and exact SQL text (scope, window and every
//! parameter are in it); each entry records what it depends on: an org
//! (or every org) and an `occurred_at` span ([`Reach`]). The aggregator
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
//! - *Kept* entries (whole answers, `kept_answers.rs`) are not dropped by a change
//!   that touches them but marked stale and their key queued for a
//!   background refresh; [`QueryCache::lookup`] serves them only within
//!   the caller's [`Freshness`] (how long since the first touching change,
//!   how long since computed). Everything else above holds for them too,
//!   except that a result overtaken by a change while it was computed is
//!   stored stale (since its ticket) rather than refused.
//! - Read your writes: a write made through this exporter (an annotation,
//!   [`QueryCache::apply_write`]) drops every entry it touches, kept ones
//!   included, and no result whose computation began before it is stored
//!   afterwards, so every read that starts after the write was answered
//!   computes what it touches.
//!
//! Pure bookkeeping: no I/O, no SQL.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use badgepulse_contract::changes::Change;
use tokio::sync::mpsc;

use crate::model::reach::Reach;
use crate::telemetry::Metrics;

/// How many recent changes are kept to decide whether a result computed
/// across them may be stored.
pub const CHANGE_LOG: usize = 256;

/// How many recent writes through this exporter are kept, for the same
/// purpose (writes are rare: a person adding an annotation).
pub const WRITE_LOG: usize = 64;

/// Proof of a lookup that missed, to be handed back with the result: it
/// carries the invalidation generation the query started in.
#[derive(Debug, Clone)]
pub struct Ticket {
    generation: u64,
    issued: Instant,
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    deps: Reach,
    weight: usize,
    stored: Instant,
    /// When the computation of its value began (its ticket).
    issued: Instant,
    used: u64,
    /// Kept (and served for a while) when a change touches it, marked
    /// stale, rather than dropped: an answer kept up to date in the
    /// background (`kept_answers.rs`).
    kept: bool,
    /// When the first change touching it since it was computed came in.
    stale_since: Option<Instant>,
}

/// How old an answer may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Longest since it was computed.
    pub max_age: Duration,
    /// Longest since a change that touches it came in (0: not at all).
    pub max_stale: Duration,
}

/// A lookup's outcome.
#[derive(Debug)]
pub enum Lookup<T> {
    /// Served from the cache; `due`: it is stale, or past half its age
    /// bound, so a background refresh is due.
    Hit {
        value: T,
        due: bool,
    },
    Miss(Ticket),
}

struct Inner {
    following: bool,
    /// Bumped by every change applied (and every start or stop of
    /// following).
    generation: u64,
    /// The last changes with the generation each one made, oldest first.
    log: VecDeque<(u64, Change)>,
    /// The last writes through this exporter (also in `log`), likewise.
    writes: VecDeque<(u64, Change)>,
    /// The generation of the newest write that left `writes` (0: none).
    forgotten_write: u64,
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

    /// Logs `change`, a write through this exporter, under a new
    /// generation.
    fn record_write(&mut self, change: Change) {
        self.record(change.clone());
        if self.writes.len() == WRITE_LOG {
            if let Some((g, _)) = self.writes.pop_front() {
                self.forgotten_write = g;
            }
        }
        self.writes.push_back((self.generation, change));
    }

    /// Whether a write through this exporter that may touch `deps` came in
    /// after `ticket` was issued (or too long ago to tell).
    fn written_since(&self, ticket: &Ticket, deps: &Reach) -> bool {
        self.forgotten_write > ticket.generation
            || self
                .writes
                .iter()
                .any(|(g, c)| *g > ticket.generation && deps.touched_by(c))
    }

    /// Whether a change that may touch `deps` came in after `ticket` was
    /// issued (or the log no longer reaches back that far).
    fn changed_since(&self, ticket: &Ticket, deps: &Reach) -> bool {
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
    refresh_queue: OnceLock<mpsc::UnboundedSender<String>>,
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
                writes: VecDeque::new(),
                forgotten_write: 0,
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            refresh_queue: OnceLock::new(),
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
        let strict = Freshness {
            max_age: self.max_age,
            max_stale: Duration::ZERO,
        };
        match self.lookup_at(key, read, strict, Instant::now()) {
            Lookup::Hit { value, .. } => Ok(value),
            Lookup::Miss(ticket) => Err(ticket),
        }
    }

    /// Like [`QueryCache::get`] for an answer that may be served stale as
    /// `freshness` allows (its age bound capped at `cache_max_age_secs`).
    pub fn lookup<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        read: bool,
        freshness: Freshness,
    ) -> Lookup<T> {
        let freshness = Freshness {
            max_age: freshness.max_age.min(self.max_age),
            ..freshness
        };
        self.lookup_at(key, read, freshness, Instant::now())
    }

    /// A ticket for a query about to run, to store its result with.
    pub fn ticket(&self) -> Ticket {
        let inner = self.lock();
        Ticket {
            generation: inner.generation,
            issued: Instant::now(),
        }
    }

    /// Whether a change that may touch `deps` came in after `ticket` was
    /// issued (or too long ago to tell), or the cache does not follow the
    /// notices (so cannot tell).
    pub fn changed_since(&self, ticket: &Ticket, deps: &Reach) -> bool {
        let inner = self.lock();
        !inner.following || inner.changed_since(ticket, deps)
    }

    /// Whether `key` is cached and stale (`None`: not cached).
    pub fn is_stale(&self, key: &str) -> Option<bool> {
        self.lock()
            .entries
            .get(key)
            .map(|e| e.stale_since.is_some())
    }

    fn lookup_at<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        read: bool,
        freshness: Freshness,
        now: Instant,
    ) -> Lookup<T> {
        let mut inner = self.lock();
        let ticket = Ticket {
            generation: inner.generation,
            issued: now,
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
                    let age = now.duration_since(e.stored);
                    let stale_for = e.stale_since.map(|t| now.duration_since(t));
                    let servable = age < freshness.max_age
                        && stale_for.is_none_or(|d| d < freshness.max_stale);
                    match e.value.downcast_ref::<T>() {
                        Some(v) if servable => {
                            e.used = clock;
                            let value = v.clone();
                            let due = stale_for.is_some() || age > freshness.max_age / 2;
                            drop(inner);
                            self.count(if stale_for.is_some() { "stale" } else { "hit" });
                            return Lookup::Hit { value, due };
                        }
                        _ => "miss",
                    }
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
        Lookup::Miss(ticket)
    }

    /// Stores the result of a missed lookup, unless a change touching it
    /// came in since (the result may predate it) or the cache stopped
    /// following.
    /// `weight` estimates its size in bytes.
    pub fn put<T: Send + Sync + 'static>(
        &self,
        key: String,
        deps: Reach,
        ticket: Ticket,
        value: T,
        weight: usize,
    ) {
        self.put_at(key, deps, ticket, value, weight, false, Instant::now());
    }

    /// Stores an answer kept up to date in the background: a change that
    /// touches it marks it stale (and queues its key for a refresh, see
    /// [`QueryCache::refresh_queue`]) rather than dropping it. A result
    /// that a change overtook while it was computed is stored stale since
    /// its ticket, not refused. Its age counts from its ticket. Returns
    /// whether it was stored (not while not following, not over the
    /// memory budget, not over an answer computed from a later ticket).
    pub fn put_kept<T: Send + Sync + 'static>(
        &self,
        key: String,
        deps: Reach,
        ticket: Ticket,
        value: T,
        weight: usize,
    ) -> bool {
        let computed = ticket.issued;
        self.put_at(key, deps, ticket, value, weight, true, computed)
    }

    #[allow(clippy::too_many_arguments)]
    fn put_at<T: Send + Sync + 'static>(
        &self,
        key: String,
        deps: Reach,
        ticket: Ticket,
        value: T,
        weight: usize,
        kept: bool,
        stored: Instant,
    ) -> bool {
        let weight = weight + key.len();
        let mut inner = self.lock();
        if !inner.following {
            return false;
        }
        if weight > self.max_bytes {
            // Whatever is there is older still.
            self.remove(&mut inner, &key, Reason::Size);
            return false;
        }
        if inner
            .entries
            .get(&key)
            .is_some_and(|e| e.issued > ticket.issued)
        {
            return false;
        }
        let overtaken = inner.changed_since(&ticket, &deps);
        // A kept answer overtaken by a notice may be served stale for a
        // while; one overtaken by a write through this exporter may not:
        // whoever wrote reads next.
        if overtaken && (!kept || inner.written_since(&ticket, &deps)) {
            return false;
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
                stored,
                issued: ticket.issued,
                used,
                kept,
                stale_since: overtaken.then_some(ticket.issued),
            },
        );
        self.evict_to_fit(&mut inner, Instant::now());
        self.gauges(&inner);
        true
    }

    /// Where [`QueryCache::apply`] sends the key of every kept answer a
    /// change touched (at most once: the first call wins).
    pub fn refresh_queue(&self, queue: mpsc::UnboundedSender<String>) {
        let _ = self.refresh_queue.set(queue);
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
        let now = Instant::now();
        let mut dropped = Vec::new();
        for (key, e) in inner.entries.iter_mut() {
            if !e.deps.touched_by(change) {
                continue;
            }
            if !e.kept {
                dropped.push(key.clone());
                continue;
            }
            e.stale_since.get_or_insert(now);
            if let Some(queue) = self.refresh_queue.get() {
                let _ = queue.send(key.clone());
            }
        }
        for key in dropped {
            self.remove(&mut inner, &key, reason);
        }
        self.gauges(&inner);
    }

    /// A write through this exporter (a new annotation), before it is
    /// answered: every entry it touches is dropped, kept answers included
    /// (a kept answer would be served stale), and no result whose
    /// computation began before it will be stored. Read your writes.
    pub fn apply_write(&self, change: &Change) {
        if change.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.record_write(change.clone());
        let touched: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.deps.touched_by(change))
            .map(|(key, _)| key.clone())
            .collect();
        for key in touched {
            self.remove(&mut inner, &key, Reason::Change);
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

    fn store(c: &QueryCache, key: &str, deps: Reach, value: u64) {
        let ticket = c.get::<u64>(key, true).expect_err("not cached yet");
        c.put(key.to_owned(), deps, ticket, value, 8);
    }

    fn lookups(c: &QueryCache, result: &str) -> u64 {
        c.metrics.cache_lookups.with_label_values(&[result]).get()
    }

    #[test]
    fn serves_what_it_stored_until_a_change_overlaps() {
        let c = cache(1 << 20);
        store(&c, "a-october", Reach::span(Some("a"), 1_000, 2_000), 1);
        store(&c, "a-all", Reach::all_time(Some("a")), 2);
        store(&c, "b-october", Reach::span(Some("b"), 1_000, 2_000), 3);
        store(&c, "every-org", Reach::span(None, 1_000, 3_000), 4);
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
        c.put("k".into(), Reach::all_time(Some("a")), ticket, 1u64, 8);
        assert!(c.get::<u64>("k", true).is_err());
        // Asked again after the commit, it is.
        store(&c, "k", Reach::all_time(Some("a")), 2);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 2);

        // Commits of other orgs or spans meanwhile do not keep it out.
        let ticket = c.get::<u64>("j", true).unwrap_err();
        c.apply(&Change::of_events([("b", 5)]));
        c.apply(&Change::of_events([("a", 5_000)]));
        c.put(
            "j".into(),
            Reach::span(Some("a"), 0, 1_000),
            ticket,
            3u64,
            8,
        );
        assert_eq!(c.get::<u64>("j", true).unwrap(), 3);

        // Unless more changes came than the log keeps.
        let ticket = c.get::<u64>("i", true).unwrap_err();
        for n in 0..=CHANGE_LOG {
            c.apply(&Change::of_events([("b", n as u32)]));
        }
        c.put(
            "i".into(),
            Reach::span(Some("a"), 0, 1_000),
            ticket,
            4u64,
            8,
        );
        assert!(c.get::<u64>("i", true).is_err());
    }

    #[test]
    fn nothing_is_served_or_kept_while_not_following() {
        let c = QueryCache::new(1 << 20, Duration::from_secs(60), Metrics::new());
        let ticket = c.get::<u64>("k", true).unwrap_err();
        c.put("k".into(), Reach::all_time(None), ticket, 1u64, 8);
        assert!(c.get::<u64>("k", true).is_err());
        assert_eq!(lookups(&c, "off"), 2);

        c.follow(true);
        store(&c, "k", Reach::all_time(None), 1);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 1);
        // A gap in the notices (disconnect): everything goes, and nothing
        // is kept until following again.
        let ticket = c.get::<u64>("j", true).unwrap_err();
        c.follow(false);
        assert!(c.get::<u64>("k", true).is_err());
        c.follow(true);
        c.put("j".into(), Reach::all_time(None), ticket, 1u64, 8);
        assert!(
            c.get::<u64>("j", true).is_err(),
            "query started before the gap"
        );
        assert!(c.get::<u64>("k", true).is_err());
    }

    #[test]
    fn bypass_misses_but_stores_the_fresh_result() {
        let c = cache(1 << 20);
        store(&c, "k", Reach::all_time(None), 1);
        let ticket = c.get::<u64>("k", false).unwrap_err();
        assert_eq!(lookups(&c, "bypass"), 1);
        c.put("k".into(), Reach::all_time(None), ticket, 7u64, 8);
        assert_eq!(c.get::<u64>("k", true).unwrap(), 7);
    }

    #[test]
    fn entries_expire_after_the_maximum_age() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let strict = Freshness {
            max_age: Duration::from_secs(60),
            max_stale: Duration::ZERO,
        };
        let Lookup::Miss(ticket) = c.lookup_at::<u64>("k", true, strict, t0) else {
            panic!("not cached yet")
        };
        c.put_at(
            "k".into(),
            Reach::all_time(None),
            ticket,
            1u64,
            8,
            false,
            t0,
        );

        let fresh = t0 + Duration::from_secs(59);
        assert!(matches!(
            c.lookup_at::<u64>("k", true, strict, fresh),
            Lookup::Hit { value: 1, .. }
        ));
        let old = t0 + Duration::from_secs(60);
        assert!(matches!(
            c.lookup_at::<u64>("k", true, strict, old),
            Lookup::Miss(_)
        ));
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

    fn kept(c: &QueryCache, key: &str, deps: Reach, value: u64) {
        c.put_kept(key.to_owned(), deps, c.ticket(), value, 8);
    }

    #[test]
    fn a_kept_answer_is_served_stale_for_a_while_and_queued_for_refresh() {
        let c = cache(1 << 20);
        let (tx, mut rx) = mpsc::unbounded_channel();
        c.refresh_queue(tx);
        kept(&c, "a-view", Reach::all_time(Some("a")), 1);
        store(&c, "a-query", Reach::all_time(Some("a")), 2);
        let freshness = Freshness {
            max_age: Duration::from_secs(60),
            max_stale: Duration::from_secs(1),
        };
        let now = Instant::now();
        assert!(matches!(
            c.lookup_at::<u64>("a-view", true, freshness, now),
            Lookup::Hit {
                value: 1,
                due: false
            }
        ));

        c.apply(&Change::of_events([("b", 5)]));
        assert!(rx.try_recv().is_err(), "another org's change");
        c.apply(&Change::of_events([("a", 5)]));
        assert_eq!(rx.try_recv().unwrap(), "a-view");
        assert!(
            rx.try_recv().is_err(),
            "a plain query result is dropped, not queued"
        );
        assert!(c.get::<u64>("a-query", true).is_err());
        assert_eq!(c.is_stale("a-view"), Some(true));

        let now = Instant::now();
        assert!(matches!(
            c.lookup_at::<u64>("a-view", true, freshness, now),
            Lookup::Hit {
                value: 1,
                due: true
            }
        ));
        assert_eq!(lookups(&c, "stale"), 1);
        let late = now + Duration::from_millis(1_100);
        assert!(matches!(
            c.lookup_at::<u64>("a-view", true, freshness, late),
            Lookup::Miss(_)
        ));
        let strict = Freshness {
            max_stale: Duration::ZERO,
            ..freshness
        };
        assert!(matches!(
            c.lookup_at::<u64>("a-view", true, strict, now),
            Lookup::Miss(_)
        ));

        // The refresh: fresh again.
        kept(&c, "a-view", Reach::all_time(Some("a")), 3);
        assert_eq!(c.is_stale("a-view"), Some(false));
        assert!(matches!(
            c.lookup::<u64>("a-view", true, freshness),
            Lookup::Hit {
                value: 3,
                due: false
            }
        ));
    }

    #[test]
    fn a_kept_answer_overtaken_while_computed_is_stored_stale() {
        let c = cache(1 << 20);
        let ticket = c.ticket();
        c.apply(&Change::of_events([("a", 5)]));
        c.put_kept("k".into(), Reach::all_time(Some("a")), ticket, 1u64, 8);
        assert_eq!(c.is_stale("k"), Some(true));
        let ticket = c.ticket();
        c.apply(&Change::of_events([("b", 5)]));
        c.put_kept("k".into(), Reach::all_time(Some("a")), ticket, 2u64, 8);
        assert_eq!(c.is_stale("k"), Some(false));
    }

    #[test]
    fn a_write_drops_what_it_touches_and_keeps_out_what_began_before_it() {
        let c = cache(1 << 20);
        let freshness = Freshness {
            max_age: Duration::from_secs(60),
            max_stale: Duration::from_secs(60),
        };
        kept(&c, "a-view", Reach::span(Some("a"), 0, 1_000), 1);
        kept(&c, "a-later", Reach::span(Some("a"), 2_000, 3_000), 2);
        store(&c, "a-query", Reach::span(Some("a"), 0, 1_000), 3);
        kept(&c, "b-view", Reach::span(Some("b"), 0, 1_000), 4);
        // A refresh of a-view began before the write and ends after it.
        let refresh = c.ticket();
        let query = c.get::<u64>("a-query-2", true).unwrap_err();

        c.apply_write(&Change::of_events([("a", 500)]));
        assert_eq!(c.is_stale("a-view"), None, "dropped, not served stale");
        assert!(c.get::<u64>("a-query", true).is_err());
        assert!(matches!(
            c.lookup::<u64>("a-later", true, freshness),
            Lookup::Hit { value: 2, .. }
        ));
        assert!(matches!(
            c.lookup::<u64>("b-view", true, freshness),
            Lookup::Hit { value: 4, .. }
        ));
        assert!(!c.put_kept(
            "a-view".into(),
            Reach::span(Some("a"), 0, 1_000),
            refresh,
            5u64,
            8
        ));
        c.put(
            "a-query-2".into(),
            Reach::span(Some("a"), 0, 1_000),
            query,
            6u64,
            8,
        );
        assert!(c.get::<u64>("a-query-2", true).is_err());
        // Computed after the write: stored and served.
        assert!(c.put_kept(
            "a-view".into(),
            Reach::span(Some("a"), 0, 1_000),
            c.ticket(),
            7u64,
            8
        ));
        assert!(matches!(
            c.lookup::<u64>("a-view", true, freshness),
            Lookup::Hit { value: 7, .. }
        ));

        // Too many changes to tell: a kept answer is stored stale after
        // notices, but refused when writes it cannot see past were among
        // them.
        let old = c.ticket();
        for n in 0..=CHANGE_LOG {
            c.apply(&Change::of_events([("b", n as u32)]));
        }
        assert!(c.put_kept(
            "c-view".into(),
            Reach::span(Some("c"), 0, 1_000),
            old.clone(),
            8u64,
            8
        ));
        assert_eq!(c.is_stale("c-view"), Some(true));
        let old = c.ticket();
        for n in 0..=WRITE_LOG {
            c.apply_write(&Change::of_events([("b", n as u32)]));
        }
        for n in 0..=CHANGE_LOG {
            c.apply(&Change::of_events([("b", n as u32)]));
        }
        assert!(!c.put_kept(
            "c-view".into(),
            Reach::span(Some("c"), 0, 1_000),
            old,
            8u64,
            8
        ));
    }

    #[test]
    fn an_answer_never_replaces_one_computed_later() {
        let c = cache(1 << 20);
        let slow = c.ticket();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.put_kept("k".into(), Reach::all_time(None), c.ticket(), 2u64, 8));
        assert!(!c.put_kept("k".into(), Reach::all_time(None), slow, 1u64, 8));
        assert!(matches!(
            c.lookup::<u64>(
                "k",
                true,
                Freshness {
                    max_age: Duration::from_secs(60),
                    max_stale: Duration::ZERO
                }
            ),
            Lookup::Hit { value: 2, .. }
        ));
    }

    #[test]
    fn an_answer_over_the_budget_is_refused_and_drops_the_older_one() {
        let c = cache(100);
        assert!(c.put_kept("k".into(), Reach::all_time(None), c.ticket(), 1u64, 8));
        assert!(!c.put_kept("k".into(), Reach::all_time(None), c.ticket(), 2u64, 200));
        assert_eq!(c.is_stale("k"), None);
    }

    #[test]
    fn a_kept_answer_is_due_past_half_its_age_and_not_served_past_it() {
        let c = cache(1 << 20);
        let freshness = Freshness {
            max_age: Duration::from_secs(10),
            max_stale: Duration::from_secs(1),
        };
        let ticket = c.ticket();
        let t0 = ticket.issued;
        c.put_kept("k".into(), Reach::all_time(None), ticket, 1u64, 8);
        let at = |secs| c.lookup_at::<u64>("k", true, freshness, t0 + Duration::from_secs(secs));
        assert!(matches!(
            at(4),
            Lookup::Hit {
                value: 1,
                due: false
            }
        ));
        assert!(matches!(
            at(6),
            Lookup::Hit {
                value: 1,
                due: true
            }
        ));
        assert!(matches!(at(10), Lookup::Miss(_)));
        // Not following: nothing served, the keys are forgotten.
        c.follow(false);
        assert_eq!(c.is_stale("k"), None);
    }

    #[test]
    fn the_least_recently_used_go_first_when_over_budget() {
        // Each entry weighs 8 + its 2-byte key: three fit in 30 bytes.
        let c = cache(30);
        store(&c, "k1", Reach::all_time(None), 1);
        store(&c, "k2", Reach::all_time(None), 2);
        store(&c, "k3", Reach::all_time(None), 3);
        assert_eq!(c.get::<u64>("k1", true).unwrap(), 1);
        store(&c, "k4", Reach::all_time(None), 4);
        // k2 was used least recently; the budget's 90 % (27) keeps two.
        assert!(c.get::<u64>("k2", true).is_err());
        assert!(c.get::<u64>("k3", true).is_err());
        assert_eq!(c.get::<u64>("k1", true).unwrap(), 1);
        assert_eq!(c.get::<u64>("k4", true).unwrap(), 4);
        assert_eq!(c.metrics.cache_bytes.get(), 20);
        // An entry larger than the whole budget is not stored.
        let ticket = c.get::<u64>("big", true).unwrap_err();
        c.put("big".into(), Reach::all_time(None), ticket, 0u64, 100);
        assert!(c.get::<u64>("big", true).is_err());
    }

    #[test]
    fn a_key_read_as_another_type_misses() {
        let c = cache(1 << 20);
        store(&c, "k", Reach::all_time(None), 1);
        assert!(c.get::<String>("k", true).is_err());
    }
}
