//! Event → ClickHouse row, in the column order and types of `events`
//! (see `schema.rs`). Pure: no I/O.

use badgepulse_contract::event::{AwardMethod, Event, EventType, ShareChannel, ViewSource};
use clickhouse::Row;
use serde::Serialize;

/// One row of `events` / `events_input`, as RowBinary.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize)]
pub struct EventRow {
    pub event_id: String,
    /// Enum8 value of `type`.
    #[serde(rename = "type")]
    pub kind: i8,
    pub occurred_at: u32,
    pub received_at: u32,
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    pub assertion_id: String,
    pub award_method: i8,
    pub share_channel: i8,
    pub view_source: i8,
    pub country: String,
    pub viewer_key: u64,
    pub badge_class_name: String,
    pub skills: Vec<String>,
    pub pathways: Vec<String>,
    pub courses: Vec<String>,
    pub catalogs: Vec<String>,
    pub collections: Vec<String>,
    pub attribute_keys: Vec<String>,
    pub attribute_values: Vec<u8>,
    pub partition: u16,
    pub seq: u64,
    /// The assertion's first award day known before this batch (days since
    /// 1970-01-01; 0: none), set by `plan::file_by_award`.
    pub award_known_on: u16,
    /// The day the assertion's lifecycle rows of this batch are filed
    /// under: its first award day known now (0: none yet).
    pub awarded_on: u16,
}

/// The Enum8 value of a closed-set member: its 1-based position (schema.rs
/// declares the enums in the same order), 0 for "not applicable".
fn enum_value<T: PartialEq + Copy>(all: &[T], v: Option<T>) -> i8 {
    v.and_then(|v| all.iter().position(|x| *x == v))
        .map_or(0, |i| i as i8 + 1)
}

/// Seconds since the epoch, clamped into ClickHouse `DateTime`'s range.
fn epoch(t: chrono::DateTime<chrono::Utc>) -> u32 {
    t.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

impl EventRow {
    pub fn new(e: &Event, partition: u16, seq: u64) -> Self {
        let meta = e.badge_class.clone().unwrap_or_default();
        let (attribute_keys, attribute_values) = meta
            .attributes
            .into_iter()
            .map(|(k, v)| (k, u8::from(v)))
            .unzip();
        EventRow {
            event_id: e.event_id.clone(),
            kind: enum_value(EventType::ALL, Some(e.kind)),
            occurred_at: epoch(e.occurred_at),
            received_at: epoch(e.received_at),
            org_id: e.org_id.clone(),
            issuer_id: e.issuer_id.clone(),
            badge_class_id: e.badge_class_id.clone(),
            assertion_id: e.assertion_id.clone(),
            award_method: enum_value(AwardMethod::ALL, e.award_method),
            share_channel: enum_value(ShareChannel::ALL, e.channel),
            view_source: enum_value(ViewSource::ALL, e.source),
            country: e.country.clone().unwrap_or_default(),
            viewer_key: e.viewer_key.unwrap_or(0),
            badge_class_name: meta.name,
            skills: meta.skills,
            pathways: meta.pathways,
            courses: meta.courses,
            catalogs: meta.catalogs,
            collections: meta.collections,
            attribute_keys,
            attribute_values,
            partition,
            seq,
            award_known_on: 0,
            awarded_on: 0,
        }
    }

    /// Whether the row concerns an assertion (every type but
    /// `badge_class.upserted`).
    pub fn has_assertion(&self) -> bool {
        self.kind != enum_value(EventType::ALL, Some(EventType::BadgeClassUpserted))
    }

    /// Whether the row is a `badge.awarded`.
    pub fn is_award(&self) -> bool {
        self.kind == enum_value(EventType::ALL, Some(EventType::Awarded))
    }

    /// Its `occurred_at` day, days since 1970-01-01.
    pub fn day(&self) -> u16 {
        (self.occurred_at / 86_400) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_match_declaration_order() {
        assert_eq!(enum_value(EventType::ALL, Some(EventType::Awarded)), 1);
        assert_eq!(
            enum_value(EventType::ALL, Some(EventType::BadgeClassUpserted)),
            6
        );
        assert_eq!(enum_value(ViewSource::ALL, Some(ViewSource::Other)), 9);
        assert_eq!(enum_value::<AwardMethod>(AwardMethod::ALL, None), 0);
    }
}
