//! Runs the queries of `queries.rs` against ClickHouse: one place that
//! times each query (by name, a closed set), bounds it with
//! `exporter.query_timeout_secs` and maps failures to [`StoreError`].
//! No SQL text here.

use std::time::{Duration, Instant};

use badgepulse_contract::settings::ClickHouseConfig;
use clickhouse::query::Query;
use clickhouse::{Client, RowOwned, RowRead};

use crate::measures::Counts;
use crate::metrics::Metrics;
use crate::queries::{self, Filter, IssuerTotals, Period, REQUIRED_TABLES};

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
}

impl Store {
    pub fn new(client: Client, metrics: Metrics, timeout: Duration) -> Self {
        Store {
            client,
            metrics,
            timeout,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
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
        period: Period,
    ) -> Result<Counts, StoreError> {
        let name = match period {
            Period::AllTime => "measure_counts_all_time",
            Period::Window(_) => "measure_counts_window",
        };
        self.one(name, queries::measure_counts(&self.client, filter, period))
            .await
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
