//! The ClickHouse schema (SPEC §6) and every SQL statement the aggregator
//! issues, for one database, on a single server or a cluster.
//!
//! - [`tables`]: what each table holds: its columns, the materialised
//!   view's SELECT that fills it (shared with recovery), its partitioning;
//! - [`migrations`]: the DDL that creates them, and the statements that
//!   re-lay a database of an earlier version in place;
//! - [`statements`]: the statements of the exactly-once protocol
//!   (high-water marks, duplicate lookup, staged writes, recovery),
//!   retention and migration bookkeeping.
//!
//! Must not: execute anything (see `store.rs`), or paste user input into
//! SQL — the only interpolated names are the validated database and
//! cluster names.
//!
//! The SQL runs unchanged on ClickHouse 18.16 and on current releases:
//! no TTL, CODEC, DateTime64, LowCardinality, window functions,
//! `toStartOfInterval`, `SimpleAggregateFunction` or server-side
//! parameters. Every plain column of an AggregatingMergeTree is part of
//! its sorting key (current releases require it).

pub mod migrations;
pub mod statements;
pub mod tables;

pub use migrations::{CURRENT_DESCRIPTION, CURRENT_VERSION};
pub use tables::{event_type_enum, DERIVED_TABLES, LIFECYCLE_REFILED};

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

    pub(crate) fn on_cluster(&self) -> String {
        if self.cluster.is_empty() {
            String::new()
        } else {
            format!(" ON CLUSTER {}", self.cluster)
        }
    }

    /// The engine clause; in cluster mode the `Replicated*` variant with the
    /// conventional `{shard}`/`{replica}` macros.
    pub(crate) fn engine(&self, engine: &str, args: &str, table: &str) -> String {
        if self.cluster.is_empty() {
            if args.is_empty() {
                engine.to_owned()
            } else {
                format!("{engine}({args})")
            }
        } else {
            // The version of the table's layout is part of the ZooKeeper
            // path: a table re-laid by a migration is created while its
            // predecessor, renamed, still holds the old path; a table the
            // migration kept keeps its path, which a replica added later
            // must share.
            let zk = format!(
                "'/clickhouse/tables/{{shard}}/{}/{}/{table}', '{{replica}}'",
                self.database,
                migrations::layout_version(table.trim_end_matches("_local"))
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
    pub(crate) fn table(
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
                "CREATE TABLE IF NOT EXISTS {db}.{table}{on} (\n{columns}\n) ENGINE = {}",
                self.distributed_engine(table, columns),
                on = self.on_cluster(),
            ));
        }
        out
    }

    /// The engine of the `Distributed` table over `table`'s local table.
    /// Its sharding key says which shard an INSERT through it reaches; the
    /// aggregator writes each stream partition's rows into the local
    /// tables of the same shard (`crate::shards`), so that every row of a
    /// partition, hence of an org, lives on one shard:
    /// - tables with a `partition` column: `partition`;
    /// - `badge_classes` (filled only by its view, on the shard of its
    ///   org's partition): none, so that an INSERT through it is refused
    ///   on several shards rather than misplaced;
    /// - `annotations` and `schema_migrations`, read only through the
    ///   `Distributed` table: `rand()`.
    pub fn distributed_engine(&self, table: &str, columns: &str) -> String {
        let partitioned = columns
            .lines()
            .any(|line| line.trim_start().starts_with("partition UInt16 "));
        let key = if partitioned {
            ", partition"
        } else if table == "badge_classes" {
            ""
        } else {
            ", rand()"
        };
        format!(
            "Distributed({}, {}, {}{key})",
            self.cluster,
            self.database,
            self.local(table)
        )
    }

    /// Every DDL statement a new database runs, in order.
    pub fn all_statements(&self) -> Vec<String> {
        let mut all = self.bootstrap();
        all.extend(self.create_statements());
        all
    }
}

/// Removes the `COMMENT '…'` of every column line (one column per line,
/// as this file writes them), keeping the separating comma.
pub(crate) fn strip_comments(columns: &str) -> String {
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
