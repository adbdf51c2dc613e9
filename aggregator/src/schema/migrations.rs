//! The schema's versions: each a list of idempotent DDL statements,
//! applied in order and recorded in `schema_migrations`.

use badgepulse_contract::tables::{Tier, SCOPE_TOTAL};

use super::tables::{partition_by, DERIVED_TABLES};
use super::Schema;

/// One schema version: statements applied in order, then recorded in
/// `schema_migrations`. Every statement is idempotent (`IF NOT EXISTS`), so
/// a crash halfway through a migration is repaired by running it again.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub statements: Vec<String>,
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
        for g in Tier::ALL {
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
                    partition_by(g)
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
        for g in Tier::ALL {
            s.extend(self.table(
                g.rollup_table(),
                &Self::rollup_columns(),
                "AggregatingMergeTree",
                "",
                &format!(
                    "PARTITION BY {}\nORDER BY (org_id, issuer_id, badge_class_id, event_type, bucket, dim_value, country, partition)",
                    partition_by(g)
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
}
