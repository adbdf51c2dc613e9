//! Unique viewers (SPEC §7) of a scope over a period, as SQL that the
//! count queries embed.
//!
//! Viewer keys are salted per UTC day (SPEC §4: a key never links two
//! days), so the unique viewers of a set of whole days are the sum of each
//! day's, and a part of a day is counted within its day. The aggregator
//! seals each closed day into one exact number per scope (`viewer_days`,
//! and per hour for the org, `viewer_hours`); a day is sealed when its org
//! row's `sealed_seq` has reached the day's last keyed view
//! (`view_days.max_seq`). Everything else — today, a day with views that
//! arrived after its seal, a part of a day — is counted from `events`
//! with `uniqExact`. So every count here is exact, sealed or not.
//!
//! Imports `sql` and `model`; no I/O.

use clickhouse::Client;

use badgepulse_contract::tables::{VIEWER_DAYS, VIEWER_HOURS, VIEW_DAYS};

use super::sql::{
    push_filter, push_raw_time, push_scope_filter, table, Conditions, ScopeRows, Sql,
};
use crate::model::scope::Filter;
use crate::model::tiers::{viewer_pieces, Period, ViewerPiece};

/// What unique viewers are grouped by: the key expressions over the
/// sealed tables (`bucket`, scope columns) and over `events`, and their
/// names. Empty names: one total.
pub(crate) struct ViewerKeys<'a> {
    pub(crate) sealed: &'a str,
    pub(crate) raw: &'a str,
    pub(crate) names: &'a str,
    /// Which sealed rows: the filter's own level, or one per issuer or
    /// badge class (keyed by it).
    pub(crate) rows: ScopeRows,
}

impl ViewerKeys<'static> {
    /// One total for the filter's scope.
    pub(crate) const TOTAL: ViewerKeys<'static> = ViewerKeys {
        sealed: "",
        raw: "",
        names: "",
        rows: ScopeRows::Own,
    };

    /// One count per badge class: `org_id, badge_class_id`.
    pub(crate) const PER_CLASS: ViewerKeys<'static> = ViewerKeys {
        sealed: "org_id, scope_badge_class_id AS badge_class_id",
        raw: "org_id, badge_class_id",
        names: "org_id, badge_class_id",
        rows: ScopeRows::PerClass,
    };

    /// One count per issuer: `org_id, issuer_id`.
    pub(crate) const PER_ISSUER: ViewerKeys<'static> = ViewerKeys {
        sealed: "org_id, scope_issuer_id AS issuer_id",
        raw: "org_id, issuer_id",
        names: "org_id, issuer_id",
        rows: ScopeRows::PerIssuer,
    };
}

/// How finely a raw piece is counted: per UTC day (any total), or per
/// hour (hourly trends).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grain {
    Day,
    Hour,
}

impl Grain {
    fn of(self, column: &str) -> String {
        match self {
            Grain::Day => format!("toDate({column})"),
            Grain::Hour => format!("toStartOfHour({column})"),
        }
    }
}

/// `SELECT names, sum(u) AS unique_viewers FROM (…) GROUP BY names`, or
/// `SELECT sum(u) …` for one total: the unique viewers of `filter` over
/// `period` by `keys`. `per_hour` counts whole hours each on its own
/// (hourly trends); otherwise hours are parts of their day.
pub(crate) fn push_unique_viewers(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    period: &Period,
    keys: &ViewerKeys,
    per_hour: bool,
) {
    let grouped = !keys.names.is_empty();
    sql.push("SELECT ");
    if grouped {
        sql.push(keys.names).push(", ");
    }
    sql.push("sum(u) AS unique_viewers FROM (");
    let pieces = viewer_pieces(period, per_hour);
    let narrowed = keys.rows != ScopeRows::Own || !filter.org_wide();
    let mut first = true;
    let mut branch = |sql: &mut Sql| {
        if !first {
            sql.push(" UNION ALL ");
        }
        first = false;
    };
    match pieces {
        None => {
            branch(sql);
            push_sealed(sql, client, filter, keys, VIEWER_DAYS, None);
            branch(sql);
            push_unsealed(sql, client, filter, keys, None, Grain::Day);
        }
        Some(pieces) => {
            for piece in pieces {
                match piece {
                    ViewerPiece::Days { from, to } => {
                        branch(sql);
                        push_sealed(sql, client, filter, keys, VIEWER_DAYS, Some((from, to)));
                        branch(sql);
                        push_unsealed(sql, client, filter, keys, Some((from, to)), Grain::Day);
                    }
                    // Hourly counts are sealed for the org scope only.
                    ViewerPiece::Hours { from, to } if !narrowed => {
                        branch(sql);
                        push_sealed(sql, client, filter, keys, VIEWER_HOURS, Some((from, to)));
                        branch(sql);
                        push_unsealed(sql, client, filter, keys, Some((from, to)), Grain::Hour);
                    }
                    ViewerPiece::Hours { from, to } => {
                        branch(sql);
                        push_raw(sql, client, filter, keys, from, to, Grain::Hour);
                    }
                    ViewerPiece::Raw { from, to } => {
                        branch(sql);
                        let grain = if per_hour { Grain::Hour } else { Grain::Day };
                        push_raw(sql, client, filter, keys, from, to, grain);
                    }
                }
            }
        }
    }
    sql.push(")");
    if grouped {
        sql.push(" GROUP BY ").push(keys.names);
    }
}

/// `keys, ` before an aggregate, or nothing for one total.
fn push_keys(sql: &mut Sql, keys: &str) {
    if !keys.is_empty() {
        sql.push(keys).push(", ");
    }
}

/// The sealed counts of `table` in `span` (whole days or hours; `None`:
/// all time) on the days that are sealed: the newest seal of each bucket
/// and scope row.
fn push_sealed(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    keys: &ViewerKeys,
    table_name: &str,
    span: Option<(u32, u32)>,
) {
    sql.push("SELECT ");
    push_keys(sql, keys.sealed);
    sql.push("argMax(unique_viewers, sealed_seq) AS u FROM ")
        .push(&table(client, table_name));
    let mut c = Conditions::new();
    push_scope_filter(sql, &mut c, filter, keys.rows);
    if let Some((from, to)) = span {
        c.and(sql).push("bucket >= ").time(from);
        sql.push(" AND bucket < ").time(to);
    }
    c.and(sql).push("(org_id, toStartOfDay(bucket)) IN (");
    push_org_days(sql, client, filter, span, true);
    sql.push(") GROUP BY ");
    push_keys(sql, keys.names);
    sql.push("org_id, scope_issuer_id, scope_badge_class_id, bucket");
}

/// The views with a viewer key of the days in `span` (`None`: all time)
/// that are not sealed, counted from `events` per `grain`.
fn push_unsealed(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    keys: &ViewerKeys,
    span: Option<(u32, u32)>,
    grain: Grain,
) {
    push_views(sql, client, keys);
    let mut c = Conditions::new();
    c.and(sql).push("type = 'badge.viewed' AND viewer_key != 0");
    push_filter(sql, &mut c, filter);
    if let Some((from, to)) = span {
        push_raw_time(sql, &mut c, from, to);
    }
    c.and(sql).push("(org_id, toDate(occurred_at)) IN (");
    push_org_days(sql, client, filter, span, false);
    sql.push(")");
    push_raw_group(sql, keys, grain);
}

/// The views with a viewer key in `[from, to)`, counted from `events` per
/// `grain`.
fn push_raw(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    keys: &ViewerKeys,
    from: u32,
    to: u32,
    grain: Grain,
) {
    push_views(sql, client, keys);
    let mut c = Conditions::new();
    c.and(sql).push("type = 'badge.viewed' AND viewer_key != 0");
    push_filter(sql, &mut c, filter);
    push_raw_time(sql, &mut c, from, to);
    push_raw_group(sql, keys, grain);
}

fn push_views(sql: &mut Sql, client: &Client, keys: &ViewerKeys) {
    sql.push("SELECT ");
    push_keys(sql, keys.raw);
    sql.push("uniqExact(viewer_key) AS u FROM ")
        .push(&table(client, "events"));
}

fn push_raw_group(sql: &mut Sql, keys: &ViewerKeys, grain: Grain) {
    sql.push(" GROUP BY ");
    push_keys(sql, keys.names);
    sql.push("org_id, ").push(&grain.of("occurred_at"));
}

/// `SELECT org_id, day FROM …`: the org days (of `filter`'s org, within
/// the days that `span` touches) with views that have a viewer key,
/// `sealed` or not: sealed when the org's `viewer_days` row has a
/// `sealed_seq` at least the day's `view_days.max_seq`. Sealed days come
/// as `DateTime` day starts (`viewer_*.bucket`), unsealed ones as `Date`
/// (`events`' sorting key).
fn push_org_days(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    span: Option<(u32, u32)>,
    sealed: bool,
) {
    let days = span.map(|(from, to)| {
        let day = 86_400u64;
        let lo = u64::from(from) / day * day;
        let hi = u64::from(to).div_ceil(day) * day;
        (lo as u32, hi.min(u64::from(u32::MAX)) as u32)
    });
    let part = |sql: &mut Sql, source: &str, extra: &str| {
        let mut c = Conditions::new();
        sql.push(" FROM ").push(&table(client, source));
        if let Some(org) = &filter.org {
            c.and(sql).push("org_id = ").str(org);
        }
        if !extra.is_empty() {
            c.and(sql).push(extra);
        }
        if let Some((lo, hi)) = days {
            c.and(sql).push("bucket >= ").time(lo);
            sql.push(" AND bucket < ").time(hi);
        }
        sql.push(" GROUP BY org_id, bucket");
    };
    sql.push(if sealed {
        "SELECT org_id, bucket"
    } else {
        "SELECT org_id, toDate(bucket)"
    });
    sql.push(" FROM (SELECT org_id, bucket, maxMerge(max_seq) AS hi");
    part(sql, VIEW_DAYS, "");
    sql.push(") AS v ");
    sql.push(if sealed {
        "ANY INNER JOIN"
    } else {
        "ANY LEFT JOIN"
    });
    sql.push(" (SELECT org_id, bucket, max(sealed_seq) AS sealed");
    part(
        sql,
        VIEWER_DAYS,
        "scope_issuer_id = '' AND scope_badge_class_id = ''",
    );
    sql.push(") AS s USING org_id, bucket WHERE ");
    sql.push(if sealed {
        "sealed >= hi"
    } else {
        "sealed < hi"
    });
}
