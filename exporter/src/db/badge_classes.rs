//! Badge-class metadata: the latest upsert of each class in scope.

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{push_where, table, Sql};
use crate::model::scope::Filter;

/// The latest metadata (`argMax` by `updated_at`, which is what
/// `badge_classes FINAL` keeps) of every badge class in `filter` that was
/// ever upserted: rows of [`BadgeClassMeta`].
pub fn badge_classes(client: &Client, filter: &Filter) -> Query {
    let mut sql = Sql::default();
    sql.push(
        "SELECT org_id, badge_class_id, argMax(name, updated_at) AS latest_name, \
         argMax(skills_aligned, updated_at) AS latest_skills_aligned, \
         argMax(in_pathway, updated_at) AS latest_in_pathway, \
         argMax(in_catalog, updated_at) AS latest_in_catalog, \
         argMax(attribute_keys, updated_at) AS latest_attribute_keys, \
         argMax(attribute_values, updated_at) AS latest_attribute_values FROM ",
    );
    sql.push(&table(client, "badge_classes"));
    push_where(&mut sql, filter);
    sql.push(" GROUP BY org_id, badge_class_id ORDER BY org_id, badge_class_id");
    sql.build(client)
}
