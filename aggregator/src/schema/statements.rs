//! The statements the aggregator runs besides DDL: high-water marks and
//! the duplicate lookup of the exactly-once protocol, the staged write of
//! a batch, recovery from `events`, retention and compaction, and the
//! bookkeeping of migrations.

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

    /// The `query_id` of every write statement of `partition`. ClickHouse
    /// refuses a query whose id is already running, so a restarted
    /// aggregator cannot overlap a statement its killed predecessor left
    /// running on the server: it gets an error and retries.
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
        if table == "events" {
            format!("SELECT max(seq) FROM {db}.{local} WHERE partition = ?")
        } else {
            format!("SELECT maxMerge(max_seq) FROM {db}.{local} WHERE partition = ?")
        }
    }

    /// Which of the given `(org_id, event_id)` pairs (bound as two arrays)
    /// are already stored. `IN (SELECT arrayJoin(?))` because 18.16 does not
    /// take an array literal after `IN`; the set still uses the primary key.
    pub fn existing_event_ids(&self) -> String {
        format!(
            "SELECT org_id, event_id FROM {}.{} WHERE org_id IN (SELECT arrayJoin(?)) AND event_id IN (SELECT arrayJoin(?))",
            self.database,
            self.local("events")
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
