//! Runs queries against ClickHouse: one place that times each query (by
//! name, a closed set), bounds it with `exporter.query_timeout_secs` and
//! maps failures to [`StoreError`]. No cache here (that is `freshness`),
//! no SQL text (that is each query family's file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use badgepulse_runtime::settings::ClickHouseConfig;
use clickhouse::query::Query;
use clickhouse::{Client, RowOwned, RowRead};

use super::annotations::{AnnotationRow, ANNOTATIONS_TABLE};
use super::award_days::Unsealed;
use badgepulse_contract::tables::SCOPE_TOTAL;

use super::sql::{Sql, DEFAULT_DATABASE};
use super::totals::{self, DimensionTotals, IssuerTotals, LifecycleTotals};
use crate::model::benchmark::{Level, PeerCounts};
use crate::model::tiers::Period;
use crate::telemetry::Metrics;

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
    /// What the request names does not exist in its scope (an
    /// annotation another scope may see, or none at all).
    #[error("{0}")]
    NotFound(String),
    /// The failure of a query shared with another request.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

/// The ClickHouse client for `cfg` as the exporter uses it.
///
/// In cluster mode every query reads `Distributed` tables, and several
/// filter or join one with a subquery over another (`IN (SELECT … FROM
/// lifecycle_refiled …)`, the sealed days of `viewers.rs`). On more than
/// one shard ClickHouse refuses such a query by default
/// (`distributed_product_mode = 'deny'`); `global` runs the subquery once,
/// over every shard, and sends its result to each shard, so the answer is
/// exact wherever the rows live.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    let client = Client::default()
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(&cfg.password)
        .with_database(&cfg.database)
        // ClickHouse 18.16 lacks RowBinaryWithNamesAndTypes.
        .with_validation(false);
    if cfg.cluster.is_empty() {
        client
    } else {
        client.with_setting("distributed_product_mode", "global")
    }
}

/// The ClickHouse client and what every query needs.
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
    pub(crate) async fn one<T: RowOwned + RowRead>(
        &self,
        name: &'static str,
        query: Query,
    ) -> Result<T, StoreError> {
        self.timed(name, query.fetch_one::<T>()).await
    }

    pub(crate) async fn all<T: RowOwned + RowRead>(
        &self,
        name: &'static str,
        query: Query,
    ) -> Result<Vec<T>, StoreError> {
        self.timed(name, query.fetch_all::<T>()).await
    }

    pub(crate) async fn timed<T>(
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

    /// Stores one annotation (a single-row INSERT). The result cache learns
    /// of it through `freshness::Reader::insert_annotation`, which calls
    /// this.
    pub async fn insert_annotation(&self, row: &AnnotationRow) -> Result<(), StoreError> {
        const NAME: &str = "insert_annotation";
        let insert = async {
            // In cluster mode `annotations` is a Distributed table: insert
            // through to the shard before answering, so that the next read
            // through the same node sees the new annotation. Other replicas
            // have it once replicated (docs/decisions.md, "Read your
            // writes").
            let mut insert = self
                .client
                .insert::<AnnotationRow>(ANNOTATIONS_TABLE)
                .await?
                .with_setting("insert_distributed_sync", "1");
            insert.write(row).await?;
            insert.end().await
        };
        self.timed(NAME, insert).await
    }

    /// All-time counts per (org, issuer) label pair, bounded in cardinality.
    pub async fn issuer_totals(
        &self,
        max_orgs: u64,
        max_issuers: u64,
    ) -> Result<Vec<IssuerTotals>, StoreError> {
        self.all(
            "issuer_totals",
            totals::issuer_totals(&self.client, max_orgs, max_issuers),
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
            totals::dimension_totals(&self.client, max_orgs),
        )
        .await
    }

    /// All-time lifecycle stage counts per org label, bounded in
    /// cardinality.
    pub async fn lifecycle_totals(
        &self,
        max_orgs: u64,
    ) -> Result<Vec<LifecycleTotals>, StoreError> {
        let unsealed = self
            .all(
                "unsealed_days",
                super::award_days::unsealed(&self.client, None),
            )
            .await?;
        self.all(
            "lifecycle_totals",
            totals::lifecycle_totals(&self.client, max_orgs, &Unsealed::from_rows(unsealed)),
        )
        .await
    }

    /// All-time counts of every org (the benchmark's peers), unfolded.
    pub async fn org_totals(&self) -> Result<Vec<PeerCounts>, StoreError> {
        self.all(
            "org_totals",
            super::benchmark::peer_counts(&self.client, Level::Org, &Period::AllTime),
        )
        .await
    }

    /// Ok when ClickHouse answers and the tables the exporter reads exist.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let present: u64 = self
            .one("tables_present", tables_present(&self.client))
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

/// How many of the tables the exporter reads exist (readiness: the count
/// must equal [`REQUIRED_TABLES`]`.len()`).
pub fn tables_present(client: &Client) -> Query {
    let db = client.database().unwrap_or(DEFAULT_DATABASE);
    let mut sql = Sql::default();
    sql.push("SELECT toUInt64(count()) FROM system.tables WHERE database = ")
        .str(db);
    sql.push(" AND name IN (");
    for (n, name) in REQUIRED_TABLES.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.str(name);
    }
    sql.push(")");
    sql.build(client)
}

/// The tables the exporter reads.
pub const REQUIRED_TABLES: [&str; 10] = [
    "events",
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "scope_hour",
    "scope_day",
    SCOPE_TOTAL,
    "assertion_lifecycle",
    "badge_classes",
    ANNOTATIONS_TABLE,
];
