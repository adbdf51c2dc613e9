//! The all-time totals behind the business metrics of `/metrics` (SPEC
//! §9), with label cardinality bounded: at most `max_orgs` orgs and
//! `max_issuers` (org, issuer) pairs, the rest folded into
//! [`OTHER_LABEL`].

use badgepulse_contract::tables::{rollup_count, ROLLUP_TOTAL, SCOPE_TOTAL};
use clickhouse::query::Query;
use clickhouse::Client;

use super::award_days::{push_award_days, AwardDays, Unsealed};
use super::sql::{merged_counts, table, Sql};
use super::viewers::{push_unique_viewers, ViewerKeys};
use crate::model::scope::Filter;
use crate::model::tiers::Period;

/// Label value that collects orgs and issuers beyond the label limits.
pub const OTHER_LABEL: &str = "__other__";

/// All-time counts of one (`org_id`, `issuer_id`) label pair for
/// `/metrics`, after folding: the columns of [`IssuerTotals`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct IssuerTotals {
    pub org_id: String,
    pub issuer_id: String,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
}

/// `(SELECT org_id FROM scope_total … LIMIT max_orgs)`: the `max_orgs`
/// orgs with the most events of all time (ties by `org_id`). Every
/// `/metrics` query folds the other orgs into [`OTHER_LABEL`] with this
/// same set.
fn push_top_orgs(sql: &mut Sql, client: &Client, max_orgs: u64) {
    sql.push("(SELECT org_id FROM ")
        .push(&table(client, SCOPE_TOTAL));
    sql.push(" WHERE scope_issuer_id = '' AND scope_badge_class_id = ''");
    sql.push(" GROUP BY org_id ORDER BY countMerge(events) DESC, org_id LIMIT ")
        .u64(max_orgs)
        .push(")");
}

/// `if(org_id IN (top orgs), org_id, '__other__')`.
fn push_org_label(sql: &mut Sql, client: &Client, max_orgs: u64) {
    sql.push("if(org_id IN ");
    push_top_orgs(sql, client, max_orgs);
    sql.push(", org_id, '").push(OTHER_LABEL).push("')");
}

/// All-time counts per (org, issuer) for `/metrics`, with label
/// cardinality bounded in SQL: orgs beyond the `max_orgs` most active
/// (by event count) become `__other__`, and (org, issuer) pairs beyond the
/// `max_issuers` most active pairs of the kept orgs get issuer
/// `__other__`. Folded rows add up their issuers' (or orgs') counts: exact
/// for assertions, each of which belongs to one issuer, and for event
/// counts; a viewer who viewed badges of two folded issuers on one day
/// counts twice in the folded unique viewers. Reads one `scope_total` row
/// and the sealed days of each issuer: bounded by issuers, not events.
pub fn issuer_totals(client: &Client, max_orgs: u64, max_issuers: u64) -> Query {
    let totals = table(client, SCOPE_TOTAL);
    let issuer_rows = " WHERE scope_issuer_id != '' AND scope_badge_class_id = ''";
    let mut sql = Sql::default();
    sql.push(
        "SELECT org, issuer, sum(awarded) AS awarded, sum(accepted) AS accepted, sum(shared) AS shared, \
         sum(shares) AS shares, sum(views) AS views, sum(unique_viewers) AS unique_viewers FROM (SELECT ",
    );
    push_org_label(&mut sql, client, max_orgs);
    sql.push(" AS org, ");
    sql.push("if((org_id, issuer_id) IN (SELECT org_id, scope_issuer_id FROM ")
        .push(&totals)
        .push(issuer_rows);
    sql.push(" AND org_id IN ");
    push_top_orgs(&mut sql, client, max_orgs);
    sql.push(
        " GROUP BY org_id, scope_issuer_id ORDER BY countMerge(events) DESC, org_id, scope_issuer_id LIMIT ",
    )
    .u64(max_issuers);
    sql.push("), issuer_id, '")
        .push(OTHER_LABEL)
        .push("') AS issuer, awarded, accepted, shared, shares, views, unique_viewers FROM (SELECT org_id, scope_issuer_id AS issuer_id, ")
        .push(&merged_counts())
        .push(" FROM ")
        .push(&totals)
        .push(issuer_rows)
        .push(" GROUP BY org_id, issuer_id) AS t ANY LEFT JOIN (");
    push_unique_viewers(
        &mut sql,
        client,
        &Filter::default(),
        &Period::AllTime,
        &ViewerKeys::PER_ISSUER,
        false,
    );
    sql.push(") AS v USING org_id, issuer_id) GROUP BY org, issuer ORDER BY org, issuer");
    sql.build(client)
}

/// All-time count of one distribution value of one org label for
/// `/metrics`: a row of [`dimension_totals`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DimensionTotals {
    pub org_id: String,
    /// `badge.awarded` (award method), `badge.shared` (share channel) or
    /// `badge.viewed` (view source).
    pub event_type: String,
    /// The award method, channel or source (a closed set).
    pub value: String,
    /// As in `/api/v1/distribution`: distinct awarded assertions for award
    /// methods, events for channels and sources.
    pub count: u64,
}

/// All-time award methods, share channels and view sources per org for
/// `/metrics` (rows of [`DimensionTotals`], by org, type, value), from
/// `rollup_total` (a row per org and value), orgs beyond the `max_orgs`
/// most active folded into `__other__` by adding up their per-org counts.
pub fn dimension_totals(client: &Client, max_orgs: u64) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(&format!(
        " AS org, ty, value, sum(n) AS count FROM (SELECT org_id, \
         multiIf(dimension = 'award_method', 'badge.awarded', dimension = 'share_channel', 'badge.shared', 'badge.viewed') AS ty, \
         value, if(dimension = 'award_method', {}, {}) AS n FROM ",
        rollup_count("award_method"),
        rollup_count("view_source"),
    ));
    sql.push(&table(client, ROLLUP_TOTAL));
    sql.push(
        " WHERE dimension IN ('award_method', 'share_channel', 'view_source') \
         GROUP BY org_id, dimension, value) GROUP BY org, ty, value ORDER BY org, ty, value",
    );
    sql.build(client)
}

/// All-time lifecycle stage counts of one org label for `/metrics`: a row
/// of [`lifecycle_totals`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct LifecycleTotals {
    pub org_id: String,
    /// Assertions with a `badge.awarded`.
    pub awarded: u64,
    /// … and a `badge.accepted`.
    pub accepted: u64,
    /// … and a `badge.shared`.
    pub shared: u64,
    /// … and a `badge.viewed`.
    pub viewed: u64,
}

/// All-time lifecycle stages per org for `/metrics` (rows of
/// [`LifecycleTotals`], by org): SPEC §7.6 nesting over every assertion
/// ever awarded, orgs beyond the `max_orgs` most active folded into
/// `__other__`. Adds up the cohort of each award day
/// ([`push_award_days`]): bounded by org days and recent changes, not
/// events, and exact whether or not the aggregator has sealed yet.
/// `unsealed`: every org's award days not sealed
/// ([`super::award_days::unsealed`]).
pub fn lifecycle_totals(client: &Client, max_orgs: u64, unsealed: &Unsealed) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(
        " AS org, sum(awarded) AS awarded, sum(accepted) AS accepted, sum(shared) AS shared, \
         sum(viewed) AS viewed FROM ",
    );
    push_award_days(
        &mut sql,
        client,
        &AwardDays {
            org: None,
            days: None,
            unsealed,
        },
        "awarded, accepted, shared, viewed",
    );
    sql.push(" GROUP BY org ORDER BY org");
    sql.build(client)
}
