//! Stable ids for Open Badges input (docs/import.md, "Ids"): how an id
//! outside SPEC §3's charset becomes one, and how each event's `event_id`
//! is derived, so that a re-import of the same export sends the same ids.
//!
//! Pure functions; no I/O. Changing any of them would make a re-import
//! count the same history twice: the unit tests pin their output.

use badgepulse_contract::event::is_valid_id;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The first 16 bytes of SHA-256 of `parts` joined by `\n`, lowercase hex
/// (32 characters).
pub fn hash16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// An id as SPEC §3 takes it: `id` itself when it is 1–64 characters of
/// `[A-Za-z0-9._:-]`, otherwise `h:` + [`hash16`] of it (34 characters).
/// `urn:uuid:…` ids pass unchanged; URL ids are hashed.
pub fn map_id(id: &str) -> String {
    if is_valid_id(id) {
        id.to_owned()
    } else {
        format!("h:{}", hash16(&[id]))
    }
}

/// The `event_id` of an assertion's event: `ob:` + [`hash16`] of the event
/// type and the assertion's id as written in the export (a credential
/// without `id`: its content id). An award and its revocation are two
/// events; a re-import gives the same ids.
pub fn assertion_event_id(event_type: &str, assertion_id: &str) -> String {
    format!("ob:{}", hash16(&[event_type, assertion_id]))
}

/// The `event_id` of a `badge_class.upserted`: `ob:` + [`hash16`] of the
/// type, the badge class's id as written and the SHA-256 of the canonical
/// JSON of what the event stores (`content`), so that a re-export with
/// changed metadata is a new upsert and an unchanged one is a duplicate.
pub fn upsert_event_id(class_id: &str, content: &Value) -> String {
    let digest = hex::encode(Sha256::digest(canonical_json(content).as_bytes()));
    format!(
        "ob:{}",
        hash16(&["badge_class.upserted", class_id, &digest])
    )
}

/// The id of an OB 3.0 credential that has no `id`: `h:` + [`hash16`] of
/// the canonical JSON of the credential without its `proof` (a re-signed
/// export keeps its ids).
pub fn content_id(credential: &Value) -> String {
    let mut v = credential.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("proof");
    }
    format!("h:{}", hash16(&[&canonical_json(&v)]))
}

/// JSON with object keys sorted (by their UTF-8 bytes) and no whitespace:
/// the same value always gives the same text, whatever the key order in
/// the file.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// An attribute key for an Open Badges tag (`--tags-as-attributes`): the
/// tag in lower case, every run of characters outside `[a-z0-9._:-]`
/// replaced by `_`, `_` trimmed from both ends, at most 64 characters; a
/// tag with nothing left (e.g. only non-Latin letters) becomes `tag_` +
/// the first 8 bytes of its SHA-256 in hex.
pub fn tag_key(tag: &str) -> String {
    let mut key = String::new();
    let mut gap = false;
    for c in tag.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-') {
            if gap && !key.is_empty() {
                key.push('_');
            }
            gap = false;
            key.push(c);
        } else {
            gap = true;
        }
    }
    key.truncate(64);
    let key = key.trim_end_matches('_').to_owned();
    if key.is_empty() {
        format!("tag_{}", &hash16(&[tag])[..16])
    } else {
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_in_the_charset_pass_and_others_are_hashed() {
        assert_eq!(
            map_id("urn:uuid:2f900c7c-f473-4aa8-b2b2-2f4da5b7c1a2"),
            "urn:uuid:2f900c7c-f473-4aa8-b2b2-2f4da5b7c1a2"
        );
        let url = "https://example.org/assertions/123";
        let mapped = map_id(url);
        assert_eq!(mapped, format!("h:{}", hash16(&[url])));
        assert_eq!(mapped.len(), 34);
        assert!(is_valid_id(&mapped));
        assert_eq!(map_id(&"a".repeat(64)), "a".repeat(64));
        assert!(map_id(&"a".repeat(65)).starts_with("h:"));
    }

    /// Pinned: a change here would make re-imports count history twice.
    #[test]
    fn derived_ids_are_pinned() {
        assert_eq!(hash16(&["abc"]), "ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(
            assertion_event_id("badge.awarded", "https://example.org/assertions/123"),
            format!(
                "ob:{}",
                hash16(&["badge.awarded", "https://example.org/assertions/123"])
            )
        );
        assert_ne!(
            assertion_event_id("badge.awarded", "x"),
            assertion_event_id("badge.revoked", "x")
        );
        let a = json!({"name": "N", "skills": ["s"]});
        let b = json!({"skills": ["s"], "name": "N"});
        assert_eq!(upsert_event_id("c", &a), upsert_event_id("c", &b));
        assert_ne!(
            upsert_event_id("c", &a),
            upsert_event_id("c", &json!({"name": "N2", "skills": ["s"]}))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [ {"z": 1, "y": "é"} ], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[{"y":"é","z":1}]},"b":1}"#
        );
    }

    #[test]
    fn content_ids_ignore_the_proof() {
        let c = json!({"type": ["VerifiableCredential", "OpenBadgeCredential"], "validFrom": "2024-01-01T00:00:00Z"});
        let mut signed = c.clone();
        signed["proof"] = json!({"created": "2024-01-02T00:00:00Z"});
        assert_eq!(content_id(&c), content_id(&signed));
        assert!(content_id(&c).starts_with("h:"));
    }

    #[test]
    fn tags_become_attribute_keys() {
        assert_eq!(tag_key("Data Science"), "data_science");
        assert_eq!(tag_key("  C++ / Rust!  "), "c_rust");
        assert_eq!(tag_key("ISO-9001:2015"), "iso-9001:2015");
        let k = tag_key("日本語");
        assert!(k.starts_with("tag_") && k.len() == 20, "{k}");
        assert!(is_valid_id(&tag_key(&"x".repeat(100))));
    }
}
