//! The lifecycle of a cohort (SPEC §7.6): stage counts and medians.

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{push_filter, table, Conditions, Sql, ASSERTION_KEY};
use crate::model::scope::Filter;
use crate::model::window::Window;

/// The lifecycle of a cohort (SPEC §7.6): the row of [`lifecycle`].
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct LifecycleRow {
    /// Assertions first awarded in the window.
    pub awarded: u64,
    /// … of which accepted.
    pub accepted: u64,
    /// … of which accepted and shared.
    pub shared: u64,
    /// … of which accepted, shared and viewed.
    pub viewed: u64,
    /// Assertions with an award and an accept time, and the median of
    /// first accept − first award (seconds; 0 when there are none).
    pub award_to_accept_n: u64,
    pub award_to_accept_secs: f64,
    /// Assertions with an accept and a share time; median first share −
    /// first accept.
    pub accept_to_share_n: u64,
    pub accept_to_share_secs: f64,
    /// Assertions with a share and a view time; median first view − first
    /// share.
    pub share_to_view_n: u64,
    pub share_to_view_secs: f64,
}

/// `length(d) AS n, median of the sorted array d AS m` (0 when empty:
/// index 1 of an empty array is the default value).
fn push_median(sql: &mut Sql, array: &str, n: &str, m: &str) {
    sql.push("length(")
        .push(array)
        .push(") AS ")
        .push(n)
        .push(", ");
    sql.push("(arrayElement(")
        .push(array)
        .push(", greatest(1, intDiv(length(")
        .push(array)
        .push(") + 1, 2))) + arrayElement(")
        .push(array)
        .push(", greatest(1, intDiv(length(")
        .push(array)
        .push(") + 2, 2)))) / 2 AS ")
        .push(m);
}

/// ` WHERE …`: the `assertion_lifecycle` rows of `filter` that hold every
/// row of the assertions first awarded in `window` (and a few others,
/// which the first award then leaves out). A row is filed under the first
/// award day known when it was written (`awarded_on`), never before the
/// true first award, so the cohort's rows are those of its days, those of
/// assertions no award was known for yet (day 0), and those of the
/// assertions whose earlier award arrived after rows were filed under a
/// later one (`lifecycle_refiled`); an assertion with such an award before
/// the window is not of its cohort, whatever its rows in the window say.
pub(crate) fn push_cohort_rows(sql: &mut Sql, client: &Client, filter: &Filter, window: Window) {
    let refiled = table(client, "lifecycle_refiled");
    let (first, last) = (
        window.from(),
        window.to().saturating_sub(1).max(window.from()),
    );
    let mut c = Conditions::new();
    push_filter(sql, &mut c, filter);
    let org = |sql: &mut Sql| {
        if let Some(org) = &filter.org {
            sql.push("org_id = ").str(org).push(" AND ");
        }
    };
    c.and(sql).push("(awarded_on >= toDate(").time(first);
    sql.push(") AND awarded_on <= toDate(").time(last);
    sql.push(") OR awarded_on = toDate('1970-01-01') OR (awarded_on > toDate(")
        .time(last);
    sql.push(") AND (org_id, assertion_id) IN (SELECT org_id, assertion_id FROM ")
        .push(&refiled)
        .push(" WHERE ");
    org(sql);
    sql.push("awarded_on >= toDate(").time(first);
    sql.push(") AND awarded_on <= toDate(")
        .time(last)
        .push("))))");
    c.and(sql)
        .push("(org_id, assertion_id) NOT IN (SELECT org_id, assertion_id FROM ")
        .push(&refiled)
        .push(" WHERE ");
    org(sql);
    sql.push("awarded_on < toDate(").time(first).push("))");
}

/// The lifecycle of the assertions of `filter` first awarded in `window`
/// (one [`LifecycleRow`]). Presence of an event is tested with its count
/// (`minIfMerge` yields 1970-01-01 for "never").
pub fn lifecycle(client: &Client, filter: &Filter, window: Window) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT awarded, accepted, shared, viewed, ");
    push_median(&mut sql, "d1", "award_to_accept_n", "award_to_accept_secs");
    sql.push(", ");
    push_median(&mut sql, "d2", "accept_to_share_n", "accept_to_share_secs");
    sql.push(", ");
    push_median(&mut sql, "d3", "share_to_view_n", "share_to_view_secs");
    sql.push(
        " FROM (SELECT count() AS awarded, countIf(ac_n > 0) AS accepted, \
         countIf(ac_n > 0 AND sh_n > 0) AS shared, \
         countIf(ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS viewed, \
         arraySort(groupArrayIf(toInt64(ac) - toInt64(aw), ac_n > 0)) AS d1, \
         arraySort(groupArrayIf(toInt64(sh) - toInt64(ac), ac_n > 0 AND sh_n > 0)) AS d2, \
         arraySort(groupArrayIf(toInt64(vw) - toInt64(sh), ac_n > 0 AND sh_n > 0 AND vw_n > 0)) AS d3 \
         FROM (SELECT minIfMerge(first_awarded) AS aw, minIfMerge(first_accepted) AS ac, \
         minIfMerge(first_shared) AS sh, minIfMerge(first_viewed) AS vw, \
         countIfMerge(awarded) AS aw_n, countIfMerge(accepted) AS ac_n, \
         countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n FROM ",
    );
    sql.push(&table(client, "assertion_lifecycle"));
    push_cohort_rows(&mut sql, client, filter, window);
    sql.push(" GROUP BY ").push(ASSERTION_KEY).push(")");
    sql.push(" WHERE aw_n > 0 AND aw >= ")
        .time(window.from())
        .push(" AND aw < ")
        .time(window.to())
        .push(")");
    sql.build(client)
}
