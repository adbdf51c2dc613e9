//! What the analytics know of a badge class beyond its events.

/// The latest metadata of one badge class (its last `badge_class.upserted`):
/// its name and driver attributes (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct BadgeClassMeta {
    pub org_id: String,
    pub badge_class_id: String,
    pub name: String,
    pub skills_aligned: u8,
    pub in_pathway: u8,
    pub in_catalog: u8,
    pub attribute_keys: Vec<String>,
    pub attribute_values: Vec<u8>,
}
