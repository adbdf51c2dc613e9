//! Change notices: which data a ClickHouse commit may have changed.
//!
//! After the aggregator has written a batch to ClickHouse, and before it
//! acks the batch, it publishes one [`Change`] on core NATS subject
//! [`SUBJECT`]: for each org the batch wrote, the smallest and largest
//! `occurred_at` of its events. The exporter caches query results and
//! drops exactly those a notice overlaps (`exporter/src/cache.rs`), so a
//! cached answer is never older than the last commit it depends on by
//! more than the notice's trip through NATS.
//!
//! Notices are not in a stream: core NATS delivers at most once. Readers
//! must treat a gap (disconnect, slow consumer) as "everything changed",
//! and writers send [`Change::everything`] when they changed data they
//! cannot describe (a replayed batch, a recovered table). Anyone may send
//! one by hand after writing to ClickHouse directly:
//! `nats pub badgepulse.changes '{"all":true}'`.
//!
//! Pure: encoding and overlap only, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Core NATS subject of change notices (outside every stream's subjects).
pub const SUBJECT: &str = "badgepulse.changes";

/// One commit's reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Anything may have changed: readers drop everything they cached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// The orgs written, each with the `occurred_at` span of its events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<OrgSpan>,
}

/// Events of `org` with `occurred_at` in `[from, to]` (seconds since the
/// epoch, both inclusive) were written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpan {
    pub org: String,
    pub from: u32,
    pub to: u32,
}

impl Change {
    /// A notice that tells readers to forget everything.
    pub fn everything() -> Change {
        Change {
            all: true,
            orgs: Vec::new(),
        }
    }

    /// The notice for events given as (org, `occurred_at`) pairs: one span
    /// per org, orgs in name order.
    pub fn of_events<'a>(events: impl IntoIterator<Item = (&'a str, u32)>) -> Change {
        let mut spans: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for (org, at) in events {
            spans
                .entry(org)
                .and_modify(|(lo, hi)| {
                    *lo = (*lo).min(at);
                    *hi = (*hi).max(at);
                })
                .or_insert((at, at));
        }
        Change {
            all: false,
            orgs: spans
                .into_iter()
                .map(|(org, (from, to))| OrgSpan {
                    org: org.to_owned(),
                    from,
                    to,
                })
                .collect(),
        }
    }

    /// True when the notice says nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.orgs.is_empty()
    }

    /// Whether data of `org` (`None`: any org) with `occurred_at` in
    /// `[from, to)` may have changed.
    pub fn touches(&self, org: Option<&str>, from: u32, to: u32) -> bool {
        self.all
            || self
                .orgs
                .iter()
                .any(|s| org.is_none_or(|o| o == s.org) && s.from < to && from <= s.to)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Change always serialises")
    }

    /// Decodes a notice; the error says what is wrong with it.
    pub fn decode(payload: &[u8]) -> Result<Change, String> {
        serde_json::from_slice(payload).map_err(|e| format!("change notice: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_make_one_span_per_org() {
        let change = Change::of_events([("b", 50), ("a", 10), ("b", 20), ("a", 30), ("b", 40)]);
        assert_eq!(
            change.orgs,
            vec![
                OrgSpan {
                    org: "a".into(),
                    from: 10,
                    to: 30
                },
                OrgSpan {
                    org: "b".into(),
                    from: 20,
                    to: 50
                },
            ]
        );
        assert!(!change.all);
        assert!(Change::of_events([]).is_empty());
        assert!(!Change::everything().is_empty());
    }

    #[test]
    fn touches_overlapping_windows_of_the_same_org_only() {
        let change = Change::of_events([("a", 100), ("a", 199)]);
        // Windows are [from, to); the span is inclusive at both ends.
        assert!(change.touches(Some("a"), 0, 101));
        assert!(!change.touches(Some("a"), 0, 100));
        assert!(change.touches(Some("a"), 199, 300));
        assert!(!change.touches(Some("a"), 200, 300));
        assert!(change.touches(Some("a"), 150, 160));
        assert!(!change.touches(Some("b"), 0, u32::MAX));
        // A query across every org is touched by any org's change.
        assert!(change.touches(None, 120, 130));
        assert!(Change::everything().touches(Some("z"), 0, 1));
    }

    #[test]
    fn round_trips_and_names_bad_input() {
        for change in [
            Change::everything(),
            Change::of_events([("acme", 1_700_000_000)]),
        ] {
            assert_eq!(Change::decode(&change.encode()).unwrap(), change);
        }
        assert_eq!(Change::everything().encode(), br#"{"all":true}"#);
        let err = Change::decode(br#"{"orgs":[{"org":"a","from":1}]}"#).unwrap_err();
        assert!(err.contains("to"), "{err}");
        let err = Change::decode(br#"{"everything":true}"#).unwrap_err();
        assert!(err.contains("everything"), "{err}");
    }
}
