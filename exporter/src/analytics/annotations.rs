//! Annotations (SPEC §8 `GET/POST /api/v1/annotations`): program updates
//! listed in scope and shown on trend charts, and new ones validated and
//! stored (read your writes: `freshness::Reader::insert_annotation`).

use serde::Serialize;

use super::{now, Analytics, PeriodJson};
use crate::db::annotations::AnnotationRow;
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;
use crate::model::window::Window;
use crate::model::window::{parse_time, rfc3339};

/// Most annotations listed (and shown with a trend) by default, and at
/// most.
pub const DEFAULT_ANNOTATIONS: u64 = 1_000;

pub const MAX_ANNOTATIONS: u64 = 10_000;

// ------------------------------------------------------------- annotations

/// An annotation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub id: String,
    pub at: String,
    pub title: String,
    pub text: String,
    pub org: String,
    /// Null: the whole org.
    pub issuer: Option<String>,
    /// Null: every badge class.
    pub badge_class: Option<String>,
    pub created_at: String,
}

impl From<AnnotationRow> for Annotation {
    fn from(r: AnnotationRow) -> Self {
        let opt = |s: String| (!s.is_empty()).then_some(s);
        Annotation {
            id: r.id,
            at: rfc3339(r.at),
            title: r.title,
            text: r.text,
            org: r.org_id,
            issuer: opt(r.issuer_id),
            badge_class: opt(r.badge_class_id),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// The body of `GET /api/v1/annotations`.
#[derive(Debug, Clone, Serialize)]
pub struct Annotations {
    pub scope: Filter,
    pub period: PeriodJson,
    pub annotations: Vec<Annotation>,
}

/// The validated content of a new annotation (its scope is resolved
/// separately against the API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnotation {
    pub at: u32,
    pub title: String,
    pub text: String,
}

/// Longest title and text, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

pub const MAX_TEXT_CHARS: usize = 10_000;

impl NewAnnotation {
    /// Validates `at` (RFC 3339 or `YYYY-MM-DD`), `title` (required, 1 to
    /// 200 characters, no control characters) and `text` (optional, at
    /// most 10,000 characters, no control characters but newlines and
    /// tabs). Errors name the field.
    pub fn new(at: &str, title: &str, text: Option<&str>) -> Result<NewAnnotation, String> {
        let at = parse_time("at", at)?;
        let title_chars = title.chars().count();
        if title.trim().is_empty() {
            return Err("title: must not be empty".into());
        }
        if title_chars > MAX_TITLE_CHARS {
            return Err(format!(
                "title: {title_chars} characters, at most {MAX_TITLE_CHARS} allowed"
            ));
        }
        if title.chars().any(char::is_control) {
            return Err("title: must not contain control characters".into());
        }
        let text = text.unwrap_or("");
        let text_chars = text.chars().count();
        if text_chars > MAX_TEXT_CHARS {
            return Err(format!(
                "text: {text_chars} characters, at most {MAX_TEXT_CHARS} allowed"
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(
                "text: must not contain control characters other than newlines and tabs".into(),
            );
        }
        Ok(NewAnnotation {
            at,
            title: title.to_owned(),
            text: text.to_owned(),
        })
    }
}

impl Analytics {
    /// The annotations in scope with `at` in the window.
    pub async fn annotations(
        &self,
        filter: &Filter,
        window: Window,
        limit: u64,
        mode: ReadMode,
    ) -> Result<Annotations, StoreError> {
        let rows = self.reader.annotations(filter, window, limit, mode).await?;
        Ok(Annotations {
            scope: filter.clone(),
            period: window.into(),
            annotations: rows.into_iter().map(Annotation::from).collect(),
        })
    }

    /// Stores a new annotation for `target` (an authorised scope with an
    /// org) and returns it.
    pub async fn create_annotation(
        &self,
        target: &Filter,
        new: NewAnnotation,
    ) -> Result<Annotation, StoreError> {
        let row = AnnotationRow {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: target.org.clone().unwrap_or_default(),
            issuer_id: target.issuer.clone().unwrap_or_default(),
            badge_class_id: target.badge_class.clone().unwrap_or_default(),
            at: new.at,
            title: new.title,
            text: new.text,
            created_at: now(),
        };
        self.reader.insert_annotation(&row).await?;
        Ok(Annotation::from(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u32 {
        crate::model::window::parse_time("t", s).unwrap()
    }

    #[test]
    fn new_annotations_are_validated() {
        let a = NewAnnotation::new("2024-03-01", "Launch", Some("line 1\nline 2")).unwrap();
        assert_eq!(a.at, t("2024-03-01"));
        assert_eq!(a.text, "line 1\nline 2");
        assert_eq!(
            NewAnnotation::new("2024-03-01T10:00:00Z", "x", None)
                .unwrap()
                .text,
            ""
        );
        let err = |at: &str, title: &str, text: Option<&str>| {
            NewAnnotation::new(at, title, text).unwrap_err()
        };
        assert!(err("soon", "x", None).starts_with("at:"));
        assert!(err("2024-03-01", "  ", None).starts_with("title:"));
        assert!(err("2024-03-01", &"é".repeat(201), None).starts_with("title:"));
        NewAnnotation::new("2024-03-01", &"é".repeat(200), None).unwrap();
        assert!(err("2024-03-01", "a\u{7}", None).starts_with("title:"));
        assert!(err("2024-03-01", "a", Some(&"x".repeat(10_001))).starts_with("text:"));
        assert!(err("2024-03-01", "a", Some("\u{0}")).starts_with("text:"));
        let json = serde_json::to_value(Annotation::from(AnnotationRow {
            id: "id1".into(),
            org_id: "acme".into(),
            issuer_id: "".into(),
            badge_class_id: "b1".into(),
            at: t("2024-03-01"),
            title: "=cmd".into(),
            text: "".into(),
            created_at: t("2024-03-02"),
        }))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "id1", "at": "2024-03-01T00:00:00Z", "title": "=cmd", "text": "",
                "org": "acme", "issuer": null, "badge_class": "b1", "created_at": "2024-03-02T00:00:00Z"})
        );
    }
}
