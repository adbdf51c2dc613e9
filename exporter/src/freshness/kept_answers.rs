//! Answers kept up to date: an endpoint's whole answer for a scope and
//! window, cached, and recomputed in the background when a change notice
//! touches it, so that a dashboard or report watching a live org is served
//! from memory instead of waiting for ClickHouse after every commit.
//!
//! Built on the result cache (`cache.rs`), whose kept entries a change
//! marks stale instead of dropping; the answer's own queries still go
//! through the cache as plain entries, so a refresh re-reads only what the
//! commit touched.
//!
//! What is served (the freshness contract):
//! - a fresh answer: no change notice touching its org has come in since
//!   it was computed;
//! - a stale one for at most `exporter.cache_max_staleness_ms` after the
//!   first such notice, while its refresh runs; later, the request computes
//!   it;
//! - for a window "up to now" (no `to`), an answer whose window ends at
//!   most `exporter.cache_live_window_secs` before the request (its body
//!   states the window it answers); past half of that it is refreshed in
//!   the background;
//! - never anything while the cache does not follow the notices.
//!
//! A refresh runs at most once at a time per answer, at most
//! `exporter.cache_refresh_concurrency` at a time in all, and only for
//! answers requested within the last `exporter.cache_keep_warm_secs`; one
//! that a change overtook while it ran runs again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use super::cache::{Freshness, Lookup, QueryCache};
use super::ReadMode;
use crate::db::store::StoreError;
use crate::model::reach::Reach;
use crate::telemetry::Metrics;

/// How answers are kept (from `[exporter]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptSettings {
    /// Longest a stale answer is served while it is recomputed.
    pub max_staleness: Duration,
    /// Longest the window of an answer "up to now" may lag the request.
    pub live_window: Duration,
    /// Answers requested within this are refreshed in the background.
    pub keep_warm: Duration,
    /// Most background refreshes running at once.
    pub refresh_concurrency: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Recomputes an answer; `Ok(true)` if it was stored.
type Refresh = Arc<dyn Fn() -> BoxFuture<Result<bool, StoreError>> + Send + Sync>;

/// How to recompute one answer, and who wants it.
struct Refresher {
    refresh: Refresh,
    used: Instant,
    running: bool,
}

/// Above this many registered answers, the ones nobody asked for lately
/// are forgotten.
const PRUNE_ABOVE: usize = 1_024;

pub struct KeptAnswers {
    cache: Arc<QueryCache>,
    settings: KeptSettings,
    permits: Semaphore,
    refreshers: Mutex<Refreshers>,
    metrics: Metrics,
}

#[derive(Default)]
struct Refreshers {
    by_key: HashMap<String, Refresher>,
    pruned: Option<Instant>,
}

impl KeptAnswers {
    /// KeptAnswers over `cache`, refreshing what its change notices mark stale.
    pub fn start(
        cache: Arc<QueryCache>,
        settings: KeptSettings,
        metrics: Metrics,
    ) -> Arc<KeptAnswers> {
        let (queue, mut stale) = mpsc::unbounded_channel();
        cache.refresh_queue(queue);
        let views = Arc::new(KeptAnswers {
            cache,
            settings,
            permits: Semaphore::new(settings.refresh_concurrency.max(1)),
            refreshers: Mutex::new(Refreshers::default()),
            metrics,
        });
        let weak: Weak<KeptAnswers> = Arc::downgrade(&views);
        tokio::spawn(async move {
            while let Some(key) = stale.recv().await {
                let Some(views) = weak.upgrade() else { break };
                views.schedule(&key);
            }
        });
        views
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Refreshers> {
        self.refreshers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer under `key`, from the cache if it may be served (see the
    /// module doc), else from `compute`. `live`: the window ends now.
    /// [`ReadMode::Fresh`]: computed whatever the cache holds
    /// (`Cache-Control: no-cache`), and stored. `compute(mode)` reads its
    /// queries in that mode: background refreshes pass
    /// [`ReadMode::Cached`], so they re-read only what a commit touched.
    pub async fn answer<T, F>(
        self: &Arc<Self>,
        key: String,
        reach: Reach,
        live: bool,
        mode: ReadMode,
        compute: F,
    ) -> Result<T, StoreError>
    where
        T: Clone + Serialize + Send + Sync + 'static,
        F: Fn(ReadMode) -> BoxFuture<Result<T, StoreError>> + Send + Sync + 'static,
    {
        let freshness = Freshness {
            max_age: if live {
                self.settings.live_window
            } else {
                Duration::MAX
            },
            max_stale: self.settings.max_staleness,
        };
        let lookup = self
            .cache
            .lookup::<T>(&key, mode == ReadMode::Cached, freshness);
        let compute = Arc::new(compute);
        self.register(
            &key,
            self.refresh_of(key.clone(), reach.clone(), compute.clone()),
        );
        match lookup {
            Lookup::Hit { value, due } => {
                if due {
                    self.schedule(&key);
                }
                Ok(value)
            }
            Lookup::Miss(ticket) => {
                let value = compute(mode).await?;
                self.cache
                    .put_kept(key, reach, ticket, value.clone(), weight(&value));
                Ok(value)
            }
        }
    }

    /// Recomputes `key` and stores it.
    fn refresh_of<T, F>(&self, key: String, reach: Reach, compute: Arc<F>) -> Refresh
    where
        T: Clone + Serialize + Send + Sync + 'static,
        F: Fn(ReadMode) -> BoxFuture<Result<T, StoreError>> + Send + Sync + 'static,
    {
        let cache = self.cache.clone();
        Arc::new(move || {
            let (cache, key, reach, compute) =
                (cache.clone(), key.clone(), reach.clone(), compute.clone());
            Box::pin(async move {
                let ticket = cache.ticket();
                let value = compute(ReadMode::Cached).await?;
                let bytes = weight(&value);
                Ok(cache.put_kept(key, reach, ticket, value, bytes))
            })
        })
    }

    /// Records that `key` was just asked for, and how to recompute it.
    fn register(&self, key: &str, refresh: Refresh) {
        let now = Instant::now();
        let keep_warm = self.settings.keep_warm;
        let mut refreshers = self.lock();
        let due = refreshers
            .pruned
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if refreshers.by_key.len() > PRUNE_ABOVE && due {
            refreshers.pruned = Some(now);
            refreshers
                .by_key
                .retain(|_, r| r.running || now.duration_since(r.used) <= keep_warm);
        }
        let map = &mut refreshers.by_key;
        match map.get_mut(key) {
            Some(r) => {
                r.refresh = refresh;
                r.used = now;
            }
            None => {
                map.insert(
                    key.to_owned(),
                    Refresher {
                        refresh,
                        used: now,
                        running: false,
                    },
                );
            }
        }
    }

    /// Starts a background refresh of `key` unless one runs or nobody
    /// asked for it lately.
    fn schedule(self: &Arc<Self>, key: &str) {
        let refresh = {
            let mut refreshers = self.lock();
            let map = &mut refreshers.by_key;
            let Some(r) = map.get_mut(key) else { return };
            if r.running {
                return;
            }
            if r.used.elapsed() > self.settings.keep_warm {
                map.remove(key);
                return;
            }
            r.running = true;
            r.refresh.clone()
        };
        let views = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let mut refresh = refresh;
            loop {
                let outcome = {
                    let _permit = views.permits.acquire().await.expect("never closed");
                    refresh().await
                };
                let (stored, label) = match outcome {
                    Ok(true) => (true, "ok"),
                    // Not following the notices, or over the memory budget.
                    Ok(false) => (false, "unstored"),
                    Err(e) => {
                        tracing::warn!(error = %e, "background refresh of an answer failed");
                        (false, "error")
                    }
                };
                views
                    .metrics
                    .cache_refreshes
                    .with_label_values(&[label])
                    .inc();
                let next = {
                    let mut refreshers = views.lock();
                    let map = &mut refreshers.by_key;
                    // Overtaken by a change while it ran: again, while
                    // wanted. Checked under the lock, so that a change
                    // marked after it schedules a refresh of its own.
                    let again = stored && views.cache.is_stale(&key) == Some(true);
                    match map.get_mut(&key) {
                        Some(r) if again && r.used.elapsed() <= views.settings.keep_warm => {
                            Some(r.refresh.clone())
                        }
                        Some(r) => {
                            r.running = false;
                            None
                        }
                        None => None,
                    }
                };
                match next {
                    Some(r) => refresh = r,
                    None => break,
                }
            }
        });
    }
}

/// The estimated memory of an answer: its JSON size.
fn weight<T: Serialize>(value: &T) -> usize {
    std::mem::size_of::<T>() + serde_json::to_vec(value).map_or(0, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use badgepulse_contract::changes::Change;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn views(keep_warm: Duration) -> (Arc<QueryCache>, Arc<KeptAnswers>) {
        let metrics = Metrics::new();
        let cache = Arc::new(QueryCache::new(
            1 << 20,
            Duration::from_secs(300),
            metrics.clone(),
        ));
        cache.follow(true);
        let views = KeptAnswers::start(
            cache.clone(),
            KeptSettings {
                max_staleness: Duration::from_secs(5),
                live_window: Duration::from_secs(60),
                keep_warm,
                refresh_concurrency: 1,
            },
            metrics,
        );
        (cache, views)
    }

    /// An answer that counts its computations: the n-th returns n.
    fn counter() -> (
        Arc<AtomicU64>,
        impl Fn(ReadMode) -> BoxFuture<Result<u64, StoreError>> + Send + Sync + Clone + 'static,
    ) {
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        (runs, move |_mode| {
            let r = r.clone();
            Box::pin(async move { Ok(r.fetch_add(1, Ordering::SeqCst) + 1) })
        })
    }

    async fn settle(cache: &QueryCache, key: &str) {
        for _ in 0..200 {
            if cache.is_stale(key) == Some(false) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{key} not refreshed");
    }

    #[tokio::test]
    async fn a_change_refreshes_a_wanted_answer_in_the_background() {
        let (cache, views) = views(Duration::from_secs(60));
        let (runs, compute) = counter();
        let reach = Reach::all_time(Some("a"));
        let ask = || {
            views.answer(
                "k".into(),
                reach.clone(),
                false,
                ReadMode::Cached,
                counter_clone(&compute),
            )
        };
        assert_eq!(ask().await.unwrap(), 1);
        assert_eq!(ask().await.unwrap(), 1, "served from memory");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        cache.apply(&Change::of_events([("b", 5)]));
        assert_eq!(cache.is_stale("k"), Some(false), "another org");
        cache.apply(&Change::of_events([("a", 5)]));
        settle(&cache, "k").await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "recomputed once, unasked");
        assert_eq!(ask().await.unwrap(), 2);

        // Cache-Control: no-cache computes, and keeps the result.
        let fresh = views
            .answer(
                "k".into(),
                reach.clone(),
                false,
                ReadMode::Fresh,
                counter_clone(&compute),
            )
            .await
            .unwrap();
        assert_eq!(fresh, 3);
        assert_eq!(ask().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn an_answer_nobody_wants_any_more_is_not_refreshed() {
        let (cache, views) = views(Duration::ZERO);
        let (runs, compute) = counter();
        let reach = Reach::all_time(Some("a"));
        views
            .answer("k".into(), reach, false, ReadMode::Cached, compute)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        cache.apply(&Change::of_events([("a", 5)]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.is_stale("k"), Some(true));
        assert!(views.lock().by_key.is_empty(), "forgotten");
    }

    /// A second handle on a counter's computation.
    fn counter_clone<F>(
        f: &F,
    ) -> impl Fn(ReadMode) -> BoxFuture<Result<u64, StoreError>> + Send + Sync + 'static
    where
        F: Fn(ReadMode) -> BoxFuture<Result<u64, StoreError>> + Send + Sync + Clone + 'static,
    {
        f.clone()
    }
}
