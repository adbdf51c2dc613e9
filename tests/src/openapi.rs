//! The exporter's OpenAPI document as a check of real answers: which
//! documented path a request hit, whether its status and content type are
//! documented for it, and whether a JSON body is valid against the
//! response's schema (converted from OpenAPI 3.0's dialect to JSON Schema
//! 2020-12 and checked with the `jsonschema` crate, formats included).
//!
//! The API tests run every answer they get through [`OpenApi::check`], so
//! a body that drifts from the document fails them.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

/// The document and the validators built from it, one per schema.
pub struct OpenApi {
    doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl OpenApi {
    pub fn new(doc: Value) -> OpenApi {
        OpenApi {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The document the exporter serves at `/api/v1/openapi.json`.
    pub fn exporter() -> OpenApi {
        OpenApi::new(badgepulse_exporter::render::openapi::document())
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The documented path template `path` (without query) matches.
    pub fn template(&self, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or_default();
        self.doc["paths"]
            .as_object()?
            .keys()
            .find(|t| matches_template(t, path))
            .map(String::as_str)
    }

    /// Whether an answer of `status` with `content_type` and `body` to
    /// `method path` is what the document says; the error says where not.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let template = self
            .template(path)
            .ok_or_else(|| format!("{path}: no documented path matches"))?;
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        if !operation.is_object() {
            return Err(format!("{method} {template}: not documented"));
        }
        let response = &operation["responses"][status.to_string()];
        if !response.is_object() {
            return Err(format!(
                "{method} {template}: status {status} not documented"
            ));
        }
        let Some(content) = response["content"].as_object() else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} {status}: documented without a body, got {} bytes",
                    body.len()
                ))
            };
        };
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some(media_object) = content.get(&media) else {
            return Err(format!(
                "{method} {template} {status}: content type {content_type:?} not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            ));
        };
        if media != "application/json" {
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{method} {template} {status}: the body is not JSON: {e}"))?;
        let validator = self.validator(&media_object["schema"])?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: the body does not match the documented schema:\n  {}\n{}",
                errors.join("\n  "),
                truncate(&instance.to_string(), 2000)
            ))
        }
    }

    /// [`OpenApi::check`], panicking with the reason.
    pub fn assert_documented(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) {
        if let Err(e) = self.check(method, path, status, content_type, body) {
            panic!("{e}");
        }
    }

    /// [`OpenApi::assert_documented`] of an answer with `headers`.
    pub fn assert_answer(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) {
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.assert_documented(method, path, status, content_type, body);
    }

    fn validator(&self, schema: &Value) -> Result<std::sync::Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = validators.get(&key) {
            return Ok(v.clone());
        }
        let mut root = json_schema(schema);
        let defs: Map<String, Value> = self.doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), json_schema(v)))
            .collect();
        if let Value::Object(root) = &mut root {
            root.insert("$defs".into(), Value::Object(defs));
        } else {
            root = json!({ "allOf": [root], "$defs": defs });
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema {schema}: {e}"))?;
        let validator = std::sync::Arc::new(validator);
        validators.insert(key, validator.clone());
        Ok(validator)
    }
}

/// An OpenAPI 3.0 Schema Object as JSON Schema 2020-12: `nullable: true`
/// becomes a `null` type (and `null` in an `enum`), and references to
/// `#/components/schemas/X` point at `#/$defs/X`.
pub fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                match k.as_str() {
                    "nullable" | "example" => {}
                    "$ref" => {
                        let target = v.as_str().unwrap_or_default();
                        out.insert(
                            k.clone(),
                            json!(target.replace("#/components/schemas/", "#/$defs/")),
                        );
                    }
                    // Property names are not schemas.
                    "properties" => {
                        let props = v
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(name, s)| (name.clone(), json_schema(s)))
                            .collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(k.clone(), json_schema(v));
                    }
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(t) = map.get("type").and_then(Value::as_str) {
                    out.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Whether `path` matches `template`, whose `{name}` pieces each match one
/// or more characters other than `/`.
pub fn matches_template(template: &str, path: &str) -> bool {
    match template.find('{') {
        None => template == path,
        Some(open) => {
            let Some(rest) = path.strip_prefix(&template[..open]) else {
                return false;
            };
            let close = template[open..]
                .find('}')
                .map_or(template.len(), |c| open + c + 1);
            let after = &template[close..];
            // The variable takes 1..n characters up to the next '/'.
            let limit = rest.find('/').unwrap_or(rest.len());
            (1..=limit).any(|n| matches_template(after, &rest[n..]))
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_variable() {
        let t = "/api/v1/charts/{chart}.{ext}";
        assert!(matches_template(t, "/api/v1/charts/top-badges.png"));
        assert!(!matches_template(t, "/api/v1/charts/top-badges"));
        assert!(!matches_template(t, "/api/v1/charts/a/b.png"));
        assert!(matches_template("/report", "/report"));
        assert!(!matches_template("/report", "/reports"));
    }

    #[test]
    fn nullable_becomes_a_null_type() {
        let s = json_schema(&json!({ "type": "string", "nullable": true, "enum": ["a"] }));
        assert_eq!(
            s,
            json!({ "type": ["string", "null"], "enum": ["a", null] })
        );
    }
}
