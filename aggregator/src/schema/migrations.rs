//! The schema's versions, and how a database reaches the current one.
//!
//! A new database gets the current layout at once
//! ([`Schema::create_statements`]), recorded as [`CURRENT_VERSION`]. A
//! database of an earlier layout (versions 1 and 2: `events` sorted by
//! `(org_id, event_id)`, rollups and scope rows per event type) is
//! re-laid in place by `Store::migrate` with the statements below, in
//! three states it can tell apart and resume from after a crash:
//!
//! 1. **Legacy** (`events` has the old sorting key): every materialised
//!    view is dropped and each table whose layout changed is renamed to
//!    `…_v2`, `events` last, so that `events_v2` existing means "renamed".
//! 2. **Copying** (`events_v2` exists): the current tables and the views of
//!    the re-laid ones are created, those tables emptied (a crashed copy
//!    starts over), and `events_v2` is copied month by month into
//!    `events_input`, whose views fill `events`, `event_ids` and every
//!    re-laid derived table in one pass (a month's rows touch at most 31
//!    daily partitions, within current ClickHouse's
//!    `max_partitions_per_insert_block`). Then the `…_v2` tables are
//!    dropped, `events_v2` last.
//! 3. **Current**: every statement of the current layout runs (`IF NOT
//!    EXISTS`), which adds the view of the table kept as it was
//!    (`badge_classes`): created before the copy, it would have taken
//!    every upsert a second time.
//!
//! A database of layout 4 gets the tables of layout 5 from those
//! statements and its `lifecycle_touches` filled from `events`
//! ([`Schema::fill_lifecycle_touches`], repeated harmlessly if a
//! migration is interrupted after it).
//!
//! The aggregators must be stopped while a database is re-laid (README,
//! "Upgrading"); ingest keeps publishing to JetStream meanwhile.

use badgepulse_contract::tables::{
    Tier, LIFECYCLE_DAYS, LIFECYCLE_TOUCHES, ROLLUP_TOTAL, SCOPE_MONTH, SCOPE_TOTAL, VIEWER_DAYS,
    VIEWER_HOURS, VIEW_DAYS,
};

use super::tables::{
    partition_by, ASSERTION_AWARDS, DERIVED_TABLES, LIFECYCLE_REFILED, SCOPE_SORT_KEY,
    SCOPE_SORT_SELECT,
};
use super::Schema;

/// The schema version of the layout this code writes.
pub const CURRENT_VERSION: u32 = 6;

/// What version [`CURRENT_VERSION`] is, as recorded in `schema_migrations`.
pub const CURRENT_DESCRIPTION: &str = "events sorted by (org_id, day, issuer, badge class, type) with event_ids for the duplicate lookup; one scope row per bucket with every measure, the bucketed scope tables sorted by scope level; org distribution rollups; scope_month; unique viewers sealed per day; the cohort of each org and award day sealed: lifecycle stages, timing slots, stage reach days and accept delays";

/// The tables layout 4 sorts by scope level (`tables::SCOPE_SORT_COLUMNS`):
/// in a layout-3 database each is set aside as `…_v3`, created anew and
/// filled with a copy of the set-aside rows, one partition per statement
/// ([`Schema::copy_layout3_partition`]); the rows themselves (aggregate
/// states) are unchanged. A table whose `…_v3` exists is being re-sorted,
/// and its copy starts over.
pub const RESORTED_TABLES: [&str; 3] = ["scope_hour", "scope_day", SCOPE_MONTH];

/// The version of `table`'s layout in a replicated table's ZooKeeper
/// path: 6 for `lifecycle_days`, which the layout-6 migration drops and
/// creates anew with more columns (its rows are seals, made again), 4 for
/// [`RESORTED_TABLES`], which the layout-4 migration creates anew, 3 (the
/// first version with versioned paths) for the others, which the
/// migrations keep: a replica added later must find the same path.
pub fn layout_version(table: &str) -> u32 {
    if table == LIFECYCLE_DAYS {
        6
    } else if RESORTED_TABLES.contains(&table) {
        4
    } else {
        3
    }
}

/// The name a layout-3 table is set aside under while it is re-sorted.
pub fn layout3_name(table: &str) -> String {
    format!("{table}_v3")
}

/// The tables whose layout version 3 changed, re-laid by renaming them to
/// `…_v2` and copying `events`; `events` comes last (see the module doc).
pub const RELAID_TABLES: [&str; 8] = [
    "assertion_lifecycle",
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "scope_hour",
    "scope_day",
    "scope_total",
    "events",
];

/// Materialised views of the earlier layouts, all dropped before the
/// copy.
const LEGACY_VIEWS: [&str; 9] = [
    "events_mv",
    "rollup_minute_mv",
    "rollup_hour_mv",
    "rollup_day_mv",
    "assertion_lifecycle_mv",
    "badge_classes_mv",
    "scope_hour_mv",
    "scope_day_mv",
    "scope_total_mv",
];

/// Tables kept as they were, whose views are created only after the copy.
const KEPT_TABLES: [&str; 1] = ["badge_classes"];

/// The legacy name of a re-laid table.
pub fn legacy_name(table: &str) -> String {
    format!("{table}_v2")
}

impl Schema {
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            self.database,
            self.on_cluster()
        )
    }

    /// Statements run before reading `schema_migrations`: the database and
    /// the migrations table itself.
    pub fn bootstrap(&self) -> Vec<String> {
        let mut s = vec![self.create_database()];
        s.extend(self.table(
            "schema_migrations",
            "    version UInt32 COMMENT 'Applied schema version',
    description String COMMENT 'What it changed',
    applied_at DateTime('UTC') COMMENT 'When it was applied'",
            "MergeTree",
            "",
            "ORDER BY version",
        ));
        s
    }

    /// Every table and view of the current layout (`IF NOT EXISTS`): what
    /// a new database runs, and what completes a re-laid one.
    pub fn create_statements(&self) -> Vec<String> {
        let mut s = self.table_statements();
        s.extend(self.view_statements(|_| true));
        s
    }

    /// The materialised views of the tables `which` selects, each reading
    /// the `events_input` Null table that every batch is inserted into.
    pub fn view_statements(&self, which: impl Fn(&str) -> bool) -> Vec<String> {
        let db = &self.database;
        let on = self.on_cluster();
        let input = format!("{db}.events_input");
        let mut targets: Vec<(&str, String)> = vec![("events", format!("SELECT * FROM {input}"))];
        for table in DERIVED_TABLES {
            targets.push((table, self.derived_select(table, &input, "")));
        }
        targets.push(("badge_classes", self.badge_classes_select(&input)));
        targets
            .into_iter()
            .filter(|(table, _)| which(table))
            .map(|(table, select)| {
                format!(
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv{on} TO {db}.{} AS {select}",
                    self.local(table)
                )
            })
            .collect()
    }

    /// The views created before the copy of a re-laid database: those of
    /// every table but the kept ones.
    pub fn relaid_view_statements(&self) -> Vec<String> {
        self.view_statements(|table| !KEPT_TABLES.contains(&table))
    }

    /// The tables the copy of a re-laid database fills: emptied before it.
    pub fn copy_targets() -> impl Iterator<Item = &'static str> {
        std::iter::once("events")
            .chain(
                DERIVED_TABLES
                    .into_iter()
                    .filter(|t| !KEPT_TABLES.contains(t)),
            )
            .chain([VIEWER_DAYS, VIEWER_HOURS, LIFECYCLE_DAYS])
    }

    /// Layout 4 → 5: fills `lifecycle_touches` from `events` (through the
    /// `Distributed` tables in a cluster), so that every award day of the
    /// history counts as changed and unsealed until the aggregator seals
    /// it. Repeating it adds nothing (`max` states), so a migration
    /// interrupted after it runs it again.
    pub fn fill_lifecycle_touches(&self) -> String {
        let db = &self.database;
        format!(
            "INSERT INTO {db}.{LIFECYCLE_TOUCHES} {}",
            self.derived_select(LIFECYCLE_TOUCHES, &format!("{db}.events"), "")
        )
    }

    /// Every table of the current layout.
    pub fn table_statements(&self) -> Vec<String> {
        let db = &self.database;
        let on = self.on_cluster();
        let mut s = Vec::new();
        s.extend(self.table(
            "events",
            &Self::event_columns(),
            "MergeTree",
            "",
            "PARTITION BY toYear(occurred_at)\nORDER BY (org_id, toDate(occurred_at), issuer_id, badge_class_id, type)\nSETTINGS index_granularity = 2048",
        ));
        // The insert target: a Null table whose materialised views fan every
        // batch out to `events` and the derived tables in one statement.
        s.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.events_input{on} (\n{}\n) ENGINE = Null",
            Self::event_columns()
        ));
        s.extend(self.table(
            "event_ids",
            Self::event_id_columns(),
            "MergeTree",
            "",
            "ORDER BY (org_id, event_id)",
        ));
        for g in Tier::ALL {
            s.extend(self.table(
                g.rollup_table(),
                &Self::rollup_columns(true),
                "AggregatingMergeTree",
                "",
                &format!(
                    "PARTITION BY {}\nORDER BY (org_id, dimension, bucket, value, partition)\nSETTINGS index_granularity = 1024",
                    partition_by(g)
                ),
            ));
        }
        s.extend(self.table(
            ROLLUP_TOTAL,
            &Self::rollup_columns(false),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, dimension, value, partition)\nSETTINGS index_granularity = 1024",
        ));
        s.extend(self.table(
            "assertion_lifecycle",
            &Self::lifecycle_columns(),
            "AggregatingMergeTree",
            "",
            "PARTITION BY toYear(awarded_on)\nORDER BY (org_id, awarded_on, issuer_id, badge_class_id, assertion_id, partition)\nSETTINGS index_granularity = 1024",
        ));
        s.extend(self.table(
            ASSERTION_AWARDS,
            Self::assertion_awards_columns(),
            "MergeTree",
            "",
            "ORDER BY (org_id, assertion_id)\nSETTINGS index_granularity = 256",
        ));
        s.extend(self.table(
            LIFECYCLE_REFILED,
            Self::lifecycle_refiled_columns(),
            "MergeTree",
            "",
            "ORDER BY (org_id, awarded_on, assertion_id)",
        ));
        // By level, then the window (`SCOPE_SORT_COLUMNS` says why; the
        // all-time reads go to scope_total). The sealed viewers stay
        // sorted by scope: an all-time unique-viewer count sums every day
        // of one scope.
        let scope_key = format!("{SCOPE_SORT_KEY}\nSETTINGS index_granularity = 256");
        for g in [Tier::Hour, Tier::Day] {
            let table = g.scope_table().expect("hours and days have scope rows");
            s.extend(self.table(
                table,
                &Self::scope_columns(true),
                "AggregatingMergeTree",
                "",
                &format!("PARTITION BY {}\n{scope_key}", partition_by(g)),
            ));
        }
        s.extend(self.table(
            SCOPE_MONTH,
            &Self::scope_columns(true),
            "AggregatingMergeTree",
            "",
            // Months partitioned as the day tier is.
            &format!("PARTITION BY {}\n{scope_key}", partition_by(Tier::Day)),
        ));
        s.extend(self.table(
            SCOPE_TOTAL,
            &Self::scope_columns(false),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, scope_issuer_id, scope_badge_class_id, partition)\nSETTINGS index_granularity = 256",
        ));
        s.extend(self.table(
            LIFECYCLE_TOUCHES,
            Self::lifecycle_touches_columns(),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, day, partition)\nSETTINGS index_granularity = 256",
        ));
        s.extend(self.table(
            LIFECYCLE_DAYS,
            Self::lifecycle_days_columns(),
            "ReplacingMergeTree",
            "sealed_seq",
            "ORDER BY (org_id, day, partition)\nSETTINGS index_granularity = 256",
        ));
        s.extend(self.table(
            VIEW_DAYS,
            Self::view_days_columns(),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, bucket, partition)\nSETTINGS index_granularity = 256",
        ));
        for (table, what, tier) in [
            (VIEWER_DAYS, "Day", Tier::Day),
            (VIEWER_HOURS, "Hour", Tier::Hour),
        ] {
            s.extend(self.table(
                table,
                &Self::viewer_columns(what),
                "ReplacingMergeTree",
                "sealed_seq",
                &format!(
                    "PARTITION BY {}\nORDER BY (org_id, scope_issuer_id, scope_badge_class_id, bucket, partition)\nSETTINGS index_granularity = 256",
                    partition_by(tier)
                ),
            ));
        }
        s.extend(self.table(
            "badge_classes",
            "    org_id String COMMENT 'Organisation',
    badge_class_id String COMMENT 'Badge class',
    issuer_id String COMMENT 'Issuer of the badge class',
    name String COMMENT 'Display name',
    skills Array(String) COMMENT 'Aligned skills',
    pathways Array(String) COMMENT 'Pathways it belongs to',
    courses Array(String) COMMENT 'Courses it belongs to',
    catalogs Array(String) COMMENT 'Catalogs listing it',
    collections Array(String) COMMENT 'Collections listing it',
    attribute_keys Array(String) COMMENT 'Boolean attribute names',
    attribute_values Array(UInt8) COMMENT 'Boolean attribute values, parallel to attribute_keys',
    skills_aligned UInt8 COMMENT 'Driver: skills non-empty',
    in_pathway UInt8 COMMENT 'Driver: pathways or courses non-empty',
    in_catalog UInt8 COMMENT 'Driver: catalogs or collections non-empty',
    updated_at DateTime('UTC') COMMENT 'occurred_at of the upsert; the latest wins (read with FINAL or argMax)'",
            "ReplacingMergeTree",
            "updated_at",
            "ORDER BY (org_id, badge_class_id)",
        ));
        s.extend(self.table(
            "annotations",
            "    id String COMMENT 'Annotation id (UUID)',
    org_id String COMMENT 'Organisation',
    issuer_id String COMMENT 'Issuer it concerns; empty: the whole org',
    badge_class_id String COMMENT 'Badge class it concerns; empty: all',
    at DateTime('UTC') COMMENT 'When the program update happened',
    title String COMMENT 'Short title shown on charts',
    text String COMMENT 'Longer description',
    created_at DateTime('UTC') COMMENT 'When it was recorded'",
            "MergeTree",
            "",
            "ORDER BY (org_id, at, id)",
        ));
        s
    }

    /// The `Distributed` tables of the current layout (cluster mode):
    /// `(name, engine, CREATE statement)`.
    pub fn distributed_tables(&self) -> Vec<(String, String, String)> {
        let prefix = format!("CREATE TABLE IF NOT EXISTS {}.", self.database);
        self.bootstrap()
            .into_iter()
            .chain(self.table_statements())
            .filter_map(|create| {
                let (_, engine) = create.rsplit_once(") ENGINE = ")?;
                if !engine.starts_with("Distributed(") {
                    return None;
                }
                let name = create.strip_prefix(&prefix)?.split(' ').next()?;
                Some((name.to_owned(), engine.to_owned(), create.clone()))
            })
            .collect()
    }

    /// Drops the `Distributed` table `table` on every node, to create it
    /// again with the current sharding key. It holds no data: the
    /// aggregator writes the local tables, and the other inserts through
    /// `Distributed` tables are synchronous.
    pub fn drop_distributed(&self, table: &str) -> String {
        format!(
            "DROP TABLE IF EXISTS {}.{table}{}",
            self.database,
            self.on_cluster()
        )
    }

    /// `sorting_key` of table `?` in this database (one row, or none if
    /// it does not exist); `events` sorted by `org_id, event_id` is the
    /// legacy layout.
    pub fn sorting_key(&self) -> String {
        format!(
            "SELECT sorting_key FROM system.tables WHERE database = '{}' AND name = ?",
            self.database
        )
    }

    /// Drops every view of the legacy layout, then its `events_input`:
    /// a Null table holds nothing, and the current one has more columns.
    pub fn drop_legacy_views(&self) -> Vec<String> {
        LEGACY_VIEWS
            .iter()
            .chain(&["events_input"])
            .map(|view| {
                format!(
                    "DROP TABLE IF EXISTS {}.{view}{}",
                    self.database,
                    self.on_cluster()
                )
            })
            .collect()
    }

    /// Renames `table` (and in cluster mode its local table) to its
    /// legacy name.
    pub fn rename_to_legacy(&self, table: &str) -> Vec<String> {
        self.with_local(table, legacy_name, |name, legacy| {
            format!(
                "RENAME TABLE {db}.{name} TO {db}.{legacy}{on}",
                db = self.database,
                on = self.on_cluster()
            )
        })
    }

    /// Drops the legacy table of `table` (and its local table).
    pub fn drop_legacy(&self, table: &str) -> Vec<String> {
        self.with_local(table, legacy_name, |_, legacy| {
            format!(
                "DROP TABLE IF EXISTS {}.{legacy}{}",
                self.database,
                self.on_cluster()
            )
        })
    }

    /// Layout 5 → 6: drops `lifecycle_days` (and its local table), whose
    /// layout-5 rows hold the stage counts only; the current layout
    /// creates it anew and the aggregator seals every award day again.
    /// The exporter counts the days not sealed from their rows meanwhile.
    pub fn drop_stage_only_seals(&self) -> Vec<String> {
        self.with_local(LIFECYCLE_DAYS, str::to_owned, |_, name| {
            format!(
                "DROP TABLE IF EXISTS {}.{name}{}",
                self.database,
                self.on_cluster()
            )
        })
    }

    /// `1` if `lifecycle_days` (its local table) has the timing columns of
    /// layout 6, `0` otherwise (or when it does not exist).
    pub fn seals_have_timing(&self) -> String {
        format!(
            "SELECT toUInt8(count() > 0) FROM system.columns WHERE database = '{}' AND table = '{}' AND name = 'slot_keys'",
            self.database,
            self.local(LIFECYCLE_DAYS)
        )
    }

    /// Empties `table` (its local table in cluster mode).
    pub fn truncate(&self, table: &str) -> String {
        format!(
            "TRUNCATE TABLE IF EXISTS {}.{}{}",
            self.database,
            self.local(table),
            self.on_cluster()
        )
    }

    /// The months (`YYYYMM`) `events_v2` holds.
    pub fn legacy_months(&self) -> String {
        format!(
            "SELECT DISTINCT toUInt32(toYYYYMM(occurred_at)) AS m FROM {}.{} ORDER BY m",
            self.database,
            self.legacy_local("events")
        )
    }

    /// Copies the events of month `?` (`YYYYMM`) from `events_v2` through
    /// `events_input`, each filed under its assertion's first award day
    /// (the whole history is known: no award arrives out of order).
    pub fn copy_legacy_month(&self) -> String {
        let legacy: Vec<String> = Self::event_column_names()
            .into_iter()
            .filter(|c| c != "award_known_on" && c != "awarded_on")
            .collect();
        let cols = legacy.join(", ");
        let events = self.legacy_local("events");
        format!(
            "INSERT INTO {db}.events_input ({cols}, award_known_on, awarded_on) \
             SELECT {cols}, first AS award_known_on, first AS awarded_on FROM {db}.{events} \
             ANY LEFT JOIN (SELECT org_id, assertion_id, min(toDate(occurred_at)) AS first FROM {db}.{events} \
             WHERE type = 'badge.awarded' GROUP BY org_id, assertion_id) AS f USING (org_id, assertion_id) \
             WHERE toYYYYMM(occurred_at) = ?",
            db = self.database,
        )
    }

    /// Sets the layout-3 `table` aside: its view dropped (a new one is
    /// created with the current layout), then the table, and in cluster
    /// mode its local table, renamed to [`layout3_name`].
    pub fn set_layout3_aside(&self, table: &str) -> Vec<String> {
        let (db, on) = (&self.database, self.on_cluster());
        let mut out = vec![format!("DROP TABLE IF EXISTS {db}.{table}_mv{on}")];
        out.extend(self.with_local(table, layout3_name, |name, aside| {
            format!("RENAME TABLE {db}.{name} TO {db}.{aside}{on}")
        }));
        out
    }

    /// Drops the set-aside layout-3 `table` (and its local table).
    pub fn drop_layout3(&self, table: &str) -> Vec<String> {
        let (db, on) = (&self.database, self.on_cluster());
        self.with_local(table, layout3_name, |_, aside| {
            format!("DROP TABLE IF EXISTS {db}.{aside}{on}")
        })
    }

    /// The partitions (`toUInt32` of the partition key) of the set-aside
    /// layout-3 `table`.
    pub fn layout3_partitions(&self, table: &str) -> String {
        format!(
            "SELECT DISTINCT toUInt32({}) AS p FROM {} ORDER BY p",
            resorted_partition_key(table),
            self.layout3_source(table)
        )
    }

    /// Copies partition `?` of the set-aside layout-3 `table` into the
    /// current one, computing the sort columns. In cluster
    /// mode it reads every shard's local table and writes through the
    /// `Distributed` table, whose key (`partition`) puts each row back
    /// on its shard (run with `insert_distributed_sync`).
    pub fn copy_layout3_partition(&self, table: &str) -> String {
        let cols = format!("bucket, {}", Self::layout3_scope_column_names().join(", "));
        format!(
            "INSERT INTO {db}.{table} ({cols}, scope_level, scope_key) SELECT {cols}, {SCOPE_SORT_SELECT} FROM {source} WHERE toUInt32({key}) = ?",
            db = self.database,
            source = self.layout3_source(table),
            key = resorted_partition_key(table),
        )
    }

    /// Where the set-aside rows of `table` are read: the table, or in
    /// cluster mode every shard's local table (its `Distributed` table,
    /// renamed, still names the current local table).
    fn layout3_source(&self, table: &str) -> String {
        let aside = layout3_name(&self.local(table));
        if self.cluster.is_empty() {
            format!("{}.{aside}", self.database)
        } else {
            format!("cluster('{}', {}, {aside})", self.cluster, self.database)
        }
    }

    /// The name of the local table behind a legacy table (the legacy
    /// table itself on a single server).
    fn legacy_local(&self, table: &str) -> String {
        legacy_name(&self.local(table))
    }

    /// One statement per name of `table` (the `Distributed` and the local
    /// table in cluster mode), given `(name, renamed(name))`.
    fn with_local(
        &self,
        table: &str,
        renamed: fn(&str) -> String,
        statement: impl Fn(&str, &str) -> String,
    ) -> Vec<String> {
        let mut names = vec![table.to_owned()];
        if !self.cluster.is_empty() {
            names.insert(0, self.local(table));
        }
        names
            .iter()
            .map(|name| statement(name, &renamed(name)))
            .collect()
    }
}

/// The partition key of a re-sorted table (as its `CREATE` says:
/// `scope_month`, of no tier, is partitioned like the day tier).
fn resorted_partition_key(table: &str) -> &'static str {
    partition_by(Tier::of_table(table).unwrap_or(Tier::Day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_ddl_has_no_cluster_clauses() {
        let s = Schema::new("bp", "");
        let all = s.all_statements().join("\n");
        assert!(!all.contains("ON CLUSTER"));
        assert!(!all.contains("Replicated"));
        assert!(all.contains("CREATE TABLE IF NOT EXISTS bp.events ("));
        assert!(all.contains("ENGINE = AggregatingMergeTree\nPARTITION BY toYYYYMMDD(bucket)"));
        for forbidden in [
            "TTL",
            "CODEC",
            "DateTime64",
            "LowCardinality",
            "toStartOfInterval",
            "SimpleAggregateFunction",
        ] {
            assert!(!all.contains(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn every_table_has_a_view_and_the_kept_ones_come_last() {
        let s = Schema::new("bp", "");
        let views = s.view_statements(|_| true);
        assert_eq!(views.len(), DERIVED_TABLES.len() + 2);
        let relaid = s.relaid_view_statements();
        assert_eq!(relaid.len(), views.len() - KEPT_TABLES.len());
        assert!(relaid.iter().all(|v| !v.contains("badge_classes_mv")));
        assert!(relaid.iter().any(|v| v.contains("assertion_lifecycle_mv")));
        let targets: Vec<&str> = Schema::copy_targets().collect();
        assert!(targets.contains(&"events") && targets.contains(&VIEWER_DAYS));
        assert!(targets.contains(&"assertion_lifecycle"));
        assert!(!targets.contains(&"badge_classes"));
        assert_eq!(RELAID_TABLES.last(), Some(&"events"));
    }

    #[test]
    fn cluster_ddl_is_replicated_and_distributed() {
        let s = Schema::new("bp", "prod");
        let all = s.all_statements();
        let events: Vec<&String> = all
            .iter()
            .filter(|q| q.contains(" bp.events_local") || q.contains(" bp.events ON"))
            .collect();
        assert!(events.iter().any(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events_local ON CLUSTER prod")
            && q.contains("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/bp/3/events_local', '{replica}')")));
        assert!(
            all.iter().any(|q| q.contains(
                "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/bp/4/scope_day_local', '{replica}')"
            )),
            "a re-sorted table has the path of its layout"
        );
        let distributed = all
            .iter()
            .find(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events ON CLUSTER prod ("))
            .unwrap();
        assert!(distributed.ends_with("ENGINE = Distributed(prod, bp, events_local, partition)"));
        assert!(
            distributed.contains("event_id String COMMENT 'Idempotency key"),
            "comments live on the Distributed table"
        );
        let local = all
            .iter()
            .find(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events_local ON CLUSTER prod ("))
            .unwrap();
        assert!(
            !local.contains("COMMENT"),
            "18.16 refuses comments on replicated tables: {local}"
        );
        assert!(
            local.contains("    event_id String,\n") && local.contains("    awarded_on Date\n)"),
            "{local}"
        );
        assert!(all.iter().any(|q| q.contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/bp/3/badge_classes_local', '{replica}', updated_at)")));
        assert!(all.iter().any(|q| q.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS bp.rollup_hour_mv ON CLUSTER prod TO bp.rollup_hour_local")));
        assert!(all[0] == "CREATE DATABASE IF NOT EXISTS bp ON CLUSTER prod");
        // Every table with a partition column is sharded by it; the rest
        // are read only through their Distributed table, or never
        // inserted into through it.
        let keys: std::collections::BTreeMap<String, String> = s
            .distributed_tables()
            .into_iter()
            .map(|(name, engine, _)| (name, engine))
            .collect();
        assert_eq!(keys.len(), 21, "{keys:?}");
        for (name, engine) in &keys {
            let key = match name.as_str() {
                "badge_classes" => format!("Distributed(prod, bp, {name}_local)"),
                "annotations" | "schema_migrations" => {
                    format!("Distributed(prod, bp, {name}_local, rand())")
                }
                _ => format!("Distributed(prod, bp, {name}_local, partition)"),
            };
            assert_eq!(engine, &key);
        }
        assert_eq!(
            s.rename_to_legacy("events"),
            [
                "RENAME TABLE bp.events_local TO bp.events_local_v2 ON CLUSTER prod",
                "RENAME TABLE bp.events TO bp.events_v2 ON CLUSTER prod"
            ]
        );
    }
}
