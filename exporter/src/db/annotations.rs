//! Annotations (program updates on trend charts): the rows, and the
//! query of those in scope.

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{table, Conditions, Sql};
use crate::model::scope::Filter;
use crate::model::window::Window;

/// Where annotations are written.
pub const ANNOTATIONS_TABLE: &str = "annotations";

/// An annotation (program update shown on trend charts): a row of the
/// `annotations` table, as inserted and as read by [`annotations`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct AnnotationRow {
    pub id: String,
    pub org_id: String,
    /// `''`: the whole org.
    pub issuer_id: String,
    /// `''`: every badge class.
    pub badge_class_id: String,
    /// Epoch seconds.
    pub at: u32,
    pub title: String,
    pub text: String,
    /// Epoch seconds.
    pub created_at: u32,
}

/// The annotations of `filter` with `at` in `window`, by time, at most
/// `limit` (rows of [`AnnotationRow`]).
///
/// An annotation is in scope when it belongs to the org and everything it
/// names matches the scope: with an issuer in `filter`, annotations of
/// the whole org or of that issuer; with a badge class, annotations of
/// every badge class or of that one, and when no issuer is given either
/// not tied to an issuer or tied to that badge class. An org (or admin)
/// scope sees all of its org's annotations.
pub fn annotations(client: &Client, filter: &Filter, window: Window, limit: u64) -> Query {
    let mut sql = Sql::default();
    push_select(&mut sql, client);
    let mut c = Conditions::new();
    push_visible(&mut sql, &mut c, filter);
    c.and(&mut sql).push("at >= ").time(window.from());
    sql.push(" AND at < ").time(window.to());
    sql.push(" ORDER BY at, id LIMIT ").u64(limit);
    sql.build(client)
}

/// `SELECT … FROM annotations`: the columns of [`AnnotationRow`].
pub(crate) fn push_select(sql: &mut Sql, client: &Client) {
    sql.push(
        "SELECT id, org_id, issuer_id, badge_class_id, toUInt32(at) AS at_secs, title, text, \
         toUInt32(created_at) AS created_secs FROM ",
    );
    sql.push(&table(client, ANNOTATIONS_TABLE));
}

/// The conditions under which an annotation is in scope of `filter` (see
/// [`annotations`]).
pub(crate) fn push_visible(sql: &mut Sql, c: &mut Conditions, filter: &Filter) {
    if let Some(org) = &filter.org {
        c.and(sql).push("org_id = ").str(org);
    }
    if let Some(issuer) = &filter.issuer {
        c.and(sql)
            .push("(issuer_id = '' OR issuer_id = ")
            .str(issuer)
            .push(")");
    }
    if let Some(badge_class) = &filter.badge_class {
        c.and(sql)
            .push("(badge_class_id = '' OR badge_class_id = ")
            .str(badge_class)
            .push(")");
        if filter.issuer.is_none() {
            c.and(sql)
                .push("(issuer_id = '' OR badge_class_id = ")
                .str(badge_class)
                .push(")");
        }
    }
}
