//! Reads through the result cache: every analytics query family of `db`,
//! its result kept under its exact SQL text with what it depends on
//! ([`Reach`]), concurrent misses of one query shared (`single_flight`),
//! and this exporter's own writes (annotations) applied to the cache and
//! announced before they are answered.
//!
//! [`ReadMode::Fresh`] (a request sent with `Cache-Control: no-cache`)
//! reads ClickHouse whatever the cache holds and refreshes it; it is the
//! only switch between the two, passed down from the request.

use std::sync::Arc;

use badgepulse_contract::changes::Change;
use clickhouse::query::Query;
use clickhouse::{RowOwned, RowRead};

use super::cache::{rows_weight, QueryCache};
use super::change_feed::ChangeFeed;
use super::single_flight::{self, shared_value, Flight, Flights, Landing};
use super::ReadMode;
use crate::db;
use crate::db::annotations::AnnotationRow;
use crate::db::award_days::Unsealed;
use crate::db::counts::{ClassCounts, TrendRow};
use crate::db::distribution::DistributionRow;
use crate::db::impact::{ImpactCohorts, WindowCounts};
use crate::db::lifecycle::LifecycleRow;
use crate::db::scopes::ScopeRow;
use crate::db::store::{Store, StoreError};
use crate::model::badge_class::BadgeClassMeta;
use crate::model::benchmark::{Level, PeerCounts};
use crate::model::cohorts::{ReachCounts, Stage};
use crate::model::impact::Windows;
use crate::model::measures::{Counts, Dimension};
use crate::model::reach::Reach;
use crate::model::scope::Filter;
use crate::model::tiers::Period;
use crate::model::timing::SlotCounts;
use crate::model::window::{Granularity, Window};

/// The store, read through the cache when there is one.
#[derive(Clone)]
pub struct Reader {
    store: Store,
    /// Results of the analytics queries (not of `/metrics` refreshes,
    /// readiness or writes); `None`: no cache.
    cache: Option<Arc<QueryCache>>,
    /// Where this exporter's own changes (annotations) are announced.
    feed: Option<ChangeFeed>,
    /// The cache's queries in flight.
    flights: Flights,
}

impl Reader {
    pub fn new(store: Store) -> Self {
        Reader {
            store,
            cache: None,
            feed: None,
            flights: Flights::default(),
        }
    }

    /// This reader with analytics results cached in `cache`, and its own
    /// writes announced on `feed`.
    pub fn with_cache(mut self, cache: Arc<QueryCache>, feed: ChangeFeed) -> Self {
        self.cache = Some(cache);
        self.feed = Some(feed);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Like [`Store::one`](crate::db::store::Store::one), through the result cache.
    async fn cached_one<T>(
        &self,
        name: &'static str,
        query: Query,
        reach: Reach,
        mode: ReadMode,
    ) -> Result<T, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached(
            name,
            query,
            reach,
            mode,
            |_| rows_weight::<T>(1),
            |q| q.fetch_one::<T>(),
        )
        .await
    }

    /// Like [`Store::all`](crate::db::store::Store::all), through the result cache; rows weigh as
    /// [`rows_weight`] estimates.
    async fn cached_all<T>(
        &self,
        name: &'static str,
        query: Query,
        reach: Reach,
        mode: ReadMode,
    ) -> Result<Vec<T>, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached_all_weighed(name, query, reach, mode, |_| 0)
            .await
    }

    /// [`Reader::cached_all`] for rows whose strings can be long:
    /// `heap(row)` is the bytes a row holds beyond its inline size.
    async fn cached_all_weighed<T>(
        &self,
        name: &'static str,
        query: Query,
        reach: Reach,
        mode: ReadMode,
        heap: impl Fn(&T) -> usize + Send + 'static,
    ) -> Result<Vec<T>, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached(
            name,
            query,
            reach,
            mode,
            move |rows: &Vec<T>| {
                rows_weight::<T>(rows.len()) + rows.iter().map(&heap).sum::<usize>()
            },
            |q| q.fetch_all::<T>(),
        )
        .await
    }

    /// `run(query)`, or its cached result: the key is `name` and the exact
    /// SQL text, which holds every parameter. Concurrent misses of one key
    /// share one query (a background refresh and a request, or two answers
    /// reading the same rows), unless a change that touches it came in
    /// after the running one started, or the request asked for fresh data.
    /// The query runs as a task that stores its own result and leaves the
    /// map of flights when done, so a finished flight is never joined.
    async fn cached<T, Fut>(
        &self,
        name: &'static str,
        query: Query,
        reach: Reach,
        mode: ReadMode,
        weight: impl FnOnce(&T) -> usize + Send + 'static,
        run: impl FnOnce(Query) -> Fut + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = clickhouse::error::Result<T>> + Send + 'static,
    {
        let Some(cache) = &self.cache else {
            return self.store.timed(name, run(query)).await;
        };
        let read = mode == ReadMode::Cached;
        let key = format!("{name}\n{}", query.sql_display());
        let ticket = match cache.get::<T>(&key, read) {
            Ok(hit) => return Ok(hit),
            Err(ticket) => ticket,
        };
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some((_, flight, started)) if read && !cache.changed_since(started, &reach) => {
                    flight.clone()
                }
                _ => {
                    // A task of its own: it finishes, stores its result and
                    // leaves the map even if every request waiting for it
                    // is dropped (a client gone, a sibling query failed).
                    let id = single_flight::next_id();
                    let (reader, cache, key_) = (self.clone(), cache.clone(), key.clone());
                    let started = ticket.clone();
                    let task = tokio::spawn(async move {
                        // Leaves the map when done, even by a panic.
                        let _leave = Landing {
                            flights: reader.flights.clone(),
                            key: key_.clone(),
                            id,
                        };
                        let outcome = reader.store.timed(name, run(query)).await;
                        if let Ok(value) = &outcome {
                            let bytes = weight(value);
                            cache.put(key_, reach, ticket, value.clone(), bytes);
                        }
                        single_flight::boxed(outcome)
                    });
                    let flight: Flight = single_flight::flight(task);
                    flights.insert(key, (id, flight.clone(), started));
                    flight
                }
            }
        };
        shared_value(flight.await)
    }

    /// The SPEC §7 counts of `filter` over `period`.
    pub async fn measure_counts(
        &self,
        filter: &Filter,
        period: &Period,
        mode: ReadMode,
    ) -> Result<Counts, StoreError> {
        let name = match period {
            Period::AllTime => "measure_counts_all_time",
            Period::Segments(_) => "measure_counts_window",
        };
        self.cached_one(
            name,
            db::counts::measure_counts(self.store.client(), filter, period),
            period_reach(filter, period),
            mode,
        )
        .await
    }

    /// The counts of every badge class with events in `period`.
    pub async fn class_counts(
        &self,
        filter: &Filter,
        period: &Period,
        mode: ReadMode,
    ) -> Result<Vec<ClassCounts>, StoreError> {
        self.cached_all(
            "class_counts",
            db::counts::class_counts(self.store.client(), filter, period),
            period_reach(filter, period),
            mode,
        )
        .await
    }

    /// The latest metadata of every upserted badge class in `filter`.
    pub async fn badge_classes(
        &self,
        filter: &Filter,
        mode: ReadMode,
    ) -> Result<Vec<BadgeClassMeta>, StoreError> {
        self.cached_all_weighed(
            "badge_classes",
            db::badge_classes::badge_classes(self.store.client(), filter),
            Reach::all_time(filter.org.as_deref()),
            mode,
            |r: &BadgeClassMeta| {
                r.name.len()
                    + r.attribute_keys.iter().map(|k| k.len() + 24).sum::<usize>()
                    + r.attribute_values.len()
            },
        )
        .await
    }

    /// The orgs, issuers and badge classes within `filter`, with their
    /// all-time awards.
    pub async fn scopes(
        &self,
        filter: &Filter,
        mode: ReadMode,
    ) -> Result<Vec<ScopeRow>, StoreError> {
        self.cached_all_weighed(
            "scopes",
            db::scopes::scopes(self.store.client(), filter),
            Reach::all_time(filter.org.as_deref()),
            mode,
            |r: &ScopeRow| {
                r.org_id.len() + r.issuer_id.len() + r.badge_class_id.len() + r.name.len()
            },
        )
        .await
    }

    /// The counts of `dimension`'s values in `period`.
    pub async fn distribution(
        &self,
        filter: &Filter,
        period: &Period,
        dimension: Dimension,
        mode: ReadMode,
    ) -> Result<Vec<DistributionRow>, StoreError> {
        self.cached_all(
            "distribution",
            db::distribution::distribution(self.store.client(), filter, period, dimension),
            period_reach(filter, period),
            mode,
        )
        .await
    }

    /// The counts per `granularity` bucket that has events in `period`.
    pub async fn trend_counts(
        &self,
        filter: &Filter,
        period: &Period,
        granularity: Granularity,
        mode: ReadMode,
    ) -> Result<Vec<TrendRow>, StoreError> {
        self.cached_all(
            "trend_counts",
            db::counts::trend_counts(self.store.client(), filter, period, granularity),
            period_reach(filter, period),
            mode,
        )
        .await
    }

    /// The lifecycle of the cohort first awarded in `window`.
    pub async fn lifecycle(
        &self,
        filter: &Filter,
        window: Window,
        mode: ReadMode,
    ) -> Result<LifecycleRow, StoreError> {
        // The cohort is fixed by the window, but its later accepts, shares
        // and views may occur at any time.
        self.cached_one(
            "lifecycle",
            db::lifecycle::lifecycle(self.store.client(), filter, window),
            Reach::all_time(filter.org.as_deref()),
            mode,
        )
        .await
    }

    /// The annotations in scope with `at` in `window`, at most `limit`.
    pub async fn annotations(
        &self,
        filter: &Filter,
        window: Window,
        limit: u64,
        mode: ReadMode,
    ) -> Result<Vec<AnnotationRow>, StoreError> {
        self.cached_all_weighed(
            "annotations",
            db::annotations::annotations(self.store.client(), filter, window, limit),
            Reach::span(filter.org.as_deref(), window.from(), window.to()),
            mode,
            |r: &AnnotationRow| r.id.len() + r.title.len() + r.text.len(),
        )
        .await
    }

    /// The annotation `id` if `filter` may see it.
    pub async fn annotation(
        &self,
        filter: &Filter,
        id: &str,
        mode: ReadMode,
    ) -> Result<Option<AnnotationRow>, StoreError> {
        let rows = self
            .cached_all_weighed(
                "annotation",
                db::impact::annotation(self.store.client(), filter, id),
                Reach::all_time(filter.org.as_deref()),
                mode,
                |r: &AnnotationRow| r.id.len() + r.title.len() + r.text.len(),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The award days not sealed since their last change of an org-wide
    /// `filter`, which its cohort reads name (`db::award_days`); `None`
    /// for an issuer or a badge class, whose cohorts are counted from
    /// their assertions.
    async fn unsealed_days(
        &self,
        filter: &Filter,
        mode: ReadMode,
    ) -> Result<Option<Unsealed>, StoreError> {
        if !filter.org_wide() {
            return Ok(None);
        }
        let rows = self
            .cached_all(
                "unsealed_days",
                db::award_days::unsealed(self.store.client(), filter.org.as_deref()),
                Reach::all_time(filter.org.as_deref()),
                mode,
            )
            .await?;
        Ok(Some(Unsealed::from_rows(rows)))
    }

    /// The cohorts before and after an annotation.
    pub async fn impact_cohorts(
        &self,
        filter: &Filter,
        windows: &Windows,
        horizon: u32,
        mode: ReadMode,
    ) -> Result<ImpactCohorts, StoreError> {
        let unsealed = self.unsealed_days(filter, mode).await?;
        let Some(query) = db::impact::cohorts(
            self.store.client(),
            filter,
            windows,
            horizon,
            unsealed.as_ref(),
        ) else {
            return Ok(ImpactCohorts::default());
        };
        // Later accepts and shares may occur at any time.
        self.cached_one(
            "impact_cohorts",
            query,
            Reach::all_time(filter.org.as_deref()),
            mode,
        )
        .await
    }

    /// The awards, shares and views of an impact's two windows (their
    /// periods; either may be empty).
    pub async fn impact_window_counts(
        &self,
        filter: &Filter,
        windows: &Windows,
        periods: (Option<&Period>, Option<&Period>),
        mode: ReadMode,
    ) -> Result<WindowCounts, StoreError> {
        let Some(query) =
            db::impact::window_counts(self.store.client(), filter, periods.0, periods.1)
        else {
            return Ok(WindowCounts::default());
        };
        self.cached_one(
            "impact_window_counts",
            query,
            Reach::span(filter.org.as_deref(), windows.before.0, windows.after.1),
            mode,
        )
        .await
    }

    /// The cohort first awarded in `window`, per UTC slot.
    pub async fn timing_slots(
        &self,
        filter: &Filter,
        window: Window,
        slot_secs: u32,
        mode: ReadMode,
    ) -> Result<Vec<SlotCounts>, StoreError> {
        let unsealed = self.unsealed_days(filter, mode).await?;
        self.cached_all(
            "timing_slots",
            db::timing::slot_counts(
                self.store.client(),
                filter,
                window,
                slot_secs,
                unsealed.as_ref(),
            ),
            Reach::all_time(filter.org.as_deref()),
            mode,
        )
        .await
    }

    /// The cohorts first awarded in `window`, by the period they reached
    /// `stage` in.
    pub async fn cohort_reach(
        &self,
        filter: &Filter,
        window: Window,
        granularity: Granularity,
        stage: Stage,
        mode: ReadMode,
    ) -> Result<Vec<ReachCounts>, StoreError> {
        let unsealed = self.unsealed_days(filter, mode).await?;
        self.cached_all(
            "cohort_reach",
            db::cohorts::reach_counts(
                self.store.client(),
                filter,
                window,
                granularity,
                stage,
                unsealed.as_ref(),
            ),
            Reach::all_time(filter.org.as_deref()),
            mode,
        )
        .await
    }

    /// The counts of every peer at `level` over `period` (every org's
    /// data, whatever the request's scope).
    pub async fn peer_counts(
        &self,
        level: Level,
        period: &Period,
        mode: ReadMode,
    ) -> Result<Vec<PeerCounts>, StoreError> {
        self.cached_all_weighed(
            "peer_counts",
            db::benchmark::peer_counts(self.store.client(), level, period),
            period_reach(&Filter::default(), period),
            mode,
            |r: &PeerCounts| r.org_id.len() + r.issuer_id.len(),
        )
        .await
    }

    /// Stores one annotation, then makes every read that starts after
    /// this returns include it (`QueryCache::apply_write`: what it touches
    /// is dropped, no older computation is stored) and tells the other
    /// exporters through the change feed.
    pub async fn insert_annotation(&self, row: &AnnotationRow) -> Result<(), StoreError> {
        self.store.insert_annotation(row).await?;
        let change = Change::of_events([(row.org_id.as_str(), row.at)]);
        if let Some(cache) = &self.cache {
            cache.apply_write(&change);
        }
        if let Some(feed) = &self.feed {
            feed.announce(&change).await;
        }
        Ok(())
    }
}

/// What a query over `period` in `filter` depends on.
fn period_reach(filter: &Filter, period: &Period) -> Reach {
    let org = filter.org.as_deref();
    match period {
        Period::AllTime => Reach::all_time(org),
        Period::Segments(segments) => Reach::span(
            org,
            segments.iter().map(|s| s.from).min().unwrap_or(0),
            segments.iter().map(|s| s.to).max().unwrap_or(0),
        ),
    }
}
