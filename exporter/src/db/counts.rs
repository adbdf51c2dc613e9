//! The SPEC §7 counts of a scope: over a period (overview, KPI tiles),
//! per badge class (top badges, drivers) and per trend bucket. Each is one
//! statement: the measures merged from `scope_*` states, with the unique
//! viewers summed per day beside them (`viewers.rs`).

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{merged_counts, push_states, Family, Keys, Measures, ScopeRows, Sql, COUNT_NAMES};
use super::viewers::{push_unique_viewers, ViewerKeys};
use crate::model::measures::Counts;
use crate::model::scope::Filter;
use crate::model::tiers::Period;
use crate::model::window::Granularity;

/// One row of [`crate::model::measures::Counts`] for `filter` and `period`.
pub fn measure_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let (before, after) = COUNT_NAMES
        .split_once("unique_viewers")
        .expect("unique_viewers is a count");
    let mut sql = Sql::default();
    sql.push("SELECT ").push(before).push("(");
    push_unique_viewers(&mut sql, client, filter, period, &ViewerKeys::TOTAL, false);
    sql.push(") AS unique_viewers")
        .push(after)
        .push(" FROM (SELECT ")
        .push(&merged_counts())
        .push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope {
            per_class: false,
            measures: Measures::All,
        },
        &Keys::columns("org_id"),
        filter,
        period,
    );
    sql.push(")");
    sql.build(client)
}

/// The counts of one badge class: a row of [`class_counts`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ClassCounts {
    pub org_id: String,
    pub badge_class_id: String,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
    pub revoked: u64,
    pub badge_classes: u64,
}

impl ClassCounts {
    pub fn counts(&self) -> Counts {
        Counts {
            awarded: self.awarded,
            accepted: self.accepted,
            shared: self.shared,
            shares: self.shares,
            views: self.views,
            unique_viewers: self.unique_viewers,
            revoked: self.revoked,
            badge_classes: self.badge_classes,
        }
    }
}

/// `SELECT names, counts… FROM (merged states GROUP BY names) ANY LEFT
/// JOIN (unique viewers GROUP BY names) USING names ORDER BY names`.
fn push_grouped_counts(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    period: &Period,
    keys: &Keys,
    viewers: &ViewerKeys,
    per_hour: bool,
) {
    let names = keys.names;
    sql.push("SELECT ")
        .push(names)
        .push(", ")
        .push(COUNT_NAMES)
        .push(" FROM (SELECT ")
        .push(names)
        .push(", ")
        .push(&merged_counts())
        .push(" FROM ");
    push_states(
        sql,
        client,
        Family::Scope {
            per_class: viewers.rows == ScopeRows::PerClass,
            measures: Measures::All,
        },
        keys,
        filter,
        period,
    );
    sql.push(" GROUP BY ")
        .push(names)
        .push(") AS c ANY LEFT JOIN (");
    push_unique_viewers(sql, client, filter, period, viewers, per_hour);
    sql.push(") AS v USING ")
        .push(names)
        .push(" ORDER BY ")
        .push(names);
}

/// The counts of every badge class with events in `period` (rows of
/// [`ClassCounts`], by org and badge class).
pub fn class_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let mut sql = Sql::default();
    push_grouped_counts(
        &mut sql,
        client,
        filter,
        period,
        &Keys {
            rollup: "org_id, scope_badge_class_id AS badge_class_id",
            raw: "org_id, badge_class_id",
            names: "org_id, badge_class_id",
        },
        &ViewerKeys::PER_CLASS,
        false,
    );
    sql.build(client)
}

/// The counts of one trend bucket: a row of [`trend_counts`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct TrendRow {
    /// Bucket start, epoch seconds.
    pub t: u32,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
    pub revoked: u64,
    pub badge_classes: u64,
}

impl TrendRow {
    pub fn counts(&self) -> Counts {
        Counts {
            awarded: self.awarded,
            accepted: self.accepted,
            shared: self.shared,
            shares: self.shares,
            views: self.views,
            unique_viewers: self.unique_viewers,
            revoked: self.revoked,
            badge_classes: self.badge_classes,
        }
    }
}

/// `granularity`'s bucket start of the DateTime column `column`, as
/// `UInt32` epoch seconds.
fn bucket_expr(granularity: Granularity, column: &str) -> String {
    match granularity {
        Granularity::Minute => format!("toUInt32(toStartOfMinute({column}))"),
        Granularity::Hour => format!("toUInt32(toStartOfHour({column}))"),
        Granularity::Day => format!("toUInt32(toStartOfDay({column}))"),
        // Dates are day numbers.
        Granularity::Week => format!("toUInt32(toUInt32(toMonday({column})) * 86400)"),
        Granularity::Month => format!("toUInt32(toUInt32(toStartOfMonth({column})) * 86400)"),
    }
}

/// The counts per `granularity` bucket of `period` (rows of [`TrendRow`]
/// for the buckets that have events, by time). `period` must be
/// decomposed down from `granularity.coarsest_resolution()` so that every
/// segment's buckets nest inside trend buckets; raw edges count only the
/// seconds of the window.
pub fn trend_counts(
    client: &Client,
    filter: &Filter,
    period: &Period,
    granularity: Granularity,
) -> Query {
    if let Period::Segments(segments) = period {
        debug_assert!(segments
            .iter()
            .all(|s| s.resolution.step() <= granularity.coarsest_resolution().step()));
    }
    let rollup = format!("{} AS t", bucket_expr(granularity, "bucket"));
    let raw = format!("{} AS t", bucket_expr(granularity, "occurred_at"));
    let keys = Keys {
        rollup: &rollup,
        raw: &raw,
        names: "t",
    };
    let viewers = ViewerKeys {
        sealed: &rollup,
        raw: &raw,
        names: "t",
        rows: ScopeRows::Own,
    };
    let per_hour = matches!(granularity, Granularity::Hour | Granularity::Minute);
    let mut sql = Sql::default();
    push_grouped_counts(&mut sql, client, filter, period, &keys, &viewers, per_hour);
    sql.build(client)
}
