//! ClickHouse I/O of the aggregator: migrations, high-water marks, the
//! duplicate lookup, inserts and recovery statements. The SQL text comes
//! from `schema.rs`; this file only executes it.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use badgepulse_contract::tables::{Tier, SCOPE_TOTAL};
use badgepulse_runtime::settings::ClickHouseConfig;
use clickhouse::query::Query;
use clickhouse::Client;

use chrono::{DateTime, Utc};

use crate::config::AggregatorConfig;
use crate::plan::Marks;
use crate::retention;
use crate::rows::EventRow;
use crate::schema::{Schema, DERIVED_TABLES};

/// Errors talking to ClickHouse, with the statement's purpose.
#[derive(Debug, thiserror::Error)]
#[error("clickhouse ({what}): {source}")]
pub struct StoreError {
    pub what: String,
    #[source]
    pub source: clickhouse::error::Error,
}

fn ctx(what: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError { what, source }
}

#[derive(Clone)]
pub struct Store {
    /// Client bound to the badgepulse database.
    client: Client,
    /// Client without a database, for DDL that may create it.
    admin: Client,
    pub schema: Schema,
}

impl Store {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let admin = Client::default()
            .with_url(&cfg.url)
            .with_user(&cfg.user)
            .with_password(&cfg.password)
            // ClickHouse 18.16 lacks RowBinaryWithNamesAndTypes.
            .with_validation(false);
        Store {
            client: admin.clone().with_database(&cfg.database),
            admin,
            schema: Schema::new(&cfg.database, &cfg.cluster),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.admin
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(ctx("ping"))
    }

    /// Whether the configured database exists.
    pub async fn database_exists(&self) -> Result<bool, StoreError> {
        self.database_exists_query()
            .fetch_one::<u64>()
            .await
            .map(|n| n > 0)
            .map_err(ctx("look up the database"))
    }

    /// Applies every migration not yet recorded; returns the versions applied now.
    pub async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        for stmt in self.schema.bootstrap() {
            self.admin
                .query(&stmt)
                .execute()
                .await
                .map_err(ctx("bootstrap"))?;
        }
        let applied: HashSet<u32> = self
            .admin
            .query(&self.schema.applied_versions())
            .fetch_all::<u32>()
            .await
            .map_err(ctx("read schema_migrations"))?
            .into_iter()
            .collect();
        let mut now_applied = Vec::new();
        for m in self.schema.migrations() {
            if applied.contains(&m.version) {
                continue;
            }
            for stmt in &m.statements {
                self.admin
                    .query(stmt)
                    .execute()
                    .await
                    .map_err(ctx(format!("migration {}", m.version)))?;
            }
            self.admin
                .query(&self.schema.record_migration())
                .bind(m.version)
                .bind(m.description)
                .execute()
                .await
                .map_err(ctx("record migration"))?;
            tracing::info!(
                version = m.version,
                description = m.description,
                "schema migration applied"
            );
            now_applied.push(m.version);
        }
        Ok(now_applied)
    }

    /// Reads every table's high-water mark for `partition`.
    pub async fn marks(&self, partition: u16) -> Result<Marks, StoreError> {
        let mut marks = Marks {
            events: self.mark("events", partition).await?,
            derived: BTreeMap::new(),
        };
        for table in DERIVED_TABLES {
            marks
                .derived
                .insert(table, self.mark(table, partition).await?);
        }
        Ok(marks)
    }

    fn mark_query(&self, table: &str, partition: u16) -> Query {
        self.client
            .query(&self.schema.high_water_mark(table))
            .bind(partition)
    }

    async fn mark(&self, table: &str, partition: u16) -> Result<u64, StoreError> {
        self.mark_query(table, partition)
            .fetch_one::<u64>()
            .await
            .map_err(ctx(format!("high-water mark of {table}")))
    }

    /// Which of `pairs` (org_id, event_id) are already in `events`.
    pub async fn existing(
        &self,
        pairs: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, StoreError> {
        if pairs.is_empty() {
            return Ok(HashSet::new());
        }
        let orgs: Vec<&str> = pairs
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let ids: Vec<&str> = pairs.iter().map(|(_, e)| e.as_str()).collect();
        let wanted: HashSet<&(String, String)> = pairs.iter().collect();
        let found = self
            .existing_query(&orgs, &ids)
            .fetch_all::<(String, String)>()
            .await
            .map_err(ctx("duplicate lookup"))?;
        Ok(found.into_iter().filter(|p| wanted.contains(p)).collect())
    }

    fn existing_query(&self, orgs: &[&str], ids: &[&str]) -> Query {
        self.client
            .query(&self.schema.existing_event_ids())
            .bind(orgs)
            .bind(ids)
    }

    /// Creates the staging table of `partition` if it is missing (it is
    /// node-local and not part of the migrations: partitions are config).
    pub async fn ensure_staging(&self, partition: u16) -> Result<(), StoreError> {
        self.client
            .query(&self.schema.create_staging(partition))
            .execute()
            .await
            .map_err(ctx("create the staging table"))
    }

    /// Writes `rows` of `partition` into `target` all or nothing: truncate
    /// the staging table, upload, then one server-side `INSERT … SELECT`.
    /// A client killed mid-upload only ever leaves a partial *staging*
    /// table. All three statements carry the partition's `query_id`, so
    /// none overlaps a statement a killed predecessor left running.
    pub async fn write(
        &self,
        partition: u16,
        target: &str,
        rows: &[EventRow],
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let client = self
            .client
            .clone()
            .with_setting("query_id", self.schema.write_query_id(partition));
        client
            .query(&self.schema.truncate_staging(partition))
            .execute()
            .await
            .map_err(ctx("truncate the staging table"))?;
        // The crate quotes the name as one identifier: no `db.` prefix (the
        // client is bound to the database).
        let staging = Schema::staging_name(partition);
        let upload = ctx(format!("upload to {staging}"));
        let mut insert = client
            .insert::<EventRow>(&staging)
            .await
            .map_err(ctx(format!("upload to {staging}")))?;
        for row in rows {
            if let Err(e) = insert.write(row).await {
                return Err(upload(e));
            }
        }
        insert.end().await.map_err(upload)?;
        client
            .query(&self.schema.commit_staging(partition, target))
            .execute()
            .await
            .map_err(ctx(format!("move the batch into {target}")))?;
        tracing::debug!(
            target,
            rows = rows.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch written"
        );
        Ok(())
    }

    /// Recomputes `table`'s share of partition `partition`'s messages with
    /// sequence in `(after, upto]` from `events`.
    pub async fn recover(
        &self,
        table: &str,
        partition: u16,
        after: u64,
        upto: u64,
        keep_from: u32,
    ) -> Result<(), StoreError> {
        self.recover_query(table, partition, after, upto, keep_from)
            .execute()
            .await
            .map_err(ctx(format!("recover {table}")))
    }

    fn recover_query(
        &self,
        table: &str,
        partition: u16,
        after: u64,
        upto: u64,
        keep_from: u32,
    ) -> Query {
        self.client
            .query(&self.schema.recovery_insert(table))
            .bind(partition)
            .bind(after)
            .bind(upto)
            .bind(keep_from)
    }

    fn database_exists_query(&self) -> Query {
        self.admin
            .query(&self.schema.database_exists())
            .bind(&self.schema.database)
    }

    fn partitions_query(&self, table: &str) -> Query {
        self.admin.query(&self.schema.list_partitions()).bind(table)
    }

    /// Drops the partitions of every rollup table that retention no longer
    /// keeps at `now`; returns (table, partition) of each dropped one.
    pub async fn enforce_retention(
        &self,
        config: &AggregatorConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut dropped = Vec::new();
        let tables: Vec<(Tier, &str)> = Tier::ALL
            .into_iter()
            .flat_map(|g| g.tables().map(move |t| (g, t)))
            .collect();
        for (g, table) in tables {
            let Some(keep) = retention::keep_from(g, config.retention_days(g), now) else {
                continue;
            };
            let local = if self.schema.cluster.is_empty() {
                table.to_owned()
            } else {
                format!("{table}_local")
            };
            let parts = self
                .partitions_query(&local)
                .fetch_all::<String>()
                .await
                .map_err(ctx(format!("partitions of {table}")))?;
            for id in retention::expired(g, &parts, keep) {
                let n: u32 = id
                    .trim_matches('\'')
                    .parse()
                    .expect("expired() only returns numeric ids");
                self.admin
                    .query(&self.schema.drop_partition(table, n))
                    .execute()
                    .await
                    .map_err(ctx(format!("drop partition {id} of {table}")))?;
                tracing::info!(table, partition = id, "dropped expired partition");
                dropped.push((table.to_owned(), id.to_owned()));
            }
        }
        Ok(dropped)
    }

    /// Merges the parts of `scope_total`. ClickHouse's background merges
    /// leave a table of small parts unmerged for a long time, and an
    /// all-time read merges one distinct-count sketch per key and part.
    /// The table is small (a row per org, issuer and badge class, event
    /// type and partition): after the exporter benchmark's 10 M events,
    /// 97 MB in 6 parts, merged into 2 in 1.3 s. Merging never changes
    /// what the table holds.
    pub async fn compact_totals(&self) -> Result<(), StoreError> {
        self.admin
            .query(&self.schema.optimize(SCOPE_TOTAL))
            .execute()
            .await
            .map_err(ctx(format!("optimize {SCOPE_TOTAL}")))
    }

    /// Every query (not DDL) the aggregator issues, built exactly as the
    /// methods above build them, with representative parameters; for the
    /// compatibility test that runs them on every ClickHouse generation.
    pub fn sample_queries(&self) -> Vec<(String, Query)> {
        let mut out = vec![
            (
                "applied_versions".to_owned(),
                self.admin.query(&self.schema.applied_versions()),
            ),
            (
                "record_migration".to_owned(),
                self.admin
                    .query(&self.schema.record_migration())
                    .bind(9999u32)
                    .bind("compatibility check"),
            ),
            (
                "existing_event_ids".to_owned(),
                self.existing_query(&["acme", "globex"], &["e-1", "e-2", "it's"]),
            ),
        ];
        for table in std::iter::once("events").chain(DERIVED_TABLES) {
            out.push((
                format!("high_water_mark:{table}"),
                self.mark_query(table, 0),
            ));
        }
        // The staged write on an empty staging table: runs every statement
        // without adding rows.
        out.push((
            "create_staging".to_owned(),
            self.client.query(&self.schema.create_staging(0)),
        ));
        out.push((
            "truncate_staging".to_owned(),
            self.client.query(&self.schema.truncate_staging(0)),
        ));
        for target in ["events_input".to_owned(), self.schema.local("events")] {
            out.push((
                format!("commit_staging:{target}"),
                self.client.query(&self.schema.commit_staging(0, &target)),
            ));
        }
        for table in DERIVED_TABLES {
            out.push((
                format!("recover:{table}"),
                self.recover_query(table, 0, 0, u64::from(u32::MAX), 0),
            ));
        }
        for table in Tier::ALL.into_iter().flat_map(Tier::tables) {
            out.push((format!("partitions:{table}"), self.partitions_query(table)));
        }
        out.push((
            "compact_totals".to_owned(),
            self.admin.query(&self.schema.optimize(SCOPE_TOTAL)),
        ));
        out
    }
}
