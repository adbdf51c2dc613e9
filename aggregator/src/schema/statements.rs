//! The statements the aggregator runs besides DDL: high-water marks and
//! the duplicate lookup of the exactly-once protocol, the staged write of
//! a batch, recovery from `events`, retention and compaction, and the
//! bookkeeping of migrations.

use badgepulse_contract::tables::{
    cohort_day_summaries, unsealed_lifecycle_days, LIFECYCLE_DAYS, LIFECYCLE_TOUCHES,
    SCOPE_COLUMNS, SCOPE_LEVELS, SCOPE_TOTAL, SUMMARY_COLUMNS, VIEWER_DAYS, VIEWER_HOURS,
    VIEW_DAYS,
};

use super::tables::{one_row_per_event, ASSERTION_AWARDS, LIFECYCLE_REFILED};
use super::{strip_comments, Schema};

impl Schema {
    /// Recovery: (re)computes `table`'s share of the messages with stream
    /// sequence in `(?, ?]` on partition `?` from `events`, for events at or
    /// after `toDateTime(?)` (the oldest bucket retention keeps).
    pub fn recovery_insert(&self, table: &str) -> String {
        let db = &self.database;
        format!(
            "INSERT INTO {db}.{} {}",
            self.local(table),
            self.derived_select(
                table,
                &format!("{db}.{}", self.local("events")),
                "AND partition = ? AND seq > ? AND seq <= ? AND occurred_at >= toDateTime(?, 'UTC')"
            )
        )
    }

    /// The node-local staging table of `partition`. Every batch is uploaded
    /// here first and then moved by one server-side `INSERT … SELECT`, so a
    /// client that dies mid-upload leaves a half-filled staging table (which
    /// the next attempt truncates) instead of half a batch in `events`:
    /// ClickHouse commits the received prefix of an INSERT whose client
    /// disconnects.
    pub fn staging_table(&self, partition: u16) -> String {
        format!("{}.{}", self.database, Self::staging_name(partition))
    }

    /// The staging table's name without the database.
    pub fn staging_name(partition: u16) -> String {
        format!("events_staging_{partition}")
    }

    /// Creates the staging table of `partition` (Memory: it only ever holds
    /// the batch in flight, and a server restart losing it is harmless).
    pub fn create_staging(&self, partition: u16) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = Memory",
            self.staging_table(partition),
            strip_comments(&Self::event_columns())
        )
    }

    pub fn truncate_staging(&self, partition: u16) -> String {
        format!("TRUNCATE TABLE {}", self.staging_table(partition))
    }

    /// Moves the staged batch of `partition` into `target` (`events_input`
    /// on the normal path, the local `events` on the recovery path).
    pub fn commit_staging(&self, partition: u16, target: &str) -> String {
        format!(
            "INSERT INTO {db}.{target} ({cols}) SELECT {cols} FROM {staging}",
            db = self.database,
            cols = Self::event_column_names().join(", "),
            staging = self.staging_table(partition),
        )
    }

    /// The `query_id` of every statement of `partition`'s marks, writes
    /// and recoveries. ClickHouse refuses a query whose id is already
    /// running, so a restarted aggregator cannot overlap a statement its
    /// killed predecessor left running on the server: it gets an error
    /// and retries.
    pub fn write_query_id(&self, partition: u16) -> String {
        format!("badgepulse-{}-write-{partition}", self.database)
    }

    /// Whether database `?` exists (1 or 0).
    pub fn database_exists(&self) -> String {
        "SELECT count() FROM system.databases WHERE name = ?".to_owned()
    }

    /// The active partitions of table `?` in this database.
    pub fn list_partitions(&self) -> String {
        format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = '{}' AND table = ? AND active ORDER BY partition",
            self.database
        )
    }

    /// Merges the parts of `table` on this node (an unscheduled merge,
    /// which takes every part it can; nothing to do when there is one). In a cluster the merge replicates to
    /// the shard's other replicas. Neither `FINAL` nor `ON CLUSTER`:
    /// ClickHouse 18.16 fails both on replicated tables ("Unknown log
    /// entry type: 0").
    pub fn optimize(&self, table: &str) -> String {
        format!("OPTIMIZE TABLE {}.{}", self.database, self.local(table))
    }

    /// Drops partition `id` (a number read from `system.parts`) of `table`.
    pub fn drop_partition(&self, table: &str, id: u32) -> String {
        format!(
            "ALTER TABLE {}.{}{} DROP PARTITION {id}",
            self.database,
            self.local(table),
            self.on_cluster()
        )
    }

    /// The highest stream sequence of partition `?` folded into `table`.
    ///
    /// Progress, duplicate lookups and recovery read and write the *local*
    /// tables in cluster mode: the aggregator writes through the node it is
    /// connected to (`events_input` is local), and reading a `Distributed`
    /// table could reach a replica that has not caught up yet.
    pub fn high_water_mark(&self, table: &str) -> String {
        let db = &self.database;
        let local = self.local(table);
        if one_row_per_event(table) {
            format!("SELECT max(seq) FROM {db}.{local} WHERE partition = ?")
        } else {
            format!("SELECT maxMerge(max_seq) FROM {db}.{local} WHERE partition = ?")
        }
    }

    /// The highest stream sequence of an award in `events` of partition
    /// `?` (`plan::Marks::awards`).
    pub fn award_mark(&self) -> String {
        format!(
            "SELECT max(seq) FROM {}.{} WHERE partition = ? AND type = 'badge.awarded'",
            self.database,
            self.local("events")
        )
    }

    /// Which of the given `(org_id, event_id)` pairs (bound as two arrays)
    /// are already stored, from `event_ids` (sorted by them, unlike
    /// `events`), among the rows of stream sequence up to the `events` mark
    /// (`?`): a row above it is of a write cut between the views
    /// (`event_ids` filled, `events` not), whose events the batch must
    /// still write. `IN (SELECT arrayJoin(?))` because 18.16 does not take
    /// an array literal after `IN`; the set still uses the primary key.
    pub fn existing_event_ids(&self) -> String {
        format!(
            "SELECT org_id, event_id FROM {}.{} WHERE org_id IN (SELECT arrayJoin(?)) AND event_id IN (SELECT arrayJoin(?)) AND seq <= ?",
            self.database,
            self.local("event_ids")
        )
    }

    /// The first award day (days since 1970-01-01) of the given `(org_id,
    /// assertion_id)` pairs (bound as two arrays) among the awards with
    /// stream sequence below `?`: what was known before a batch, whatever
    /// part of the batch an earlier attempt wrote.
    pub fn first_awards(&self) -> String {
        format!(
            "SELECT org_id, assertion_id, toUInt16(min(awarded_on)) AS day FROM {}.{} \
             WHERE org_id IN (SELECT arrayJoin(?)) AND assertion_id IN (SELECT arrayJoin(?)) AND seq < ? \
             GROUP BY org_id, assertion_id",
            self.database,
            self.local(ASSERTION_AWARDS)
        )
    }

    /// The days of partition `?` with views that have a viewer key, before
    /// day `toDateTime(?)`, whose unique viewers are not sealed up to their
    /// last such view: `(org_id, day start, view_days.max_seq)`, oldest
    /// first, at most `?`.
    pub fn days_to_seal(&self) -> String {
        let db = &self.database;
        format!(
            "SELECT org_id, toUInt32(bucket) AS day, hi FROM \
             (SELECT org_id, bucket, maxMerge(max_seq) AS hi FROM {db}.{VIEW_DAYS} \
              WHERE partition = ? AND bucket < toDateTime(?, 'UTC') GROUP BY org_id, bucket) AS v \
             ANY LEFT JOIN \
             (SELECT org_id, bucket, max(sealed_seq) AS sealed FROM {db}.{VIEWER_DAYS} \
              WHERE partition = ? AND scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id, bucket) AS s \
             USING org_id, bucket WHERE sealed < hi ORDER BY day, org_id LIMIT ?",
            VIEW_DAYS = self.local(VIEW_DAYS),
            VIEWER_DAYS = self.local(VIEWER_DAYS),
        )
    }

    /// Seals one day of one org into `table` (`viewer_hours` or
    /// `viewer_days`): the exact number of distinct viewer keys per bucket
    /// and scope among its views with stream sequence at most `hi`. Binds:
    /// `hi` (as `sealed_seq`), org, day start three times, `hi`. A day's
    /// `viewer_hours` rows are written before its `viewer_days` rows, whose
    /// org row tells the day sealed.
    pub fn seal(&self, table: &str) -> String {
        let db = &self.database;
        let (bucket, levels) = match table {
            VIEWER_HOURS => ("toStartOfHour(occurred_at)", "[0]"),
            _ => ("toStartOfDay(occurred_at)", SCOPE_LEVELS),
        };
        format!(
            "INSERT INTO {db}.{} (bucket, org_id, scope_issuer_id, scope_badge_class_id, partition, unique_viewers, sealed_seq) \
             SELECT {bucket} AS bucket, org_id, {SCOPE_COLUMNS}, partition, uniqExact(viewer_key) AS unique_viewers, toUInt64(?) AS sealed_seq \
             FROM {db}.{} ARRAY JOIN {levels} AS level \
             WHERE org_id = ? AND toDate(occurred_at) = toDate(toDateTime(?, 'UTC')) \
             AND occurred_at >= toDateTime(?, 'UTC') AND occurred_at < toDateTime(?, 'UTC') + 86400 \
             AND type = 'badge.viewed' AND viewer_key != 0 AND seq <= ? \
             GROUP BY bucket, org_id, scope_issuer_id, scope_badge_class_id, partition",
            self.local(table),
            self.local("events"),
        )
    }

    /// `SELECT org_id, day, hi`: the award days of partition `?` whose
    /// cohort changed after their last seal (or was never sealed), with
    /// `hi` the day's `lifecycle_touches.max_seq`, oldest first, at most
    /// `?`. Binds: partition twice, limit.
    fn lifecycle_unsealed(&self) -> String {
        let db = &self.database;
        format!(
            "{} ORDER BY day, org_id LIMIT ?",
            unsealed_lifecycle_days(
                &format!("{db}.{}", self.local(LIFECYCLE_TOUCHES)),
                &format!("{db}.{}", self.local(LIFECYCLE_DAYS)),
                " WHERE partition = ?",
            )
        )
    }

    /// [`Self::lifecycle_unsealed`] as `(org_id, day start, hi)`. Binds:
    /// partition twice, limit.
    pub fn lifecycle_days_to_seal(&self) -> String {
        format!(
            "SELECT org_id, toUInt32(toUInt32(day) * 86400) AS start, hi FROM ({})",
            self.lifecycle_unsealed()
        )
    }

    /// Seals the listed award days of a partition into `lifecycle_days`
    /// in one statement: what the cohort first awarded on each holds
    /// ([`cohort_day_summaries`]), zeros and empty maps where none is (any
    /// more),
    /// with `sealed_seq` the `hi` the day was listed with
    /// ([`Self::lifecycle_days_to_seal`]). The counts are read after the
    /// list, so they hold at least what `hi` stands for; a later change
    /// moves the day's touch past it, and the next seal counts it.
    /// Binds: partition, then the list as three arrays (orgs, day starts,
    /// `hi`s), then orgs and day starts for each mention of the days in
    /// the cohort query (every further pair of `?`).
    pub fn seal_lifecycle_days(&self) -> String {
        let db = &self.database;
        let listed = |columns: &str, arrays: &str| {
            format!(
                "SELECT tupleElement(t, 1) AS org_id, toDate(toDateTime(tupleElement(t, 2), 'UTC')) AS day{columns} \
                 FROM (SELECT arrayJoin(arrayMap({arrays})) AS t)"
            )
        };
        format!(
            "INSERT INTO {db}.{} (org_id, day, partition, {SUMMARY_COLUMNS}, sealed_seq) \
             SELECT org_id, day, toUInt16(?), {SUMMARY_COLUMNS}, hi \
             FROM ({}) AS u ANY LEFT JOIN ({}) AS c USING org_id, day",
            self.local(LIFECYCLE_DAYS),
            listed(
                ", tupleElement(t, 3) AS hi",
                "(o, d, h) -> (o, d, h), ?, ?, ?"
            ),
            cohort_day_summaries(
                &format!("{db}.{}", self.local("assertion_lifecycle")),
                &format!("{db}.{}", self.local(LIFECYCLE_REFILED)),
                &listed("", "(o, d) -> (o, d), ?, ?"),
            ),
        )
    }

    /// The number (`shard_num`, from 1) of the shard the node answering
    /// is a replica of, in this cluster; no row if it is not in it.
    pub fn local_shard(&self) -> String {
        format!(
            "SELECT toUInt32(shard_num) FROM system.clusters WHERE cluster = '{}' AND is_local = 1 LIMIT 1",
            self.cluster
        )
    }

    /// The cluster's shards as this node's `remote_servers` defines them:
    /// `(shard_num, weight)` in order, what a `Distributed` table's
    /// sharding key is mapped onto (`crate::shards::Layout`).
    pub fn shard_weights(&self) -> String {
        format!(
            "SELECT toUInt32(shard_num) AS shard, toUInt32(any(shard_weight)) AS weight FROM system.clusters \
             WHERE cluster = '{}' GROUP BY shard ORDER BY shard",
            self.cluster
        )
    }

    /// The stream partitions this node holds rows of, from `scope_total`
    /// (which every event reaches, and which is small after merges).
    pub fn partitions_held(&self) -> String {
        format!(
            "SELECT DISTINCT partition FROM {}.{} ORDER BY partition",
            self.database,
            self.local(SCOPE_TOTAL)
        )
    }

    /// `(name, engine_full)` of the `Distributed` tables of the database,
    /// to find those created with another sharding key.
    pub fn distributed_engines(&self) -> String {
        format!(
            "SELECT name, engine_full FROM system.tables WHERE database = '{}' AND engine = 'Distributed'",
            self.database
        )
    }

    pub fn applied_versions(&self) -> String {
        format!("SELECT version FROM {}.schema_migrations", self.database)
    }

    pub fn record_migration(&self) -> String {
        format!(
            "INSERT INTO {}.schema_migrations (version, description, applied_at) VALUES (?, ?, now())",
            self.database
        )
    }
}
