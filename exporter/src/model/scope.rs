//! Who may read what: the [`Filter`] of a query (an org, or every org, and
//! optionally an issuer and a badge class) and the [`Scope`] of an API key
//! (SPEC §8), and how request parameters resolve against a scope.
//!
//! Invariant: a resolved [`Filter`] never reaches outside the key's scope
//! and holds only valid ids. Pure.

use std::fmt;
use std::str::FromStr;

use badgepulse_contract::event::check_id;

/// Which rows a query covers: an org (or every org when `org` is `None`,
/// admin keys only), optionally narrowed to an issuer and/or badge class.
/// Produced by `auth::resolve`, which guarantees the ids are valid and in
/// the API key's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Filter {
    pub org: Option<String>,
    pub issuer: Option<String>,
    pub badge_class: Option<String>,
}

impl Filter {
    /// Whether the filter covers whole orgs: not narrowed to an issuer
    /// or a badge class.
    pub fn org_wide(&self) -> bool {
        self.issuer.is_none() && self.badge_class.is_none()
    }
}

/// What an API key may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every org.
    Admin,
    /// One org.
    Org { org: String },
    /// One issuer of one org.
    Issuer { org: String, issuer: String },
    /// One badge class of one org.
    Badge { org: String, badge_class: String },
}

impl FromStr for Scope {
    type Err = String;

    /// `admin`, `org:ORG`, `issuer:ORG/ISSUER` or `badge:ORG/BADGE_CLASS`.
    fn from_str(s: &str) -> Result<Scope, String> {
        const EXPECTED: &str =
            "expected admin, org:ORG, issuer:ORG/ISSUER or badge:ORG/BADGE_CLASS";
        let id = |what: &str, v: &str| -> Result<String, String> {
            check_id(what, v).map_err(|e| e.to_string())?;
            Ok(v.to_owned())
        };
        let pair = |rest: &str, second: &str| -> Result<(String, String), String> {
            let (org, other) = rest.split_once('/').ok_or_else(|| EXPECTED.to_owned())?;
            Ok((id("ORG", org)?, id(second, other)?))
        };
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        match s.split_once(':') {
            Some(("org", org)) => Ok(Scope::Org {
                org: id("ORG", org)?,
            }),
            Some(("issuer", rest)) => {
                let (org, issuer) = pair(rest, "ISSUER")?;
                Ok(Scope::Issuer { org, issuer })
            }
            Some(("badge", rest)) => {
                let (org, badge_class) = pair(rest, "BADGE_CLASS")?;
                Ok(Scope::Badge { org, badge_class })
            }
            _ => Err(EXPECTED.into()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Org { org } => write!(f, "org:{org}"),
            Scope::Issuer { org, issuer } => write!(f, "issuer:{org}/{issuer}"),
            Scope::Badge { org, badge_class } => write!(f, "badge:{org}/{badge_class}"),
        }
    }
}

/// Why parameters do not resolve against a scope; each names the
/// parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// 403: the parameters reach outside the key's scope.
    #[error("{0}")]
    Forbidden(String),
    /// 400: a malformed parameter.
    #[error("{0}")]
    BadParam(String),
}

/// Resolves the `org`, `issuer` and `badge_class` parameters against
/// `scope`: a scoped key fills in its own scope, a parameter naming
/// anything outside it is `Forbidden`, and an admin key without `org`
/// covers every org.
pub fn resolve(
    scope: &Scope,
    org: Option<&str>,
    issuer: Option<&str>,
    badge_class: Option<&str>,
) -> Result<Filter, ScopeError> {
    for (name, value) in [
        ("org", org),
        ("issuer", issuer),
        ("badge_class", badge_class),
    ] {
        if let Some(v) = value {
            check_id(name, v).map_err(|e| ScopeError::BadParam(e.to_string()))?;
        }
    }
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let same_org = |own: &str| match org {
        Some(o) if o != own => Err(ScopeError::Forbidden(format!(
            "org: this API key may read only org {own:?}"
        ))),
        _ => Ok(()),
    };
    match scope {
        Scope::Admin => {
            if org.is_none() && (issuer.is_some() || badge_class.is_some()) {
                let which = if issuer.is_some() {
                    "issuer"
                } else {
                    "badge_class"
                };
                return Err(ScopeError::BadParam(format!("org: required with {which}")));
            }
            Ok(Filter {
                org: owned(org),
                issuer: owned(issuer),
                badge_class: owned(badge_class),
            })
        }
        Scope::Org { org: own } => {
            same_org(own)?;
            Ok(Filter {
                org: Some(own.clone()),
                issuer: owned(issuer),
                badge_class: owned(badge_class),
            })
        }
        Scope::Issuer {
            org: own,
            issuer: own_issuer,
        } => {
            same_org(own)?;
            if let Some(i) = issuer.filter(|i| i != own_issuer) {
                return Err(ScopeError::Forbidden(format!(
                    "issuer: this API key may read only issuer {own_issuer:?}, not {i:?}"
                )));
            }
            Ok(Filter {
                org: Some(own.clone()),
                issuer: Some(own_issuer.clone()),
                badge_class: owned(badge_class),
            })
        }
        Scope::Badge {
            org: own,
            badge_class: own_class,
        } => {
            same_org(own)?;
            if let Some(b) = badge_class.filter(|b| b != own_class) {
                return Err(ScopeError::Forbidden(format!(
                    "badge_class: this API key may read only badge class {own_class:?}, not {b:?}"
                )));
            }
            // An issuer narrows further (a badge class has one issuer); it
            // cannot widen the scope.
            Ok(Filter {
                org: Some(own.clone()),
                issuer: owned(issuer),
                badge_class: Some(own_class.clone()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scope {
        v.parse().unwrap()
    }

    fn filter(org: Option<&str>, issuer: Option<&str>, badge_class: Option<&str>) -> Filter {
        Filter {
            org: org.map(Into::into),
            issuer: issuer.map(Into::into),
            badge_class: badge_class.map(Into::into),
        }
    }

    #[test]
    fn parses_scopes() {
        assert_eq!(s("admin"), Scope::Admin);
        assert_eq!(s("org:acme"), Scope::Org { org: "acme".into() });
        assert_eq!(
            s("org:acme:eu"),
            Scope::Org {
                org: "acme:eu".into()
            }
        );
        assert_eq!(
            s("issuer:acme/academy"),
            Scope::Issuer {
                org: "acme".into(),
                issuer: "academy".into()
            }
        );
        assert_eq!(
            s("badge:acme/rust-101"),
            Scope::Badge {
                org: "acme".into(),
                badge_class: "rust-101".into()
            }
        );
        for bad in [
            "",
            "Admin",
            "org:",
            "org",
            "issuer:acme",
            "issuer:acme/",
            "badge:/b",
            "team:x",
            "org:a b",
            "issuer:a/b/c",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
        for good in [
            "admin",
            "org:acme",
            "issuer:acme/academy",
            "badge:acme/rust-101",
        ] {
            assert_eq!(s(good).to_string(), good);
        }
    }

    #[test]
    fn admin_scope() {
        let a = Scope::Admin;
        assert_eq!(resolve(&a, None, None, None), Ok(Filter::default()));
        assert_eq!(
            resolve(&a, Some("x"), Some("i"), None),
            Ok(filter(Some("x"), Some("i"), None))
        );
        assert!(
            matches!(resolve(&a, None, Some("i"), None), Err(ScopeError::BadParam(m)) if m.starts_with("org:"))
        );
        assert!(
            matches!(resolve(&a, None, None, Some("b")), Err(ScopeError::BadParam(m)) if m.contains("badge_class"))
        );
    }

    #[test]
    fn org_scope() {
        let o = s("org:acme");
        assert_eq!(
            resolve(&o, None, None, None),
            Ok(filter(Some("acme"), None, None))
        );
        assert_eq!(
            resolve(&o, Some("acme"), Some("i"), Some("b")),
            Ok(filter(Some("acme"), Some("i"), Some("b")))
        );
        assert!(
            matches!(resolve(&o, Some("other"), None, None), Err(ScopeError::Forbidden(m)) if m.starts_with("org:"))
        );
    }

    #[test]
    fn issuer_scope() {
        let i = s("issuer:acme/academy");
        assert_eq!(
            resolve(&i, None, None, None),
            Ok(filter(Some("acme"), Some("academy"), None))
        );
        assert_eq!(
            resolve(&i, None, None, Some("b")),
            Ok(filter(Some("acme"), Some("academy"), Some("b")))
        );
        assert!(
            matches!(resolve(&i, None, Some("labs"), None), Err(ScopeError::Forbidden(m)) if m.starts_with("issuer:"))
        );
        assert!(
            matches!(resolve(&i, Some("globex"), Some("academy"), None), Err(ScopeError::Forbidden(m)) if m.starts_with("org:"))
        );
    }

    #[test]
    fn badge_scope() {
        let b = s("badge:acme/rust-101");
        assert_eq!(
            resolve(&b, None, None, None),
            Ok(filter(Some("acme"), None, Some("rust-101")))
        );
        assert_eq!(
            resolve(&b, Some("acme"), Some("academy"), None),
            Ok(filter(Some("acme"), Some("academy"), Some("rust-101")))
        );
        assert!(
            matches!(resolve(&b, None, None, Some("go-101")), Err(ScopeError::Forbidden(m)) if m.starts_with("badge_class:"))
        );
        assert!(matches!(
            resolve(&b, Some("globex"), None, None),
            Err(ScopeError::Forbidden(_))
        ));
    }

    #[test]
    fn bad_ids_are_400_naming_the_parameter() {
        let o = s("org:acme");
        assert!(
            matches!(resolve(&o, Some(""), None, None), Err(ScopeError::BadParam(m)) if m.starts_with("org:"))
        );
        assert!(
            matches!(resolve(&o, None, Some("a b"), None), Err(ScopeError::BadParam(m)) if m.starts_with("issuer:"))
        );
        let long = "x".repeat(65);
        assert!(
            matches!(resolve(&o, None, None, Some(&long)), Err(ScopeError::BadParam(m)) if m.starts_with("badge_class:"))
        );
        // Malformed beats forbidden.
        assert!(matches!(
            resolve(&o, Some("ot her"), None, None),
            Err(ScopeError::BadParam(_))
        ));
    }
}
