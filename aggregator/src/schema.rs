//! The ClickHouse schema (SPEC §6) as versioned migrations, and every SQL
//! statement the aggregator issues.
//!
//! Owns: DDL text, the materialised views that turn one insert into
//! `events_input` into rows of every table, and the recovery statements
//! that rebuild one table's share of a batch from `events`. Must not:
//! execute anything (see `store.rs`), or paste user input into SQL — the
//! only interpolated names are the validated database and cluster names.
//!
//! The SQL runs unchanged on ClickHouse 18.16 and on current releases:
//! no TTL, CODEC, DateTime64, LowCardinality, window functions,
//! `toStartOfInterval`, `SimpleAggregateFunction` or server-side
//! parameters. Every plain column of an AggregatingMergeTree is part of
//! its sorting key (current releases require it).

use badgepulse_contract::event::{AwardMethod, EventType, ShareChannel, ViewSource};
use badgepulse_contract::tables::{scope_states, SCOPE_TOTAL, SKETCH_PRECISION};

/// One schema version: statements applied in order, then recorded in
/// `schema_migrations`. Every statement is idempotent (`IF NOT EXISTS`), so
/// a crash halfway through a migration is repaired by running it again.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub statements: Vec<String>,
}

/// A rollup granularity (SPEC §6): table, bucket function and partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    pub fn table(self) -> &'static str {
        match self {
            Granularity::Minute => "rollup_minute",
            Granularity::Hour => "rollup_hour",
            Granularity::Day => "rollup_day",
        }
    }

    /// The table of per-scope measures at this granularity, if there is
    /// one: there are no minute scope rows (they would be the costliest
    /// to write, one row per minute, scope level and type); the exporter
    /// reads sub-hour pieces of a window from `events`.
    pub fn scope_table(self) -> Option<&'static str> {
        match self {
            Granularity::Minute => None,
            Granularity::Hour => Some("scope_hour"),
            Granularity::Day => Some("scope_day"),
        }
    }

    /// The bucketed derived tables of this granularity.
    pub fn tables(self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.table()).chain(self.scope_table())
    }

    /// The granularity of a bucketed derived table (`rollup_*`,
    /// `scope_*`); `None` for the others, which retention never touches.
    pub fn of_table(table: &str) -> Option<Granularity> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.tables().any(|t| t == table))
    }

    fn bucket_fn(self) -> &'static str {
        match self {
            Granularity::Minute => "toStartOfMinute",
            Granularity::Hour => "toStartOfHour",
            Granularity::Day => "toStartOfDay",
        }
    }

    /// Partitions sized so that retention drops whole partitions: days for
    /// minutes (7-day default), months for hours (400 days), years for days.
    fn partition_by(self) -> &'static str {
        match self {
            Granularity::Minute => "toYYYYMMDD(bucket)",
            Granularity::Hour => "toYYYYMM(bucket)",
            Granularity::Day => "toYear(bucket)",
        }
    }
}

/// The tables the aggregator writes for each batch, in the order the
/// recovery path fills them. `events` comes first: the others are rebuilt
/// from it.
pub const DERIVED_TABLES: [&str; 7] = [
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "assertion_lifecycle",
    "scope_hour",
    "scope_day",
    SCOPE_TOTAL,
];

/// `Enum8(...)` over a closed set; `''` (0) stands for "not applicable".
fn enum8<T: Copy>(all: &[T], name: fn(T) -> &'static str, with_empty: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if with_empty {
        parts.push("'' = 0".into());
    }
    for (i, v) in all.iter().enumerate() {
        parts.push(format!("'{}' = {}", name(*v), i + 1));
    }
    format!("Enum8({})", parts.join(", "))
}

pub fn event_type_enum() -> String {
    enum8(EventType::ALL, EventType::as_str, false)
}

fn award_method_enum() -> String {
    enum8(AwardMethod::ALL, AwardMethod::as_str, true)
}

fn share_channel_enum() -> String {
    enum8(ShareChannel::ALL, ShareChannel::as_str, true)
}

fn view_source_enum() -> String {
    enum8(ViewSource::ALL, ViewSource::as_str, true)
}

/// Removes the `COMMENT '…'` of every column line (one column per line,
/// as this file writes them), keeping the separating comma.
fn strip_comments(columns: &str) -> String {
    columns
        .lines()
        .map(|line| match line.find(" COMMENT '") {
            Some(at) => {
                let comma = if line.trim_end().ends_with(',') {
                    ","
                } else {
                    ""
                };
                format!("{}{comma}", &line[..at])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Generates DDL for one database, optionally in cluster mode.
#[derive(Debug, Clone)]
pub struct Schema {
    pub database: String,
    /// Empty: single server.
    pub cluster: String,
}

impl Schema {
    pub fn new(database: &str, cluster: &str) -> Self {
        Schema {
            database: database.to_owned(),
            cluster: cluster.to_owned(),
        }
    }

    fn on_cluster(&self) -> String {
        if self.cluster.is_empty() {
            String::new()
        } else {
            format!(" ON CLUSTER {}", self.cluster)
        }
    }

    /// The engine clause; in cluster mode the `Replicated*` variant with the
    /// conventional `{shard}`/`{replica}` macros.
    fn engine(&self, engine: &str, args: &str, table: &str) -> String {
        if self.cluster.is_empty() {
            if args.is_empty() {
                engine.to_owned()
            } else {
                format!("{engine}({args})")
            }
        } else {
            let zk = format!(
                "'/clickhouse/tables/{{shard}}/{}/{table}', '{{replica}}'",
                self.database
            );
            let all = if args.is_empty() {
                zk
            } else {
                format!("{zk}, {args}")
            };
            format!("Replicated{engine}({all})")
        }
    }

    /// In cluster mode, the name of the replicated local table behind a
    /// `Distributed` table of the plain name.
    pub fn local(&self, table: &str) -> String {
        if self.cluster.is_empty() {
            table.to_owned()
        } else {
            format!("{table}_local")
        }
    }

    /// `CREATE TABLE` for `table` with `columns` and `tail` (engine options),
    /// plus in cluster mode the `Distributed` table over it.
    fn table(
        &self,
        table: &str,
        columns: &str,
        engine: &str,
        args: &str,
        tail: &str,
    ) -> Vec<String> {
        let db = &self.database;
        let local = self.local(table);
        // ClickHouse 18.16 refuses replicated tables with column comments
        // ("Table structure in ZooKeeper is too different from local table
        // structure"), so in cluster mode the comments live on the
        // Distributed tables, which are the ones analysts query.
        let local_columns = if self.cluster.is_empty() {
            columns.to_owned()
        } else {
            strip_comments(columns)
        };
        let mut out = vec![format!(
            "CREATE TABLE IF NOT EXISTS {db}.{local}{on} (\n{local_columns}\n) ENGINE = {engine}\n{tail}",
            on = self.on_cluster(),
            engine = self.engine(engine, args, &local),
        )];
        if !self.cluster.is_empty() {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {db}.{table}{on} (\n{columns}\n) ENGINE = Distributed({cluster}, {db}, {local}, rand())",
                on = self.on_cluster(),
                cluster = self.cluster,
            ));
        }
        out
    }

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

    pub fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                description: "events, rollups, assertion lifecycle, badge classes, annotations",
                statements: self.v1(),
            },
            Migration {
                version: 2,
                description: "scope_hour, scope_day, scope_total: measures per org, issuer and badge class with sketched distinct counts",
                statements: self.v2(),
            },
        ]
    }

    fn event_columns() -> String {
        let ty = event_type_enum();
        let am = award_method_enum();
        let sc = share_channel_enum();
        let vs = view_source_enum();
        format!(
            "    event_id String COMMENT 'Idempotency key from the platform, or a UUIDv7 minted by ingest for beacons; unique per org',
    type {ty} COMMENT 'Event type',
    occurred_at DateTime('UTC') COMMENT 'When it happened (UTC); time of receipt for beacons',
    received_at DateTime('UTC') COMMENT 'When ingest received it (UTC)',
    org_id String COMMENT 'Organisation',
    issuer_id String COMMENT 'Issuer within the organisation',
    badge_class_id String COMMENT 'Badge class (the badge definition)',
    assertion_id String COMMENT 'Awarded badge instance; empty for badge_class.upserted',
    award_method {am} COMMENT 'badge.awarded: how it was awarded; empty otherwise',
    share_channel {sc} COMMENT 'badge.shared: where it was shared; empty otherwise',
    view_source {vs} COMMENT 'badge.viewed: where the viewer came from; empty otherwise',
    country String COMMENT 'badge.viewed: ISO 3166-1 alpha-2 country from the trusted header; empty if unknown',
    viewer_key UInt64 COMMENT 'badge.viewed: 64-bit keyed hash of (daily salt, IP, User-Agent, org); 0 when unknown. Not linkable across days',
    badge_class_name String COMMENT 'badge_class.upserted: name',
    skills Array(String) COMMENT 'badge_class.upserted: aligned skills',
    pathways Array(String) COMMENT 'badge_class.upserted: pathways',
    courses Array(String) COMMENT 'badge_class.upserted: courses',
    catalogs Array(String) COMMENT 'badge_class.upserted: catalogs',
    collections Array(String) COMMENT 'badge_class.upserted: collections',
    attribute_keys Array(String) COMMENT 'badge_class.upserted: boolean attribute names',
    attribute_values Array(UInt8) COMMENT 'badge_class.upserted: boolean attribute values, parallel to attribute_keys',
    partition UInt16 COMMENT 'NATS partition the event travelled on',
    seq UInt64 COMMENT 'JetStream stream sequence of the message that carried it'"
        )
    }

    fn rollup_columns() -> String {
        let ty = event_type_enum();
        format!(
            "    bucket DateTime('UTC') COMMENT 'Bucket start (UTC)',
    org_id String COMMENT 'Organisation',
    issuer_id String COMMENT 'Issuer',
    badge_class_id String COMMENT 'Badge class',
    event_type {ty} COMMENT 'Event type',
    dim_value String COMMENT 'The type''s distribution value: award_method, share channel or view source; empty for other types',
    country String COMMENT 'badge.viewed: country; empty otherwise or unknown',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
    assertions AggregateFunction(uniqExact, String) COMMENT 'Distinct assertions: uniqExactMerge(assertions)',
    viewers AggregateFunction(uniqExactIf, UInt64, UInt8) COMMENT 'Distinct viewer keys of views that have one: uniqExactIfMerge(viewers)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'"
        )
    }

    fn lifecycle_columns() -> String {
        let when = |stage: &str, ty: &str| {
            format!("    first_{stage} AggregateFunction(minIf, DateTime('UTC'), UInt8) COMMENT 'First {ty} time: minIfMerge(first_{stage}); 1970-01-01 if never'")
        };
        let count = |stage: &str, ty: &str| {
            format!("    {stage} AggregateFunction(countIf, UInt8) COMMENT 'Number of {ty} events: countIfMerge({stage})'")
        };
        [
            "    org_id String COMMENT 'Organisation'".to_owned(),
            "    issuer_id String COMMENT 'Issuer'".to_owned(),
            "    badge_class_id String COMMENT 'Badge class'".to_owned(),
            "    assertion_id String COMMENT 'Assertion (one row per assertion after merges)'".to_owned(),
            "    partition UInt16 COMMENT 'NATS partition (follows from org_id)'".to_owned(),
            when("awarded", "badge.awarded"),
            when("accepted", "badge.accepted"),
            when("shared", "badge.shared"),
            when("viewed", "badge.viewed"),
            when("revoked", "badge.revoked"),
            count("awarded", "badge.awarded"),
            count("accepted", "badge.accepted"),
            count("shares", "badge.shared"),
            count("views", "badge.viewed"),
            count("revoked", "badge.revoked"),
            "    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'".to_owned(),
        ]
        .join(",\n")
    }

    /// The columns of a `scope_*` table; `bucketed` adds the bucket.
    fn scope_columns(bucketed: bool) -> String {
        let ty = event_type_enum();
        let k = SKETCH_PRECISION;
        let bucket = if bucketed {
            "    bucket DateTime('UTC') COMMENT 'Bucket start (UTC)',\n"
        } else {
            ""
        };
        format!(
            "{bucket}    org_id String COMMENT 'Organisation',
    scope_issuer_id String COMMENT 'Issuer; empty in the rows that total the whole org',
    scope_badge_class_id String COMMENT 'Badge class; empty in the rows that total an issuer or the org',
    event_type {ty} COMMENT 'Event type',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
    assertions AggregateFunction(uniqCombinedIf({k}), String, UInt8) COMMENT 'Distinct assertions of awarded, accepted, shared and revoked events: uniqCombinedIfMerge({k})(assertions); exact to beyond 10,000, a 0.2 % sketch above',
    viewers AggregateFunction(uniqCombinedIf({k}), UInt64, UInt8) COMMENT 'Distinct viewer keys of views that have one: uniqCombinedIfMerge({k})(viewers)',
    classes AggregateFunction(uniqCombined({k}), String, String) COMMENT 'Distinct (org, badge class) pairs with events: uniqCombinedMerge({k})(classes)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'"
        )
    }

    /// Migration 2: the `scope_*` tables (hour, day, all time). Each event is counted in three
    /// rows, of its badge class, its issuer and its org, so that any scope
    /// reads a handful of rows per bucket; distinct counts are sketches
    /// (see [`SKETCH_PRECISION`]) whose merge cost does not grow with the
    /// number of values. `scope_total` holds all time, with no bucket.
    /// An existing deployment fills them from `events` on the consumers'
    /// first batch (an empty derived table is recovered in full).
    fn v2(&self) -> Vec<String> {
        let db = &self.database;
        let on = self.on_cluster();
        let mut s = Vec::new();
        for g in Granularity::ALL {
            let Some(table) = g.scope_table() else {
                continue;
            };
            s.extend(self.table(
                table,
                &Self::scope_columns(true),
                "AggregatingMergeTree",
                "",
                &format!(
                    "PARTITION BY {}\nORDER BY (org_id, scope_issuer_id, scope_badge_class_id, event_type, bucket, partition)\nSETTINGS index_granularity = 256",
                    g.partition_by()
                ),
            ));
        }
        s.extend(self.table(
            SCOPE_TOTAL,
            &Self::scope_columns(false),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, scope_issuer_id, scope_badge_class_id, event_type, partition)\nSETTINGS index_granularity = 256",
        ));
        for table in DERIVED_TABLES.iter().filter(|t| t.starts_with("scope_")) {
            s.push(format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv{on} TO {db}.{} AS {}",
                self.local(table),
                self.derived_select(table, &format!("{db}.events_input"), "")
            ));
        }
        s
    }

    fn v1(&self) -> Vec<String> {
        let db = &self.database;
        let on = self.on_cluster();
        let mut s = Vec::new();
        s.extend(self.table(
            "events",
            &Self::event_columns(),
            "MergeTree",
            "",
            "PARTITION BY toYYYYMM(occurred_at)\nORDER BY (org_id, event_id)",
        ));
        // The insert target: a Null table whose materialised views fan every
        // batch out to `events` and the derived tables in one statement.
        s.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.events_input{on} (\n{}\n) ENGINE = Null",
            Self::event_columns()
        ));
        for g in Granularity::ALL {
            s.extend(self.table(
                g.table(),
                &Self::rollup_columns(),
                "AggregatingMergeTree",
                "",
                &format!(
                    "PARTITION BY {}\nORDER BY (org_id, issuer_id, badge_class_id, event_type, bucket, dim_value, country, partition)",
                    g.partition_by()
                ),
            ));
        }
        s.extend(self.table(
            "assertion_lifecycle",
            &Self::lifecycle_columns(),
            "AggregatingMergeTree",
            "",
            "ORDER BY (org_id, issuer_id, badge_class_id, assertion_id, partition)",
        ));
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
        // Materialised views: one per target, all reading the Null input.
        s.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_mv{on} TO {db}.{} AS SELECT * FROM {db}.events_input",
            self.local("events")
        ));
        for table in DERIVED_TABLES.iter().filter(|t| !t.starts_with("scope_")) {
            s.push(format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv{on} TO {db}.{} AS {}",
                self.local(table),
                self.derived_select(table, &format!("{db}.events_input"), "")
            ));
        }
        s.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.badge_classes_mv{on} TO {db}.{} AS {}",
            self.local("badge_classes"),
            self.badge_classes_select(&format!("{db}.events_input"))
        ));
        s
    }

    /// Every DDL statement, bootstrap and migrations, in order.
    pub fn all_statements(&self) -> Vec<String> {
        let mut all = self.bootstrap();
        all.extend(self.migrations().into_iter().flat_map(|m| m.statements));
        all
    }

    /// The SELECT that computes `table`'s rows from event rows in `source`,
    /// restricted by the extra condition `filter` (`AND …` or empty). Shared
    /// by the materialised view and the recovery path, so both always agree.
    pub fn derived_select(&self, table: &str, source: &str, filter: &str) -> String {
        match table {
            "assertion_lifecycle" => {
                let when = |stage: &str, ty: &str| {
                    format!("minIfState(occurred_at, type = '{ty}') AS first_{stage}")
                };
                let count =
                    |stage: &str, ty: &str| format!("countIfState(type = '{ty}') AS {stage}");
                format!(
                    "SELECT org_id, issuer_id, badge_class_id, assertion_id, partition, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, maxState(seq) AS max_seq FROM {source} WHERE type != 'badge_class.upserted' {filter} GROUP BY org_id, issuer_id, badge_class_id, assertion_id, partition",
                    when("awarded", "badge.awarded"),
                    when("accepted", "badge.accepted"),
                    when("shared", "badge.shared"),
                    when("viewed", "badge.viewed"),
                    when("revoked", "badge.revoked"),
                    count("awarded", "badge.awarded"),
                    count("accepted", "badge.accepted"),
                    count("shares", "badge.shared"),
                    count("views", "badge.viewed"),
                    count("revoked", "badge.revoked"),
                )
            }
            scope if scope.starts_with("scope_") => {
                let (bucket, bucket_key) = match Granularity::of_table(scope) {
                    Some(g) => (
                        format!("{}(occurred_at) AS bucket, ", g.bucket_fn()),
                        "bucket, ",
                    ),
                    None => (String::new(), ""),
                };
                // ARRAY JOIN: each event once per scope level (2: its badge
                // class, 1: its issuer, 0: its org).
                format!(
                    "SELECT {bucket}org_id, if(scope_level >= 1, issuer_id, '') AS scope_issuer_id, \
                     if(scope_level = 2, badge_class_id, '') AS scope_badge_class_id, type AS event_type, partition, \
                     {}, maxState(seq) AS max_seq \
                     FROM {source} ARRAY JOIN [0, 1, 2] AS scope_level WHERE 1 {filter} \
                     GROUP BY {bucket_key}org_id, scope_issuer_id, scope_badge_class_id, event_type, partition",
                    scope_states()
                )
            }
            rollup => {
                let g = Granularity::ALL
                    .into_iter()
                    .find(|g| g.table() == rollup)
                    .unwrap_or_else(|| panic!("no derived table {rollup}"));
                format!(
                    "SELECT {}(occurred_at) AS bucket, org_id, issuer_id, badge_class_id, type AS event_type, \
                     multiIf(type = 'badge.awarded', toString(award_method), type = 'badge.shared', toString(share_channel), type = 'badge.viewed', toString(view_source), '') AS dim_value, \
                     country, partition, countState() AS events, uniqExactState(assertion_id) AS assertions, \
                     uniqExactIfState(viewer_key, viewer_key != 0) AS viewers, maxState(seq) AS max_seq \
                     FROM {source} WHERE 1 {filter} \
                     GROUP BY bucket, org_id, issuer_id, badge_class_id, event_type, dim_value, country, partition",
                    g.bucket_fn()
                )
            }
        }
    }

    fn badge_classes_select(&self, source: &str) -> String {
        format!(
            "SELECT org_id, badge_class_id, issuer_id, badge_class_name AS name, skills, pathways, courses, catalogs, collections, \
             attribute_keys, attribute_values, notEmpty(skills) AS skills_aligned, \
             notEmpty(pathways) OR notEmpty(courses) AS in_pathway, notEmpty(catalogs) OR notEmpty(collections) AS in_catalog, \
             occurred_at AS updated_at FROM {source} WHERE type = 'badge_class.upserted'"
        )
    }

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

    /// The names of the `events` columns, in order.
    pub fn event_column_names() -> Vec<String> {
        Self::event_columns()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
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
    fn cluster_ddl_is_replicated_and_distributed() {
        let s = Schema::new("bp", "prod");
        let v1 = [s.bootstrap(), s.migrations().remove(0).statements].concat();
        let events: Vec<&String> = v1
            .iter()
            .filter(|q| q.contains(" bp.events_local") || q.contains(" bp.events ON"))
            .collect();
        assert!(events.iter().any(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events_local ON CLUSTER prod")
            && q.contains("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/bp/events_local', '{replica}')")));
        let distributed = v1
            .iter()
            .find(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events ON CLUSTER prod ("))
            .unwrap();
        assert!(distributed.ends_with("ENGINE = Distributed(prod, bp, events_local, rand())"));
        assert!(
            distributed.contains("event_id String COMMENT 'Idempotency key"),
            "comments live on the Distributed table"
        );
        let local = v1
            .iter()
            .find(|q| q.starts_with("CREATE TABLE IF NOT EXISTS bp.events_local ON CLUSTER prod ("))
            .unwrap();
        assert!(
            !local.contains("COMMENT"),
            "18.16 refuses comments on replicated tables: {local}"
        );
        assert!(
            local.contains("    event_id String,\n") && local.contains("    seq UInt64\n)"),
            "{local}"
        );
        assert!(v1.iter().any(|q| q.contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/bp/badge_classes_local', '{replica}', updated_at)")));
        assert!(v1.iter().any(|q| q.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS bp.rollup_hour_mv ON CLUSTER prod TO bp.rollup_hour_local")));
        assert!(v1[0] == "CREATE DATABASE IF NOT EXISTS bp ON CLUSTER prod");
    }

    #[test]
    fn enums_follow_the_contract() {
        assert!(event_type_enum().starts_with("Enum8('badge.awarded' = 1, "));
        assert!(award_method_enum().starts_with("Enum8('' = 0, 'manual' = 1"));
    }
}
