//! Runs the queries of `queries.rs` against ClickHouse: one place that
//! times each query (by name, a closed set), bounds it with
//! `exporter.query_timeout_secs` and maps failures to [`StoreError`].
//! No SQL text here.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use badgepulse_contract::changes::Change;
use badgepulse_runtime::settings::ClickHouseConfig;
use clickhouse::query::Query;
use clickhouse::{Client, RowOwned, RowRead};
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::cache::{rows_weight, Deps, QueryCache, Ticket};
use crate::measures::{Counts, Dimension};
use crate::metrics::Metrics;
use crate::notices::Notices;
use crate::queries::{
    self, AnnotationRow, BadgeClassRow, ClassCounts, DimensionTotals, DistributionRow, Filter,
    IssuerTotals, LifecycleRow, LifecycleTotals, Period, TrendRow, REQUIRED_TABLES,
};
use crate::window::{Granularity, Window};

/// A failed ClickHouse query, with the query's name.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse ({query}): {source}")]
    Query {
        query: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("clickhouse ({query}): no answer within {timeout:?}")]
    Timeout {
        query: &'static str,
        timeout: Duration,
    },
    #[error("clickhouse: {0}")]
    NotReady(String),
    /// The request cannot be answered as asked (found when a window "up
    /// to now" is resolved again, e.g. it grew past the bucket limit).
    #[error("{0}")]
    Request(String),
    /// The failure of a query shared with another request.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

/// The ClickHouse client for `cfg` as the exporter uses it.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(&cfg.password)
        .with_database(&cfg.database)
        // ClickHouse 18.16 lacks RowBinaryWithNamesAndTypes.
        .with_validation(false)
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    metrics: Metrics,
    timeout: Duration,
    /// Results of the analytics queries (not of `/metrics` refreshes,
    /// readiness or writes); `None`: no cache.
    cache: Option<Arc<QueryCache>>,
    /// Where this exporter's own changes (annotations) are announced.
    notices: Option<Notices>,
    /// False for a request that asked for fresh data (`Cache-Control:
    /// no-cache`): the cache is not read, only refilled.
    read_cache: bool,
    /// The cache's queries in flight.
    flights: Flights,
}

impl Store {
    pub fn new(client: Client, metrics: Metrics, timeout: Duration) -> Self {
        Store {
            client,
            metrics,
            timeout,
            cache: None,
            notices: None,
            read_cache: true,
            flights: Flights::default(),
        }
    }

    /// This store with analytics results cached in `cache`.
    pub fn with_cache(mut self, cache: Arc<QueryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// This store announcing its own writes through `notices`.
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = Some(notices);
        self
    }

    /// This store, reading from ClickHouse even where the cache holds an
    /// answer (and refreshing the cache with it).
    pub fn bypassing_cache(&self) -> Self {
        Store {
            read_cache: false,
            ..self.clone()
        }
    }

    /// This store reading the result cache (undoes
    /// [`Store::bypassing_cache`]).
    pub fn reading_cache(&self) -> Self {
        Store {
            read_cache: true,
            ..self.clone()
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Like [`Store::one`], through the result cache.
    async fn cached_one<T>(
        &self,
        name: &'static str,
        query: Query,
        deps: Deps,
    ) -> Result<T, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached(
            name,
            query,
            deps,
            |_| rows_weight::<T>(1),
            |q| q.fetch_one::<T>(),
        )
        .await
    }

    /// Like [`Store::all`], through the result cache; rows weigh as
    /// [`rows_weight`] estimates.
    async fn cached_all<T>(
        &self,
        name: &'static str,
        query: Query,
        deps: Deps,
    ) -> Result<Vec<T>, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached_all_weighed(name, query, deps, |_| 0).await
    }

    /// [`Store::cached_all`] for rows whose strings can be long:
    /// `heap(row)` is the bytes a row holds beyond its inline size.
    async fn cached_all_weighed<T>(
        &self,
        name: &'static str,
        query: Query,
        deps: Deps,
        heap: impl Fn(&T) -> usize + Send + 'static,
    ) -> Result<Vec<T>, StoreError>
    where
        T: RowOwned + RowRead + Clone + Send + Sync + 'static,
    {
        self.cached(
            name,
            query,
            deps,
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
        deps: Deps,
        weight: impl FnOnce(&T) -> usize + Send + 'static,
        run: impl FnOnce(Query) -> Fut + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = clickhouse::error::Result<T>> + Send + 'static,
    {
        let Some(cache) = &self.cache else {
            return self.timed(name, run(query)).await;
        };
        let key = format!("{name}\n{}", query.sql_display());
        let ticket = match cache.get::<T>(&key, self.read_cache) {
            Ok(hit) => return Ok(hit),
            Err(ticket) => ticket,
        };
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some((_, flight, started))
                    if self.read_cache && !cache.changed_since(started, &deps) =>
                {
                    flight.clone()
                }
                _ => {
                    // A task of its own: it finishes, stores its result and
                    // leaves the map even if every request waiting for it
                    // is dropped (a client gone, a sibling query failed).
                    let id = NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed);
                    let (store, cache, key_) = (self.clone(), cache.clone(), key.clone());
                    let started = ticket.clone();
                    let task = tokio::spawn(async move {
                        // Leaves the map when done, even by a panic.
                        let _leave = Landing {
                            flights: store.flights.clone(),
                            key: key_.clone(),
                            id,
                        };
                        let outcome = store.timed(name, run(query)).await;
                        if let Ok(value) = &outcome {
                            let bytes = weight(value);
                            cache.put(key_, deps, ticket, value.clone(), bytes);
                        }
                        outcome
                            .map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)
                            .map_err(Arc::new)
                    });
                    let flight: Flight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(StoreError::NotReady(format!("query task: {e}"))))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, (id, flight.clone(), started));
                    flight
                }
            }
        };
        shared_value(flight.await)
    }

    /// Runs `query` expecting exactly one row, timed as `name`.
    async fn one<T: RowOwned + RowRead>(
        &self,
        name: &'static str,
        query: Query,
    ) -> Result<T, StoreError> {
        self.timed(name, query.fetch_one::<T>()).await
    }

    async fn all<T: RowOwned + RowRead>(
        &self,
        name: &'static str,
        query: Query,
    ) -> Result<Vec<T>, StoreError> {
        self.timed(name, query.fetch_all::<T>()).await
    }

    async fn timed<T>(
        &self,
        name: &'static str,
        fut: impl std::future::Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, fut).await;
        self.metrics
            .query_seconds
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        let result = match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(StoreError::Query {
                query: name,
                source,
            }),
            Err(_) => Err(StoreError::Timeout {
                query: name,
                timeout: self.timeout,
            }),
        };
        if result.is_err() {
            self.metrics.query_errors.with_label_values(&[name]).inc();
        }
        result
    }

    /// The SPEC §7 counts of `filter` over `period`.
    pub async fn measure_counts(
        &self,
        filter: &Filter,
        period: &Period,
    ) -> Result<Counts, StoreError> {
        let name = match period {
            Period::AllTime => "measure_counts_all_time",
            Period::Segments(_) => "measure_counts_window",
        };
        self.cached_one(
            name,
            queries::measure_counts(&self.client, filter, period),
            period_deps(filter, period),
        )
        .await
    }

    /// The counts of every badge class with events in `period`.
    pub async fn class_counts(
        &self,
        filter: &Filter,
        period: &Period,
    ) -> Result<Vec<ClassCounts>, StoreError> {
        self.cached_all(
            "class_counts",
            queries::class_counts(&self.client, filter, period),
            period_deps(filter, period),
        )
        .await
    }

    /// The latest metadata of every upserted badge class in `filter`.
    pub async fn badge_classes(&self, filter: &Filter) -> Result<Vec<BadgeClassRow>, StoreError> {
        self.cached_all_weighed(
            "badge_classes",
            queries::badge_classes(&self.client, filter),
            Deps::all_time(filter.org.as_deref()),
            |r: &BadgeClassRow| {
                r.name.len()
                    + r.attribute_keys.iter().map(|k| k.len() + 24).sum::<usize>()
                    + r.attribute_values.len()
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
    ) -> Result<Vec<DistributionRow>, StoreError> {
        self.cached_all(
            "distribution",
            queries::distribution(&self.client, filter, period, dimension),
            period_deps(filter, period),
        )
        .await
    }

    /// The counts per `granularity` bucket that has events in `period`.
    pub async fn trend_counts(
        &self,
        filter: &Filter,
        period: &Period,
        granularity: Granularity,
    ) -> Result<Vec<TrendRow>, StoreError> {
        self.cached_all(
            "trend_counts",
            queries::trend_counts(&self.client, filter, period, granularity),
            period_deps(filter, period),
        )
        .await
    }

    /// The lifecycle of the cohort first awarded in `window`.
    pub async fn lifecycle(
        &self,
        filter: &Filter,
        window: Window,
    ) -> Result<LifecycleRow, StoreError> {
        // The cohort is fixed by the window, but its later accepts, shares
        // and views may occur at any time.
        self.cached_one(
            "lifecycle",
            queries::lifecycle(&self.client, filter, window),
            Deps::all_time(filter.org.as_deref()),
        )
        .await
    }

    /// The annotations in scope with `at` in `window`, at most `limit`.
    pub async fn annotations(
        &self,
        filter: &Filter,
        window: Window,
        limit: u64,
    ) -> Result<Vec<AnnotationRow>, StoreError> {
        self.cached_all_weighed(
            "annotations",
            queries::annotations(&self.client, filter, window, limit),
            Deps::span(filter.org.as_deref(), window.from(), window.to()),
            |r: &AnnotationRow| r.id.len() + r.title.len() + r.text.len(),
        )
        .await
    }

    /// Stores one annotation (a single-row INSERT).
    pub async fn insert_annotation(&self, row: &AnnotationRow) -> Result<(), StoreError> {
        const NAME: &str = "insert_annotation";
        let insert = async {
            // In cluster mode `annotations` is a Distributed table: insert
            // through to the shard before answering, so that the next read
            // through the same node (and the cache it refills) sees the new
            // annotation. Other replicas have it once replicated
            // (docs/decisions.md, "Read your writes").
            let mut insert = self
                .client
                .insert::<AnnotationRow>(queries::ANNOTATIONS_TABLE)
                .await?
                .with_setting("insert_distributed_sync", "1");
            insert.write(row).await?;
            insert.end().await
        };
        self.timed(NAME, insert).await?;
        let change = Change::of_events([(row.org_id.as_str(), row.at)]);
        if let Some(cache) = &self.cache {
            cache.apply_write(&change);
        }
        if let Some(notices) = &self.notices {
            notices.announce(&change).await;
        }
        Ok(())
    }

    /// All-time counts per (org, issuer) label pair, bounded in cardinality.
    pub async fn issuer_totals(
        &self,
        max_orgs: u64,
        max_issuers: u64,
    ) -> Result<Vec<IssuerTotals>, StoreError> {
        self.all(
            "issuer_totals",
            queries::issuer_totals(&self.client, max_orgs, max_issuers),
        )
        .await
    }

    /// All-time award methods, share channels and view sources per org
    /// label, bounded in cardinality.
    pub async fn dimension_totals(
        &self,
        max_orgs: u64,
    ) -> Result<Vec<DimensionTotals>, StoreError> {
        self.all(
            "dimension_totals",
            queries::dimension_totals(&self.client, max_orgs),
        )
        .await
    }

    /// All-time lifecycle stage counts per org label, bounded in
    /// cardinality.
    pub async fn lifecycle_totals(
        &self,
        max_orgs: u64,
    ) -> Result<Vec<LifecycleTotals>, StoreError> {
        self.all(
            "lifecycle_totals",
            queries::lifecycle_totals(&self.client, max_orgs),
        )
        .await
    }

    /// Ok when ClickHouse answers and the tables the exporter reads exist.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let present: u64 = self
            .one("tables_present", queries::tables_present(&self.client))
            .await?;
        if present as usize == REQUIRED_TABLES.len() {
            Ok(())
        } else {
            Err(StoreError::NotReady(format!(
                "{present} of the tables {} exist in database {}",
                REQUIRED_TABLES.join(", "),
                self.client.database().unwrap_or("?")
            )))
        }
    }
}

/// A query running for the cache, shared by every request that misses
/// the same key meanwhile.
type Flight = Shared<BoxFuture<'static, Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>>>>;

/// The queries running for the cache, by key, with the ticket each
/// started with.
type Flights = Arc<Mutex<HashMap<String, (u64, Flight, Ticket)>>>;

/// Removes flight `id` of `key` from the map when dropped (unless another
/// flight has replaced it).
struct Landing {
    flights: Flights,
    key: String,
    id: u64,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.key)
            .is_some_and(|(i, _, _)| *i == self.id)
        {
            flights.remove(&self.key);
        }
    }
}

/// Tells flights apart (a key's flight may be replaced while it runs).
static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// A shared query's result as `T`.
fn shared_value<T: Clone + 'static>(
    outcome: Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(v) => Ok(v
            .downcast_ref::<T>()
            .expect("one key, one row type")
            .clone()),
        Err(e) => Err(Arc::try_unwrap(e).unwrap_or_else(StoreError::Shared)),
    }
}

/// What a query over `period` in `filter` depends on.
fn period_deps(filter: &Filter, period: &Period) -> Deps {
    let org = filter.org.as_deref();
    match period {
        Period::AllTime => Deps::all_time(org),
        Period::Segments(segments) => Deps::span(
            org,
            segments.iter().map(|s| s.from).min().unwrap_or(0),
            segments.iter().map(|s| s.to).max().unwrap_or(0),
        ),
    }
}
