//! What an API key may see (`GET /api/v1/scopes`): the orgs, issuers and
//! badge classes within its scope (narrowed by `org`, `issuer`,
//! `badge_class` like every endpoint), each with its awards of all time,
//! badge classes with their latest name. A key sees the levels at and
//! below its own: an issuer key its issuers and their badge classes, not
//! its org's total.

use serde::Serialize;

use super::Analytics;
use crate::db::scopes::ScopeRow;
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;

/// An org with its awards of all time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgEntry {
    pub org_id: String,
    pub awarded: u64,
}

/// An issuer with its awards of all time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuerEntry {
    pub org_id: String,
    pub issuer_id: String,
    pub awarded: u64,
}

/// A badge class with its name and awards of all time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadgeClassEntry {
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    /// Null until a `badge_class.upserted` named it.
    pub name: Option<String>,
    pub awarded: u64,
}

/// The body of `GET /api/v1/scopes`, each list ordered by its ids.
#[derive(Debug, Clone, Serialize)]
pub struct Scopes {
    pub scope: Filter,
    pub orgs: Vec<OrgEntry>,
    pub issuers: Vec<IssuerEntry>,
    pub badge_classes: Vec<BadgeClassEntry>,
}

impl Scopes {
    /// Sorts the rows of `db::scopes` into their levels.
    pub fn from_rows(scope: Filter, rows: Vec<ScopeRow>) -> Scopes {
        let mut s = Scopes {
            scope,
            orgs: Vec::new(),
            issuers: Vec::new(),
            badge_classes: Vec::new(),
        };
        for r in rows {
            match (r.issuer_id.is_empty(), r.badge_class_id.is_empty()) {
                (true, _) => s.orgs.push(OrgEntry {
                    org_id: r.org_id,
                    awarded: r.awarded,
                }),
                (false, true) => s.issuers.push(IssuerEntry {
                    org_id: r.org_id,
                    issuer_id: r.issuer_id,
                    awarded: r.awarded,
                }),
                (false, false) => s.badge_classes.push(BadgeClassEntry {
                    org_id: r.org_id,
                    issuer_id: r.issuer_id,
                    badge_class_id: r.badge_class_id,
                    name: (!r.name.is_empty()).then_some(r.name),
                    awarded: r.awarded,
                }),
            }
        }
        s
    }
}

impl Analytics {
    /// The orgs, issuers and badge classes within `filter`.
    pub async fn scopes(&self, filter: &Filter, mode: ReadMode) -> Result<Scopes, StoreError> {
        let rows = self.reader.scopes(filter, mode).await?;
        Ok(Scopes::from_rows(filter.clone(), rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(org: &str, issuer: &str, class: &str, name: &str, awarded: u64) -> ScopeRow {
        ScopeRow {
            org_id: org.into(),
            issuer_id: issuer.into(),
            badge_class_id: class.into(),
            name: name.into(),
            awarded,
        }
    }

    #[test]
    fn rows_go_to_their_level() {
        let s = Scopes::from_rows(
            Filter::default(),
            vec![
                row("acme", "", "", "", 5),
                row("acme", "i1", "", "", 5),
                row("acme", "i1", "b1", "Rust 101", 3),
                row("acme", "i1", "b2", "", 2),
            ],
        );
        assert_eq!(
            s.orgs,
            vec![OrgEntry {
                org_id: "acme".into(),
                awarded: 5
            }]
        );
        assert_eq!(s.issuers.len(), 1);
        assert_eq!(s.badge_classes[0].name.as_deref(), Some("Rust 101"));
        assert_eq!(s.badge_classes[1].name, None);
    }
}
