//! NATS names (SPEC §5): the stream, its subjects, the dead-letter stream,
//! the salt bucket, and the stable org → partition mapping.

use std::time::Duration;

use async_nats::jetstream::stream;

use crate::event::EventType;

/// The JetStream stream holding every event.
pub const STREAM: &str = "BADGEPULSE_EVENTS";

/// Subject prefix of [`STREAM`]; the stream captures `badgepulse.events.>`.
pub const SUBJECT_PREFIX: &str = "badgepulse.events";

/// The stream where the aggregator parks messages it cannot decode.
pub const DEAD_LETTER_STREAM: &str = "BADGEPULSE_DEAD_LETTERS";

/// Subject prefix of [`DEAD_LETTER_STREAM`]: `badgepulse.dead.<partition>`.
pub const DEAD_LETTER_PREFIX: &str = "badgepulse.dead";

/// Header on beacon messages: their event ids were minted by ingest
/// (UUIDv7) and the message id guards against republishing, so the
/// aggregator needs no lookup of stored ids for them.
pub const BEACON_HEADER: &str = "Badgepulse-Beacons";

/// KV bucket holding the daily viewer-key salts.
pub const SALT_BUCKET: &str = "badgepulse_salts";

/// `badgepulse.events.<partition>.<type>`; the type keeps its dots, so a
/// subject has five or six tokens and `badgepulse.events.<p>.>` selects a
/// partition.
pub fn event_subject(partition: u16, kind: EventType) -> String {
    format!("{SUBJECT_PREFIX}.{partition}.{}", kind.as_str())
}

/// Filter subject selecting every event of one partition.
pub fn partition_filter(partition: u16) -> String {
    format!("{SUBJECT_PREFIX}.{partition}.>")
}

/// The partition of an org: FNV-1a 64 of the org id modulo `partitions`.
///
/// Stable across releases and platforms: changing it would move an org's
/// events to another consumer mid-stream.
pub fn partition_of(org_id: &str, partitions: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in org_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u16
}

/// How the streams are kept: replicas (1 on a single server, 3 on a
/// cluster) and the duplicate window (SPEC §5: at least 2 minutes), from
/// the `[nats]` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLayout {
    pub replicas: usize,
    pub duplicate_window: Duration,
}

impl StreamLayout {
    /// `[nats] replicas` and `duplicate_window_secs`.
    pub fn new(replicas: usize, duplicate_window_secs: u64) -> Self {
        StreamLayout {
            replicas,
            duplicate_window: Duration::from_secs(duplicate_window_secs),
        }
    }
}

impl Default for StreamLayout {
    fn default() -> Self {
        StreamLayout {
            replicas: 1,
            duplicate_window: Duration::from_secs(600),
        }
    }
}

/// The event stream's definition. Ingest and aggregator both create it if
/// missing (`get_or_create_stream`), so either may start first.
pub fn stream_config(layout: StreamLayout) -> stream::Config {
    stream::Config {
        name: STREAM.into(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: layout.replicas,
        duplicate_window: layout.duplicate_window,
        ..Default::default()
    }
}

/// The dead-letter stream's definition.
pub fn dead_letter_stream_config(layout: StreamLayout) -> stream::Config {
    stream::Config {
        name: DEAD_LETTER_STREAM.into(),
        subjects: vec![format!("{DEAD_LETTER_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: layout.replicas,
        duplicate_window: layout.duplicate_window,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_partitions() {
        assert_eq!(
            event_subject(3, EventType::Viewed),
            "badgepulse.events.3.badge.viewed"
        );
        assert_eq!(partition_filter(0), "badgepulse.events.0.>");
        assert_eq!(partition_of("acme", 1), 0);
        // Pinned values (FNV-1a 64 of "acme" = 514768821131075087): the
        // mapping must never change.
        assert_eq!(partition_of("acme", 8), 7);
        assert_eq!(partition_of("acme", 3), 2);
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| partition_of(&format!("org{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
