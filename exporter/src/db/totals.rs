//! The all-time totals behind the business metrics of `/metrics` (SPEC
//! §9), with label cardinality bounded: at most `max_orgs` orgs and
//! `max_issuers` (org, issuer) pairs, the rest folded into
//! [`OTHER_LABEL`].

use badgepulse_contract::tables::SCOPE_TOTAL;
use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{sketch_merge, table, Sql, ASSERTION_KEY};

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
/// `__other__`. Issuers folded within an org merge states, so distinct
/// counts stay exact; folded orgs add up their per-org distinct counts, so
/// equal assertion ids (or viewer keys) of two orgs are never merged.
pub fn issuer_totals(client: &Client, max_orgs: u64, max_issuers: u64) -> Query {
    let totals = table(client, SCOPE_TOTAL);
    let issuer_rows = " WHERE scope_issuer_id != '' AND scope_badge_class_id = ''";
    let mut sql = Sql::default();
    sql.push(
        "SELECT org, issuer, sum(aw) AS awarded, sum(ac) AS accepted, sum(sh) AS shared, \
         sum(sh_n) AS shares, sum(vw_n) AS views, sum(uv) AS unique_viewers FROM (SELECT org_id, ",
    );
    push_org_label(&mut sql, client, max_orgs);
    sql.push(" AS org, ");
    sql.push("if((org_id, scope_issuer_id) IN (SELECT org_id, scope_issuer_id FROM ")
        .push(&totals)
        .push(issuer_rows);
    sql.push(" AND org_id IN ");
    push_top_orgs(&mut sql, client, max_orgs);
    sql.push(
        " GROUP BY org_id, scope_issuer_id ORDER BY countMerge(events) DESC, org_id, scope_issuer_id LIMIT ",
    )
    .u64(max_issuers);
    sql.push("), scope_issuer_id, '")
        .push(OTHER_LABEL)
        .push("') AS issuer, ");
    sql.push(&format!(
        "{} AS aw, {} AS ac, {} AS sh, \
         countMergeIf(events, event_type = 'badge.shared') AS sh_n, \
         countMergeIf(events, event_type = 'badge.viewed') AS vw_n, {} AS uv FROM ",
        sketch_merge("assertions", "badge.awarded"),
        sketch_merge("assertions", "badge.accepted"),
        sketch_merge("assertions", "badge.shared"),
        sketch_merge("viewers", "badge.viewed"),
    ));
    sql.push(&totals)
        .push(issuer_rows)
        .push(" GROUP BY org_id, org, issuer) GROUP BY org, issuer ORDER BY org, issuer");
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
/// `/metrics` (rows of [`DimensionTotals`], by org, type, value), orgs
/// beyond the `max_orgs` most active folded into `__other__` by adding up
/// their per-org counts.
pub fn dimension_totals(client: &Client, max_orgs: u64) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(
        " AS org, ty, value, sum(n) AS count FROM (SELECT org_id, toString(event_type) AS ty, \
         dim_value AS value, if(event_type = 'badge.awarded', uniqExactMerge(assertions), \
         countMerge(events)) AS n FROM ",
    );
    sql.push(&table(client, "rollup_day"));
    sql.push(
        " WHERE event_type IN ('badge.awarded', 'badge.shared', 'badge.viewed') \
         GROUP BY org_id, event_type, dim_value) GROUP BY org, ty, value ORDER BY org, ty, value",
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
/// `__other__`.
pub fn lifecycle_totals(client: &Client, max_orgs: u64) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(
        " AS org, sum(s1) AS awarded, sum(s2) AS accepted, sum(s3) AS shared, sum(s4) AS viewed \
         FROM (SELECT org_id, countIf(aw_n > 0) AS s1, countIf(aw_n > 0 AND ac_n > 0) AS s2, \
         countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0) AS s3, \
         countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS s4 \
         FROM (SELECT org_id, countIfMerge(awarded) AS aw_n, countIfMerge(accepted) AS ac_n, \
         countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n FROM ",
    );
    sql.push(&table(client, "assertion_lifecycle"));
    sql.push(" GROUP BY org_id, ").push(ASSERTION_KEY).push(
        ") GROUP BY org_id) \
         GROUP BY org ORDER BY org",
    );
    sql.build(client)
}
