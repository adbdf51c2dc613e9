//! API keys of `/api/v1/*` (SPEC §8): keys are configured by SHA-256 with a
//! scope; a request presents `Authorization: Bearer KEY` or
//! `?access_token=KEY`; the `org`, `issuer` and `badge_class` parameters
//! are resolved against the key's scope into a [`Filter`].
//!
//! Invariants: a presented key is compared only as a SHA-256, in constant
//! time against every configured hash; a resolved [`Filter`] never reaches
//! outside the key's scope and holds only valid ids. No HTTP types here
//! beyond reading a header value.

use std::fmt;
use std::str::FromStr;

use badgepulse_contract::event::check_id;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{parse_sha256, ApiKeyConfig};
use crate::queries::Filter;

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

/// Why a request may not proceed. Every variant a user can cause names
/// the parameter or header at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send Authorization: Bearer KEY or ?access_token=KEY")]
    Missing,
    #[error("Authorization: expected \"Bearer KEY\"")]
    NotBearer,
    #[error("unknown API key")]
    Unknown,
    /// 403: the parameters reach outside the key's scope.
    #[error("{0}")]
    Forbidden(String),
    /// 400: a malformed parameter.
    #[error("{0}")]
    BadParam(String),
}

/// The configured API keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Scope)>,
}

impl ApiKeys {
    /// From `[[exporter.api_keys]]`; errors name the key (already checked
    /// by `Config::validate`).
    pub fn from_config(keys: &[ApiKeyConfig]) -> Result<ApiKeys, String> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(n, k)| {
                let hash = parse_sha256(&k.sha256).ok_or_else(|| {
                    format!("exporter.api_keys[{n}].sha256 must be 64 hex characters")
                })?;
                let scope = k
                    .scope
                    .parse()
                    .map_err(|e| format!("exporter.api_keys[{n}].scope: {e}"))?;
                Ok((hash, scope))
            })
            .collect::<Result<_, String>>()?;
        Ok(ApiKeys { keys })
    }

    /// The scope of `key`, comparing its SHA-256 with every configured
    /// hash in constant time.
    pub fn lookup(&self, key: &str) -> Option<&Scope> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (hash, scope) in &self.keys {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(scope);
            }
        }
        found
    }

    /// Authenticates a request from its `Authorization` header value and
    /// `access_token` parameter; the header wins when both are present.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        access_token: Option<&str>,
    ) -> Result<&Scope, AuthError> {
        let key = match authorization {
            Some(value) => bearer(value).ok_or(AuthError::NotBearer)?,
            None => access_token.ok_or(AuthError::Missing)?,
        };
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        self.lookup(key).ok_or(AuthError::Unknown)
    }
}

/// The token of `Bearer TOKEN` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The SHA-256 (lowercase hex) to configure for `key`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
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
) -> Result<Filter, AuthError> {
    for (name, value) in [
        ("org", org),
        ("issuer", issuer),
        ("badge_class", badge_class),
    ] {
        if let Some(v) = value {
            check_id(name, v).map_err(|e| AuthError::BadParam(e.to_string()))?;
        }
    }
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let same_org = |own: &str| match org {
        Some(o) if o != own => Err(AuthError::Forbidden(format!(
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
                return Err(AuthError::BadParam(format!("org: required with {which}")));
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
                return Err(AuthError::Forbidden(format!(
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
                return Err(AuthError::Forbidden(format!(
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

    fn keys() -> ApiKeys {
        ApiKeys::from_config(&[
            ApiKeyConfig {
                sha256: hash_key("admin-key"),
                scope: "admin".into(),
            },
            ApiKeyConfig {
                sha256: hash_key("acme-key").to_uppercase(),
                scope: "org:acme".into(),
            },
        ])
        .unwrap()
    }

    #[test]
    fn authenticates_by_hash() {
        let k = keys();
        assert_eq!(
            k.authenticate(Some(b"Bearer admin-key"), None),
            Ok(&Scope::Admin)
        );
        assert_eq!(
            k.authenticate(Some(b"bearer  acme-key "), None),
            Ok(&Scope::Org { org: "acme".into() })
        );
        assert_eq!(
            k.authenticate(None, Some("acme-key")),
            Ok(&Scope::Org { org: "acme".into() })
        );
        // The header wins over the parameter.
        assert_eq!(
            k.authenticate(Some(b"Bearer nope"), Some("admin-key")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            k.authenticate(Some(b"Basic YWxhZGRpbjpvcGVu"), None),
            Err(AuthError::NotBearer)
        );
        assert_eq!(k.authenticate(None, None), Err(AuthError::Missing));
        assert_eq!(k.authenticate(None, Some("")), Err(AuthError::Missing));
        assert_eq!(
            k.authenticate(None, Some("ADMIN-KEY")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            ApiKeys::default().authenticate(None, Some("admin-key")),
            Err(AuthError::Unknown)
        );
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
            matches!(resolve(&a, None, Some("i"), None), Err(AuthError::BadParam(m)) if m.starts_with("org:"))
        );
        assert!(
            matches!(resolve(&a, None, None, Some("b")), Err(AuthError::BadParam(m)) if m.contains("badge_class"))
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
            matches!(resolve(&o, Some("other"), None, None), Err(AuthError::Forbidden(m)) if m.starts_with("org:"))
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
            matches!(resolve(&i, None, Some("labs"), None), Err(AuthError::Forbidden(m)) if m.starts_with("issuer:"))
        );
        assert!(
            matches!(resolve(&i, Some("globex"), Some("academy"), None), Err(AuthError::Forbidden(m)) if m.starts_with("org:"))
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
            matches!(resolve(&b, None, None, Some("go-101")), Err(AuthError::Forbidden(m)) if m.starts_with("badge_class:"))
        );
        assert!(matches!(
            resolve(&b, Some("globex"), None, None),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn bad_ids_are_400_naming_the_parameter() {
        let o = s("org:acme");
        assert!(
            matches!(resolve(&o, Some(""), None, None), Err(AuthError::BadParam(m)) if m.starts_with("org:"))
        );
        assert!(
            matches!(resolve(&o, None, Some("a b"), None), Err(AuthError::BadParam(m)) if m.starts_with("issuer:"))
        );
        let long = "x".repeat(65);
        assert!(
            matches!(resolve(&o, None, None, Some(&long)), Err(AuthError::BadParam(m)) if m.starts_with("badge_class:"))
        );
        // Malformed beats forbidden.
        assert!(matches!(
            resolve(&o, Some("ot her"), None, None),
            Err(AuthError::BadParam(_))
        ));
    }
}
