//! ClickHouse I/O of the aggregator: migrations, high-water marks, the
//! duplicate lookup, inserts and recovery statements. The SQL text comes
//! from `schema.rs`; this file only executes it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use badgepulse_contract::tables::{Tier, SCOPE_TOTAL, VIEWER_DAYS, VIEWER_HOURS};
use badgepulse_runtime::settings::ClickHouseConfig;
use clickhouse::query::Query;
use clickhouse::Client;

use chrono::{DateTime, Utc};

use crate::config::AggregatorConfig;
use crate::plan::{self, Marks};
use crate::retention;
use crate::rows::EventRow;
use crate::schema::migrations::{layout3_name, legacy_name, RELAID_TABLES, RESORTED_TABLES};
use crate::schema::{Schema, CURRENT_DESCRIPTION, CURRENT_VERSION, DERIVED_TABLES};

/// An org day whose unique viewers the seal job counts: views with a
/// viewer key up to stream sequence `hi`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DayToSeal {
    pub org_id: String,
    /// Day start, epoch seconds.
    pub day: u32,
    /// `view_days.max_seq` of the day.
    pub hi: u64,
}

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

/// Runs `work` (statements to ClickHouse) for at most `limit`; past it the
/// work is dropped, closing its connections as a dead network would, and
/// the error names `what`. The crate's requests have no deadline of their
/// own, and a request whose connection was lost without a reset never
/// gets an answer.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(StoreError {
            what: format!("{what}: no answer within {} s", limit.as_secs()),
            source: clickhouse::error::Error::TimedOut,
        })
    })
}

#[derive(Clone)]
pub struct Store {
    /// Client bound to the badgepulse database.
    client: Client,
    /// Client without a database, for DDL that may create it.
    admin: Client,
    pub schema: Schema,
    /// The node's HTTP URL.
    pub url: String,
}

impl Store {
    /// The store of `clickhouse.url`.
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        Self::at(cfg, &cfg.url)
    }

    /// The store of the node at `url` (in a cluster of several shards, a
    /// node of one of them: `crate::shards`).
    pub fn at(cfg: &ClickHouseConfig, url: &str) -> Self {
        let admin = Client::default()
            .with_url(url)
            .with_user(&cfg.user)
            .with_password(&cfg.password)
            // ClickHouse 18.16 lacks RowBinaryWithNamesAndTypes.
            .with_validation(false);
        Store {
            client: admin.clone().with_database(&cfg.database),
            admin,
            schema: Schema::new(&cfg.database, &cfg.cluster),
            url: url.to_owned(),
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

    /// Brings the database to the current layout ([`CURRENT_VERSION`]):
    /// creates it when new, re-lays it in place when it holds an earlier
    /// layout (`schema::migrations` describes the steps, each of which
    /// resumes after a crash), and in a cluster gives every `Distributed`
    /// table the current sharding key. Returns the version applied now,
    /// if any.
    pub async fn migrate(&self) -> Result<Option<u32>, StoreError> {
        let applied = self.migrate_layout().await?;
        if !self.schema.cluster.is_empty() {
            self.rekey_distributed().await?;
        }
        Ok(applied)
    }

    /// Creates again, on every node, each `Distributed` table whose
    /// engine (its sharding key) differs from the current layout's: those
    /// of a database created when every table was sharded by `rand()`.
    /// One missing (an instance killed between the drop and the create) is
    /// created.
    async fn rekey_distributed(&self) -> Result<(), StoreError> {
        let existing: HashMap<String, String> = self
            .admin
            .query(&self.schema.distributed_engines())
            .fetch_all::<(String, String)>()
            .await
            .map_err(ctx("read the Distributed tables"))?
            .into_iter()
            .collect();
        let plain = |engine: &str| engine.replace([' ', '\'', '`'], "");
        for (table, engine, create) in self.schema.distributed_tables() {
            match existing.get(&table) {
                Some(found) if plain(found) == plain(&engine) => continue,
                Some(found) => {
                    tracing::info!(
                        table,
                        from = found,
                        to = engine,
                        "changing the sharding key"
                    );
                    let drop = self.schema.drop_distributed(&table);
                    self.ddl(&drop, &format!("drop {table}")).await?;
                }
                None => tracing::info!(table, engine, "creating a missing Distributed table"),
            }
            self.ddl(&create, &format!("create {table}")).await?;
        }
        Ok(())
    }

    async fn migrate_layout(&self) -> Result<Option<u32>, StoreError> {
        for stmt in self.schema.bootstrap() {
            self.ddl(&stmt, "bootstrap").await?;
        }
        let applied: HashSet<u32> = self
            .admin
            .query(&self.schema.applied_versions())
            .fetch_all::<u32>()
            .await
            .map_err(ctx("read schema_migrations"))?
            .into_iter()
            .collect();
        if applied.contains(&CURRENT_VERSION) {
            return Ok(None);
        }
        let events = self.sorting_key(&self.schema.local("events")).await?;
        let legacy = self
            .sorting_key(&legacy_name(&self.schema.local("events")))
            .await?;
        if events.as_deref() == Some("org_id, event_id") && legacy.is_none() {
            tracing::info!(
                "re-laying the database in place: renaming the tables of the earlier layout"
            );
            for stmt in self.schema.drop_legacy_views() {
                self.ddl(&stmt, "drop the earlier layout's views").await?;
            }
            for table in RELAID_TABLES {
                if self.sorting_key(&self.schema.local(table)).await?.is_some() {
                    for stmt in self.schema.rename_to_legacy(table) {
                        self.ddl(&stmt, &format!("rename {table}")).await?;
                    }
                }
            }
        }
        if self
            .sorting_key(&legacy_name(&self.schema.local("events")))
            .await?
            .is_some()
        {
            self.copy_legacy_events().await?;
        }
        self.resort_scope_tables().await?;
        let timed = self
            .admin
            .query(&self.schema.seals_have_timing())
            .fetch_one::<u8>()
            .await
            .map_err(ctx("look up the columns of lifecycle_days"))?;
        if timed == 0 {
            for stmt in self.schema.drop_stage_only_seals() {
                self.ddl(&stmt, "drop the stage-only lifecycle seals")
                    .await?;
            }
        }
        for stmt in self.schema.create_statements() {
            self.ddl(&stmt, "create the current layout").await?;
        }
        self.synchronous(self.admin.query(&self.schema.fill_lifecycle_touches()))
            .execute()
            .await
            .map_err(ctx("fill lifecycle_touches from events"))?;
        self.synchronous(self.admin.query(&self.schema.record_migration()))
            .bind(CURRENT_VERSION)
            .bind(CURRENT_DESCRIPTION)
            .execute()
            .await
            .map_err(ctx("record migration"))?;
        tracing::info!(
            version = CURRENT_VERSION,
            description = CURRENT_DESCRIPTION,
            "schema migration applied"
        );
        Ok(Some(CURRENT_VERSION))
    }

    /// The re-lay's copy: the current tables and the views of the re-laid
    /// ones, emptied, then `events_v2` month by month through
    /// `events_input`; then the legacy tables are dropped, `events_v2`
    /// last.
    async fn copy_legacy_events(&self) -> Result<(), StoreError> {
        for stmt in self.schema.table_statements() {
            self.ddl(&stmt, "create the current tables").await?;
        }
        for stmt in self.schema.relaid_view_statements() {
            self.ddl(&stmt, "create the current views").await?;
        }
        for table in Schema::copy_targets() {
            self.ddl(&self.schema.truncate(table), &format!("empty {table}"))
                .await?;
        }
        let months = self
            .admin
            .query(&self.schema.legacy_months())
            .fetch_all::<u32>()
            .await
            .map_err(ctx("months of events_v2"))?;
        let started = Instant::now();
        for (n, month) in months.iter().enumerate() {
            self.admin
                .query(&self.schema.copy_legacy_month())
                .bind(*month)
                .execute()
                .await
                .map_err(ctx(format!("copy month {month} of events_v2")))?;
            tracing::info!(
                month,
                done = n + 1,
                months = months.len(),
                elapsed_s = started.elapsed().as_secs(),
                "re-laying the database: month copied"
            );
        }
        for table in RELAID_TABLES {
            for stmt in self.schema.drop_legacy(table) {
                self.ddl(&stmt, &format!("drop the legacy {table}")).await?;
            }
        }
        Ok(())
    }

    /// `insert` as a migration runs it: in a cluster, through the
    /// `Distributed` table to its shards before the statement returns, so
    /// that the next step (and the next instance's start-up) reads it.
    fn synchronous(&self, insert: Query) -> Query {
        if self.schema.cluster.is_empty() {
            insert
        } else {
            insert.with_setting("insert_distributed_sync", "1")
        }
    }

    /// Layout 3 → 4: each of [`RESORTED_TABLES`] still sorted as in layout
    /// 3 is set aside, created anew and filled with a copy of its rows,
    /// partition by partition; then the set-aside table is dropped. A
    /// table whose set-aside copy exists is being re-sorted (a crash in
    /// between): emptied and copied again. Tables already sorted by scope
    /// level, or missing, are left to `create_statements`.
    async fn resort_scope_tables(&self) -> Result<(), StoreError> {
        for table in RESORTED_TABLES {
            let local = self.schema.local(table);
            let aside = self.sorting_key(&layout3_name(&local)).await?;
            if aside.is_none() {
                match self.sorting_key(&local).await? {
                    Some(key) if !key.contains("scope_level") => {
                        for stmt in self.schema.set_layout3_aside(table) {
                            self.ddl(&stmt, &format!("set layout 3's {table} aside"))
                                .await?;
                        }
                    }
                    _ => continue,
                }
            }
            tracing::info!(table, "sorting the table by scope level: copying its rows");
            for stmt in self.schema.table_statements() {
                self.ddl(&stmt, "create the current tables").await?;
            }
            self.ddl(&self.schema.truncate(table), &format!("empty {table}"))
                .await?;
            let partitions = self
                .admin
                .query(&self.schema.layout3_partitions(table))
                .fetch_all::<u32>()
                .await
                .map_err(ctx(format!("partitions of layout 3's {table}")))?;
            for p in partitions {
                self.synchronous(self.admin.query(&self.schema.copy_layout3_partition(table)))
                    .bind(p)
                    .execute()
                    .await
                    .map_err(ctx(format!("copy partition {p} of layout 3's {table}")))?;
            }
            for stmt in self.schema.drop_layout3(table) {
                self.ddl(&stmt, &format!("drop layout 3's {table}")).await?;
            }
            tracing::info!(table, "sorted by scope level");
        }
        Ok(())
    }

    /// `sorting_key` of `table` in the database; `None` if it does not exist.
    async fn sorting_key(&self, table: &str) -> Result<Option<String>, StoreError> {
        self.admin
            .query(&self.schema.sorting_key())
            .bind(table)
            .fetch_optional::<String>()
            .await
            .map_err(ctx(format!("look up table {table}")))
    }

    async fn ddl(&self, statement: &str, what: &str) -> Result<(), StoreError> {
        self.admin
            .query(statement)
            .execute()
            .await
            .map_err(ctx(what.to_owned()))
    }

    /// The shard (`shard_num`) of the cluster this node is a replica
    /// of; `None` if it is none of the cluster's.
    pub async fn local_shard(&self) -> Result<Option<u32>, StoreError> {
        self.admin
            .query(&self.schema.local_shard())
            .fetch_optional::<u32>()
            .await
            .map_err(ctx("look up the node's shard"))
    }

    /// The cluster's shards and their weights, in order.
    pub async fn shard_weights(&self) -> Result<Vec<(u32, u32)>, StoreError> {
        self.admin
            .query(&self.schema.shard_weights())
            .fetch_all::<(u32, u32)>()
            .await
            .map_err(ctx("read the cluster's shards"))
    }

    /// The stream partitions this node holds rows of.
    pub async fn partitions_held(&self) -> Result<Vec<u16>, StoreError> {
        self.admin
            .query(&self.schema.partitions_held())
            .fetch_all::<u16>()
            .await
            .map_err(ctx("partitions held"))
    }

    /// Reads every table's high-water mark for `partition`.
    pub async fn marks(&self, partition: u16) -> Result<Marks, StoreError> {
        let mut marks = Marks {
            events: self.mark("events", partition).await?,
            awards: self
                .partition_client(partition)
                .query(&self.schema.award_mark())
                .bind(partition)
                .fetch_one::<u64>()
                .await
                .map_err(ctx("highest award in events"))?,
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
        self.partition_client(partition)
            .query(&self.schema.high_water_mark(table))
            .bind(partition)
    }

    /// The client of `partition`'s marks, writes and recoveries: each
    /// statement carries the partition's `query_id`, which ClickHouse
    /// refuses while a statement of that id runs. A statement a killed
    /// predecessor left running (a batch's move, a recovery) thus fails
    /// the new instance's reads of the marks and its writes until it has
    /// finished, and the marks read after it include what it wrote:
    /// otherwise a recovery still running unseen would be done twice.
    fn partition_client(&self, partition: u16) -> Client {
        self.client
            .clone()
            .with_setting("query_id", self.schema.write_query_id(partition))
    }

    async fn mark(&self, table: &str, partition: u16) -> Result<u64, StoreError> {
        self.mark_query(table, partition)
            .fetch_one::<u64>()
            .await
            .map_err(ctx(format!("high-water mark of {table}")))
    }

    /// Which of `pairs` (org_id, event_id) are already in `events`, whose
    /// mark is `events_mark`; one query per run of `plan::lookup_chunks`.
    pub async fn existing(
        &self,
        pairs: &[(String, String)],
        events_mark: u64,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let wanted: HashSet<&(String, String)> = pairs.iter().collect();
        let mut stored = HashSet::new();
        for run in plan::lookup_chunks(pairs, plan::LOOKUP_TEXT_BUDGET) {
            let (orgs, ids) = lookup_values(run);
            let found = self
                .existing_query(&orgs, &ids, events_mark)
                .fetch_all::<(String, String)>()
                .await
                .map_err(ctx("duplicate lookup"))?;
            stored.extend(found.into_iter().filter(|p| wanted.contains(p)));
        }
        Ok(stored)
    }

    fn existing_query(&self, orgs: &[&str], ids: &[&str], events_mark: u64) -> Query {
        self.client
            .query(&self.schema.existing_event_ids())
            .bind(orgs)
            .bind(ids)
            .bind(events_mark)
    }

    /// The first award day (days since 1970-01-01) of each of `pairs`
    /// (org_id, assertion_id) that has one among the awards with stream
    /// sequence below `before`; one query per run of
    /// `plan::lookup_chunks`.
    pub async fn first_awards(
        &self,
        pairs: &[(&str, &str)],
        before: u64,
    ) -> Result<HashMap<(String, String), u16>, StoreError> {
        let mut days = HashMap::new();
        for run in plan::lookup_chunks(pairs, plan::LOOKUP_TEXT_BUDGET) {
            let (orgs, ids) = lookup_values(run);
            let found = self
                .first_awards_query(&orgs, &ids, before)
                .fetch_all::<(String, String, u16)>()
                .await
                .map_err(ctx("first-award lookup"))?;
            days.extend(
                found
                    .into_iter()
                    .map(|(org, assertion, day)| ((org, assertion), day)),
            );
        }
        Ok(days)
    }

    fn first_awards_query(&self, orgs: &[&str], ids: &[&str], before: u64) -> Query {
        self.client
            .query(&self.schema.first_awards())
            .bind(orgs)
            .bind(ids)
            .bind(before)
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
    /// table. All three statements carry the partition's `query_id`
    /// ([`Store::partition_client`]).
    pub async fn write(
        &self,
        partition: u16,
        target: &str,
        rows: &[EventRow],
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let client = self.partition_client(partition);
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
        self.partition_client(partition)
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

    /// Up to `limit` org days of `partition`, oldest first, before
    /// `before` (a day start, epoch seconds), whose unique viewers are not
    /// sealed up to their last view with a viewer key.
    pub async fn days_to_seal(
        &self,
        partition: u16,
        before: u32,
        limit: u64,
    ) -> Result<Vec<DayToSeal>, StoreError> {
        self.days_to_seal_query(partition, before, limit)
            .fetch_all::<DayToSeal>()
            .await
            .map_err(ctx("days to seal"))
    }

    fn days_to_seal_query(&self, partition: u16, before: u32, limit: u64) -> Query {
        self.client
            .query(&self.schema.days_to_seal())
            .bind(partition)
            .bind(before)
            .bind(partition)
            .bind(limit)
    }

    /// Seals one org day: its hours, then its days at every scope level
    /// (the org row last, in the same insert, tells it sealed).
    pub async fn seal(&self, day: &DayToSeal) -> Result<(), StoreError> {
        for table in [VIEWER_HOURS, VIEWER_DAYS] {
            self.seal_query(table, day)
                .execute()
                .await
                .map_err(ctx(format!("seal {table}")))?;
        }
        Ok(())
    }

    fn seal_query(&self, table: &str, day: &DayToSeal) -> Query {
        self.client
            .query(&self.schema.seal(table))
            .bind(day.hi)
            .bind(&day.org_id)
            .bind(day.day)
            .bind(day.day)
            .bind(day.day)
            .bind(day.hi)
    }

    /// Up to `limit` award days of `partition`, oldest first, whose
    /// cohort changed after their last lifecycle seal (`hi`: the day's
    /// last change).
    pub async fn lifecycle_days_to_seal(
        &self,
        partition: u16,
        limit: u64,
    ) -> Result<Vec<DayToSeal>, StoreError> {
        self.lifecycle_days_to_seal_query(partition, limit)
            .fetch_all::<DayToSeal>()
            .await
            .map_err(ctx("lifecycle days to seal"))
    }

    fn lifecycle_days_to_seal_query(&self, partition: u16, limit: u64) -> Query {
        self.client
            .query(&self.schema.lifecycle_days_to_seal())
            .bind(partition)
            .bind(partition)
            .bind(limit)
    }

    /// Seals what the cohorts of `days` hold (listed by
    /// [`Store::lifecycle_days_to_seal`]) of `partition`.
    pub async fn seal_lifecycle_days(
        &self,
        partition: u16,
        days: &[DayToSeal],
    ) -> Result<(), StoreError> {
        self.seal_lifecycle_days_query(partition, days)
            .execute()
            .await
            .map_err(ctx("seal lifecycle days"))
    }

    fn seal_lifecycle_days_query(&self, partition: u16, days: &[DayToSeal]) -> Query {
        let sql = self.schema.seal_lifecycle_days();
        let orgs: Vec<&str> = days.iter().map(|d| d.org_id.as_str()).collect();
        let starts: Vec<u32> = days.iter().map(|d| d.day).collect();
        let his: Vec<u64> = days.iter().map(|d| d.hi).collect();
        let mentions = (sql.matches('?').count() - 4) / 2;
        let mut q = self
            .client
            .query(&sql)
            .bind(partition)
            .bind(&orgs)
            .bind(&starts)
            .bind(&his);
        for _ in 0..mentions {
            q = q.bind(&orgs).bind(&starts);
        }
        q
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
                self.existing_query(&["acme", "globex"], &["e-1", "e-2", "it's"], 1_000),
            ),
            (
                "first_awards".to_owned(),
                self.first_awards_query(&["acme", "globex"], &["a0", "a1", "it's"], 1_000),
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
            "days_to_seal".to_owned(),
            self.days_to_seal_query(0, u32::MAX, 10),
        ));
        let day = DayToSeal {
            org_id: "acme".to_owned(),
            day: 1_700_006_400,
            hi: 9,
        };
        for table in [VIEWER_HOURS, VIEWER_DAYS] {
            out.push((format!("seal:{table}"), self.seal_query(table, &day)));
        }
        out.push((
            "lifecycle_days_to_seal".to_owned(),
            self.lifecycle_days_to_seal_query(0, 10),
        ));
        out.push((
            "seal_lifecycle_days".to_owned(),
            self.seal_lifecycle_days_query(0, std::slice::from_ref(&day)),
        ));
        for (name, sql) in [
            ("local_shard", self.schema.local_shard()),
            ("shard_weights", self.schema.shard_weights()),
            ("partitions_held", self.schema.partitions_held()),
            ("distributed_engines", self.schema.distributed_engines()),
        ] {
            out.push((name.to_owned(), self.admin.query(&sql)));
        }
        out.push((
            "compact_totals".to_owned(),
            self.admin.query(&self.schema.optimize(SCOPE_TOTAL)),
        ));
        out
    }
}

/// The distinct orgs and the ids of a lookup's `(org, id)` pairs, bound as
/// two arrays (the query keeps the pairs asked for among its answers).
fn lookup_values<A: AsRef<str>, B: AsRef<str>>(pairs: &[(A, B)]) -> (Vec<&str>, Vec<&str>) {
    let orgs: HashSet<&str> = pairs.iter().map(|(o, _)| o.as_ref()).collect();
    let ids: HashSet<&str> = pairs.iter().map(|(_, i)| i.as_ref()).collect();
    (orgs.into_iter().collect(), ids.into_iter().collect())
}
