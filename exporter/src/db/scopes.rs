//! What an API key may see (`GET /api/v1/scopes`): the orgs, issuers and
//! badge classes with events, at the levels the filter covers, each with
//! its all-time awards and, for badge classes, the latest name.
//!
//! The scope tables' layout is read here and nowhere else for this
//! listing, so a change of layout re-points this one query.

use badgepulse_contract::tables::SCOPE_TOTAL;
use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{merged_measure, table, Conditions, Sql};
use crate::model::scope::Filter;

/// One org, issuer or badge class: `issuer_id` and `badge_class_id` are
/// empty in the rows of a whole org, `badge_class_id` in those of an
/// issuer; `name` is empty unless a badge class was upserted with one.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ScopeRow {
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    pub name: String,
    /// Distinct assertions awarded, all time.
    pub awarded: u64,
}

/// The rows of [`ScopeRow`] within `filter`, by org, issuer and badge
/// class: the org rows only when the filter names no issuer or badge
/// class, the issuer rows only when it names no badge class (a narrower
/// key never sees a wider total).
pub fn scopes(client: &Client, filter: &Filter) -> Query {
    let mut sql = Sql::default();
    sql.push(
        "SELECT org_id, scope_issuer_id AS issuer_id, scope_badge_class_id AS badge_class_id, \
         class_name AS name, awarded FROM (SELECT org_id, scope_issuer_id, scope_badge_class_id, ",
    );
    sql.push(&merged_measure("awarded"))
        .push(" AS awarded FROM ")
        .push(&table(client, SCOPE_TOTAL));
    let mut c = Conditions::new();
    if let Some(org) = &filter.org {
        c.and(&mut sql).push("org_id = ").str(org);
    }
    if let Some(issuer) = &filter.issuer {
        c.and(&mut sql).push("scope_issuer_id = ").str(issuer);
    }
    if let Some(badge_class) = &filter.badge_class {
        c.and(&mut sql)
            .push("scope_badge_class_id = ")
            .str(badge_class);
    }
    sql.push(
        " GROUP BY org_id, scope_issuer_id, scope_badge_class_id) AS s ANY LEFT JOIN \
         (SELECT org_id, badge_class_id AS scope_badge_class_id, \
         argMax(name, updated_at) AS class_name FROM ",
    )
    .push(&table(client, "badge_classes"));
    let mut c = Conditions::new();
    if let Some(org) = &filter.org {
        c.and(&mut sql).push("org_id = ").str(org);
    }
    sql.push(
        " GROUP BY org_id, badge_class_id) AS n USING (org_id, scope_badge_class_id) \
         ORDER BY org_id, issuer_id, badge_class_id",
    );
    sql.build(client)
}
