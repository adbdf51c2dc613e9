//! API keys of `/api/v1/*` (SPEC §8): configured by SHA-256 with a
//! scope; a request presents `Authorization: Bearer KEY` or
//! `?access_token=KEY`. What the scope then allows is
//! `model::scope::resolve`'s.
//!
//! Invariant: a presented key is compared only as a SHA-256, in constant
//! time against every configured hash (`badgepulse_runtime::keys`).

use badgepulse_runtime::keys::{self, HashedKeys};

use crate::config::ApiKeyConfig;
use crate::model::scope::Scope;

/// Why a request is not authenticated; every variant names what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send Authorization: Bearer KEY or ?access_token=KEY")]
    Missing,
    #[error("Authorization: expected \"Bearer KEY\"")]
    NotBearer,
    #[error("unknown API key")]
    Unknown,
}

/// The configured API keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: HashedKeys<Scope>,
}

impl ApiKeys {
    /// From `[[exporter.api_keys]]`; errors name the key (already checked
    /// by `Config::validate`).
    pub fn from_config(configured: &[ApiKeyConfig]) -> Result<ApiKeys, String> {
        let keys = configured
            .iter()
            .enumerate()
            .map(|(n, k)| {
                let hash = keys::parse_sha256(&k.sha256).ok_or_else(|| {
                    format!("exporter.api_keys[{n}].sha256 must be 64 hex characters")
                })?;
                let scope = k
                    .scope
                    .parse()
                    .map_err(|e| format!("exporter.api_keys[{n}].scope: {e}"))?;
                Ok((hash, scope))
            })
            .collect::<Result<_, String>>()?;
        Ok(ApiKeys {
            keys: HashedKeys::new(keys),
        })
    }

    /// Authenticates a request from its `Authorization` header value and
    /// `access_token` parameter; the header wins when both are present.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        access_token: Option<&str>,
    ) -> Result<&Scope, AuthError> {
        let key = match authorization {
            Some(value) => std::str::from_utf8(value)
                .ok()
                .and_then(keys::bearer)
                .ok_or(AuthError::NotBearer)?,
            None => access_token.ok_or(AuthError::Missing)?,
        };
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        self.keys.lookup(key).ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badgepulse_runtime::keys::hash_key;

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
}
