//! The SPEC §7 counts of a scope: over a period (overview, KPI tiles),
//! per badge class (top badges, drivers) and per trend bucket.

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{count_columns, push_states, Family, Keys, Sql};
use crate::model::measures::Counts;
use crate::model::scope::Filter;
use crate::model::tiers::Period;
use crate::model::window::Granularity;

/// One row of [`crate::measures::Counts`] for `filter` and `period`.
pub fn measure_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(&count_columns()).push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: false },
        &Keys::columns("org_id"),
        filter,
        period,
        None,
    );
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

/// The counts of every badge class with events in `period` (rows of
/// [`ClassCounts`], by org and badge class).
pub fn class_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT org_id, badge_class_id, ")
        .push(&count_columns())
        .push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: true },
        &Keys {
            rollup: "org_id, scope_badge_class_id AS badge_class_id",
            raw: "org_id, badge_class_id",
            names: "org_id, badge_class_id",
        },
        filter,
        period,
        None,
    );
    sql.push(" GROUP BY org_id, badge_class_id ORDER BY org_id, badge_class_id");
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
/// decomposed down from `granularity.coarsest_resolution()` so that every segment's
/// buckets nest inside trend buckets; raw edges count only the seconds of
/// the window.
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
    let mut sql = Sql::default();
    sql.push("SELECT t, ").push(&count_columns()).push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: false },
        &keys,
        filter,
        period,
        None,
    );
    sql.push(" GROUP BY t ORDER BY t");
    sql.build(client)
}
