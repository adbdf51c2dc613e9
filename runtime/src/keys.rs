//! Secrets configured by their SHA-256 (ingest's platform tokens, the
//! exporter's API keys): the configuration never holds a secret, and a
//! presented one is compared with every configured hash in constant time,
//! so neither which key matched nor how much of it did shows in the timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What each configured secret grants, by its SHA-256.
#[derive(Debug, Clone)]
pub struct HashedKeys<T> {
    entries: Vec<([u8; 32], T)>,
}

impl<T> Default for HashedKeys<T> {
    fn default() -> Self {
        HashedKeys {
            entries: Vec::new(),
        }
    }
}

impl<T> HashedKeys<T> {
    /// The table of (SHA-256, grant) pairs.
    pub fn new(entries: Vec<([u8; 32], T)>) -> Self {
        HashedKeys { entries }
    }

    /// What `presented` grants: its SHA-256 is compared with every
    /// configured hash, each in constant time, whether or not one matched
    /// already.
    pub fn lookup(&self, presented: &str) -> Option<&T> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (hash, grant) in &self.entries {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(grant);
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A configured hash: 64 hex digits, either case.
pub fn parse_sha256(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// The SHA-256 (lowercase hex) to configure for `secret`.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme in any
/// case, RFC 9110 §11.1); `None` for another scheme or no token.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_hash() {
        let keys = HashedKeys::new(vec![
            (parse_sha256(&hash_key("alpha")).unwrap(), 1),
            (parse_sha256(&hash_key("beta").to_uppercase()).unwrap(), 2),
        ]);
        assert_eq!(keys.lookup("alpha"), Some(&1));
        assert_eq!(keys.lookup("beta"), Some(&2));
        assert_eq!(keys.lookup("gamma"), None);
        assert_eq!(keys.lookup(""), None);
        assert!(parse_sha256("abc").is_none());
        assert!(parse_sha256(&"g".repeat(64)).is_none());
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
